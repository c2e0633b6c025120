"""Latency accounting: how long each invited client takes, who finishes, the clock.

Per client: download_s = bytes_down x 8 / 1024 / download_kbps (1 kbit =
1024 bits, as FedScale's aggregator sizes the model: bytes / 1024 x 8),
compute_s = samples x ms_per_sample x backward_factor / 1000, upload_s likewise
with the upload bandwidth. A client drops out if its availability slot ends
before it finishes. Of the rest the first `clients_per_round` to finish are
kept (and any finishing after `deadline_s`, when set, are cut): the others are
stragglers and their updates are never used. The round lasts until the last
kept client finishes, also when fewer than `clients_per_round` can finish
(FedScale's `tictak_client_tasks` removes drop-outs first), or until the
deadline if a client was still running then. A round in which nobody can
finish lasts until the last drop-out leaves (FedScale fails on an empty
list there). The accountant holds no clock: a round is timed from the
`start_time_s` it is given, and the caller's state advances by the round's
duration.
"""

import dataclasses
import enum
from typing import Optional

import numpy as np

from tf_fedscale import population as population_lib

BITS_PER_KBIT = 1024  # FedScale's aggregator: model kbit = bytes / 1024 x 8


class Status(enum.IntEnum):
  """What happened to an invited client."""

  COMPLETED = 0
  STRAGGLER = 1  # finished later than the first clients_per_round
  DROPPED_OFFLINE = 2  # its availability slot ended before it finished
  MISSED_DEADLINE = 3  # would finish after the round deadline


@dataclasses.dataclass(frozen=True, eq=False)
class RoundOutcome:
  """Per-client timeline of one round; arrays are aligned with `clients`."""

  round_num: int
  start_time_s: float
  duration_s: float
  clients: np.ndarray  # int64 population indices
  samples: np.ndarray  # int64 examples processed
  download_s: np.ndarray
  compute_s: np.ndarray
  upload_s: np.ndarray
  end_s: np.ndarray  # seconds after round start when it finished or dropped
  status: np.ndarray  # int8 Status
  bytes_down: np.ndarray  # int64 bytes actually received
  bytes_up: np.ndarray  # int64 bytes actually sent

  @property
  def completed(self) -> np.ndarray:
    """Population indices of the clients whose updates are aggregated."""
    return self.clients[self.status == Status.COMPLETED]


class LatencyAccountant:
  """Charges each invited client its latency (a pure function of its inputs)."""

  def __init__(self, population: population_lib.Population,
               clients_per_round: Optional[int] = None,
               deadline_s: Optional[float] = None,
               backward_factor: float = 3.0):
    if clients_per_round is None and deadline_s is None:
      raise ValueError('Set clients_per_round, deadline_s or both: otherwise a '
                       'round never ends.')
    if clients_per_round is not None and clients_per_round < 1:
      raise ValueError(f'clients_per_round must be >= 1, got {clients_per_round}.')
    if deadline_s is not None and not deadline_s > 0:
      raise ValueError(f'deadline_s must be positive, got {deadline_s}.')
    if not backward_factor > 0:
      raise ValueError(f'backward_factor must be positive, got {backward_factor}.')
    self.population = population
    self.clients_per_round = clients_per_round
    self.deadline_s = deadline_s
    self.backward_factor = backward_factor

  def client_times(self, clients: np.ndarray, samples: np.ndarray,
                   bytes_down: int, bytes_up: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(download_s, compute_s, upload_s) of each client, from its trace speeds."""
    pop = self.population
    clients = np.asarray(clients, np.int64)
    samples = np.asarray(samples, np.int64)
    download_s = bytes_down * 8 / BITS_PER_KBIT / pop.download_kbps(clients).astype(np.float64)
    compute_s = (samples * pop.compute_ms_per_sample(clients).astype(np.float64)
                 * self.backward_factor * 1e-3)
    upload_s = bytes_up * 8 / BITS_PER_KBIT / pop.upload_kbps(clients).astype(np.float64)
    return download_s, compute_s, upload_s

  def account(self, round_num: int, clients: np.ndarray, samples: np.ndarray,
              bytes_down: int, bytes_up: int, *, start_time_s: float) -> RoundOutcome:
    """Times `clients` in a round starting at `start_time_s` and decides who
    finishes; the round ends at `start_time_s + outcome.duration_s`."""
    pop = self.population
    clients = np.asarray(clients, np.int64)
    samples = np.asarray(samples, np.int64)
    start = float(start_time_s)
    download_s, compute_s, upload_s = self.client_times(
        clients, samples, bytes_down, bytes_up)
    finish_s = download_s + compute_s + upload_s
    online_for_s = pop.online_until_s(clients, start) - start
    leave_s = np.minimum(finish_s, online_for_s)  # finishes or drops out

    can_finish = finish_s <= online_for_s
    if self.deadline_s is not None:
      can_finish &= finish_s <= self.deadline_s
    finishers = np.flatnonzero(can_finish)
    finishers = finishers[np.argsort(finish_s[finishers], kind='stable')]
    kept_idx = finishers[:self.clients_per_round]
    kept = np.zeros(len(clients), bool)
    kept[kept_idx] = True

    last_s = float(leave_s.max()) if len(clients) else 0.0
    if self.clients_per_round is not None and len(kept_idx) == self.clients_per_round:
      close_s = float(finish_s[kept_idx].max())
    elif self.deadline_s is not None and last_s > self.deadline_s:
      close_s = float(self.deadline_s)  # someone was still running: it was cut
    elif len(kept_idx):  # short of the target: the last finisher, as FedScale
      close_s = float(finish_s[kept_idx].max())
    else:
      close_s = last_s

    # Drop-outs are never stragglers (FedScale removes them before ranking).
    dropped = ~kept & (online_for_s < finish_s)
    cut_status = (Status.MISSED_DEADLINE if close_s == self.deadline_s
                  else Status.STRAGGLER)
    status = np.full(len(clients), cut_status, np.int8)
    status[kept] = Status.COMPLETED
    status[dropped] = Status.DROPPED_OFFLINE
    end_s = np.where(kept, leave_s, np.minimum(leave_s, close_s))

    bytes_down_moved = np.round(
        bytes_down * _fraction_done(end_s, download_s)).astype(np.int64)
    bytes_up_moved = np.where(kept, bytes_up, 0).astype(np.int64)
    return RoundOutcome(round_num, start, close_s, clients, samples,
                        download_s, compute_s, upload_s, end_s, status,
                        bytes_down_moved, bytes_up_moved)


def _fraction_done(elapsed_s: np.ndarray, length_s: np.ndarray) -> np.ndarray:
  """Share of a phase of `length_s` seconds done after `elapsed_s` seconds."""
  with np.errstate(divide='ignore', invalid='ignore'):
    fraction = elapsed_s / length_s
  return np.clip(np.nan_to_num(fraction, nan=1.0, posinf=1.0), 0.0, 1.0)
