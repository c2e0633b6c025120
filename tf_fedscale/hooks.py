"""FAR-style hooks: plug code into a simulated round without touching the driver.

A hook is any object implementing one or more of four typed protocols; pass
instances as `Simulation(..., hooks=[...])`. In round order:

1. `RoundStartHook.on_round_start(round_num, virtual_time_s, process_state)`:
   before selection; may return a new process state (e.g. new hyperparameters
   via `process.set_hparams`), or None to keep it.
2. `LocalWorkHook.local_work(round_num, clients, population)`: per-client
   amount of local work for the invited clients (local steps, or epochs when
   the run uses epochs); None keeps the configured amount. The accountant
   charges the chosen amount and the TFF client trains exactly that much, e.g.
   fewer steps for slow devices.
3. `ClientCompletionHook.on_client_completion(round_num, outcome)`: after the
   accountant timed every invited client; may return a boolean mask over
   `outcome.clients` of the updates to aggregate, chosen among the clients
   that finish before leaving (and before any deadline). The round then lasts
   until the last kept client finishes (`revise_outcome`). Use it for
   straggler mitigation: accept late finishers, or cut slow ones to end the
   round sooner.
4. `RoundEndHook.on_round_end(round_num, record, feedback)`: after training
   and evaluation, before the record is released; may add columns to `record`
   (it is also called for round 0, with `feedback=None`). `feedback` is the
   `selection.RoundFeedback` the selector received.

The first hook that returns a value for steps 1-3 wins, in list order, except
`on_client_completion`, whose masks are combined with a logical AND.

A hook that carries anything from one round to the next also implements
`StatefulHook` (`get_state` / `set_state`, as selectors do): the driver keeps
that state in the round state (`SimulationState.hook_state`), loads it into
the hook before every round and checkpoints it, so a round that runs again
from the same state (a retry after a worker failure) or a resumed run sees
exactly what an uninterrupted run saw, with no file read back. A hook must
keep nothing else that changes between rounds.
"""

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np

from tf_fedscale import accounting
from tf_fedscale import population as population_lib


@runtime_checkable
class RoundStartHook(Protocol):

  def on_round_start(self, round_num: int, virtual_time_s: float,
                     process_state: Any) -> Optional[Any]:
    """A new process state for the round, or None to keep it."""


@runtime_checkable
class LocalWorkHook(Protocol):

  def local_work(self, round_num: int, clients: np.ndarray,
                 population: population_lib.Population) -> Optional[np.ndarray]:
    """Local steps (or epochs) per invited client, or None for the default."""


@runtime_checkable
class ClientCompletionHook(Protocol):

  def on_client_completion(self, round_num: int,
                           outcome: accounting.RoundOutcome) -> Optional[np.ndarray]:
    """A mask over `outcome.clients` of the updates to aggregate, or None."""


@runtime_checkable
class RoundEndHook(Protocol):

  def on_round_end(self, round_num: int, record: dict[str, Any],
                   feedback: Optional[Any]) -> None:
    """May add columns to the round's `record`."""


@runtime_checkable
class StatefulHook(Protocol):
  """A hook that carries state across rounds (kept in the round state)."""

  def get_state(self) -> dict[str, Any]:
    """A snapshot of everything that changes (numpy arrays and scalars)."""

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues from a `get_state` snapshot (copying it)."""


Hook = Union[RoundStartHook, LocalWorkHook, ClientCompletionHook, RoundEndHook]
HOOK_PROTOCOLS = (RoundStartHook, LocalWorkHook, ClientCompletionHook, RoundEndHook)


class HookList:
  """Several hooks as one (see the module docstring for how results combine)."""

  def __init__(self, hooks: Sequence[Hook] = ()):
    for hook in hooks:
      if not isinstance(hook, HOOK_PROTOCOLS):
        raise TypeError(
            f'{type(hook).__name__} implements no hook: define on_round_start, '
            'local_work, on_client_completion or on_round_end (see tf_fedscale.hooks).')
    self.hooks = list(hooks)

  def __bool__(self) -> bool:
    return bool(self.hooks)

  def of(self, protocol: type) -> list[Any]:
    """The hooks implementing `protocol`, in order."""
    return [h for h in self.hooks if isinstance(h, protocol)]

  def _stateful(self) -> dict[str, Any]:
    """The stateful hooks, keyed by their position in the list."""
    return {f'hook_{i}': h for i, h in enumerate(self.hooks)
            if isinstance(h, StatefulHook)}

  def get_state(self) -> dict[str, Any]:
    """Every stateful hook's state, keyed `hook_<position>` (empty when none)."""
    return {key: hook.get_state() for key, hook in self._stateful().items()}

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Loads a `get_state` snapshot into the hooks (each gets a copy)."""
    stateful = self._stateful()
    if set(state) != set(stateful):
      raise ValueError(f'hook state has entries {sorted(state)}, but the stateful '
                       f'hooks are {sorted(stateful)}.')
    for key, hook in stateful.items():
      hook.set_state(copy.deepcopy(dict(state[key])))

  @property
  def chooses_local_work(self) -> bool:
    """Whether any hook chooses per-client local work (needs per-client datasets)."""
    return bool(self.of(LocalWorkHook))

  def on_round_start(self, round_num: int, virtual_time_s: float,
                     process_state: Any) -> Optional[Any]:
    for hook in self.of(RoundStartHook):
      result = hook.on_round_start(round_num, virtual_time_s, process_state)
      if result is not None:
        return result
    return None

  def local_work(self, round_num: int, clients: np.ndarray,
                 population: population_lib.Population) -> Optional[np.ndarray]:
    for hook in self.of(LocalWorkHook):
      result = hook.local_work(round_num, clients, population)
      if result is not None:
        amounts = np.asarray(result, np.int64)
        if amounts.shape != (len(clients),) or (amounts < 1).any():
          raise ValueError('local_work must return one amount >= 1 per client, got '
                           f'{amounts!r} for {len(clients)} clients.')
        return amounts
    return None

  def on_client_completion(self, round_num: int, outcome: accounting.RoundOutcome
                           ) -> Optional[np.ndarray]:
    masks = [np.asarray(m, bool) for m in
             (h.on_client_completion(round_num, outcome)
              for h in self.of(ClientCompletionHook)) if m is not None]
    if not masks:
      return None
    return np.logical_and.reduce(masks)

  def on_round_end(self, round_num: int, record: dict[str, Any],
                   feedback: Optional[Any]) -> None:
    for hook in self.of(RoundEndHook):
      hook.on_round_end(round_num, record, feedback)


def revise_outcome(outcome: accounting.RoundOutcome, keep: np.ndarray,
                   online_for_s: np.ndarray, bytes_down: int, bytes_up: int,
                   deadline_s: Optional[float] = None) -> accounting.RoundOutcome:
  """`outcome` with exactly the `keep` clients aggregated.

  `online_for_s` is how long each client stays online from the round start.
  Kept clients must be able to finish (before leaving and before the deadline).
  The round closes when the last kept client finishes (if none is kept, at the
  accountant's original close); the others are dropped if they would leave
  before finishing (as the accountant, and FedScale, rank drop-outs never as
  stragglers), else cut as stragglers (or as missing the deadline when they
  could not have met it). Downloads are charged as far as they got; uploads for
  every client that finished by the close (a rejected finisher did upload).
  """
  keep = np.asarray(keep, bool)
  if keep.shape != outcome.clients.shape:
    raise ValueError(f'keep has shape {keep.shape}, expected {outcome.clients.shape}.')
  finish_s = outcome.download_s + outcome.compute_s + outcome.upload_s
  can_finish = finish_s <= online_for_s
  if deadline_s is not None:
    can_finish &= finish_s <= deadline_s
  if (keep & ~can_finish).any():
    bad = outcome.clients[keep & ~can_finish]
    raise ValueError(f'Clients {bad.tolist()} cannot finish this round (they go '
                     'offline or miss the deadline first); they cannot be kept.')
  close_s = float(finish_s[keep].max()) if keep.any() else outcome.duration_s
  dropped = ~keep & (online_for_s < finish_s)
  status = np.full(len(keep), accounting.Status.STRAGGLER, np.int8)
  if deadline_s is not None:
    status[finish_s > deadline_s] = accounting.Status.MISSED_DEADLINE
  status[dropped] = accounting.Status.DROPPED_OFFLINE
  status[keep] = accounting.Status.COMPLETED
  end_s = np.minimum(np.where(dropped, online_for_s, finish_s), close_s)
  bytes_down_moved = np.round(
      bytes_down * accounting._fraction_done(end_s, outcome.download_s)  # pylint: disable=protected-access
  ).astype(np.int64)
  finished = ~dropped & (finish_s <= close_s)  # rejected finishers uploaded too
  bytes_up_moved = np.where(finished, bytes_up, 0).astype(np.int64)
  return accounting.RoundOutcome(
      outcome.round_num, outcome.start_time_s, close_s, outcome.clients,
      outcome.samples, outcome.download_s, outcome.compute_s, outcome.upload_s,
      end_s, status, bytes_down_moved, bytes_up_moved)
