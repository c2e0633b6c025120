"""The client population: dataset clients bound to device and availability traces.

Everything is a numpy array indexed by client (position in `client_ids`), so a
population of millions costs a few bytes per client: client `i` runs on device
row `device_row[i]` of `devices` and follows availability row
`availability_row[i]` of `availability`.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tf_fedscale import availability as availability_lib

MAPPINGS = ('random', 'modulo')


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceProfiles:
  """Per-device system speed, one entry per trace row."""

  compute_ms_per_sample: np.ndarray  # float32, inference ms per sample
  download_kbps: np.ndarray  # float32
  upload_kbps: np.ndarray  # float32

  def __post_init__(self):
    validate_devices(self)

  @property
  def num_devices(self) -> int:
    return len(self.compute_ms_per_sample)

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in dataclasses.astuple(self))

  @classmethod
  def uniform(cls, num_devices: int, compute_ms_per_sample: float = 0.0,
              download_kbps: float = math.inf,
              upload_kbps: float = math.inf) -> 'DeviceProfiles':
    """Identical devices; the defaults make every client infinitely fast."""
    return cls(np.full(num_devices, compute_ms_per_sample, np.float32),
               np.full(num_devices, download_kbps, np.float32),
               np.full(num_devices, upload_kbps, np.float32))


def validate_devices(devices: DeviceProfiles, source: Optional[str] = None) -> None:
  """Raises ValueError naming the first bad device entry."""
  where = f'{source}: ' if source else ''
  n = len(devices.compute_ms_per_sample)
  for name in ('compute_ms_per_sample', 'download_kbps', 'upload_kbps'):
    values = getattr(devices, name)
    if values.shape != (n,):
      raise ValueError(f'{where}{name} has shape {values.shape}, expected ({n},).')
    bad = np.flatnonzero(~(values >= 0))
    if bad.size:
      raise ValueError(f'{where}device {bad[0]} has {name}={values[bad[0]]}; '
                       'speeds must be non-negative numbers.')
  for name in ('download_kbps', 'upload_kbps'):
    bad = np.flatnonzero(getattr(devices, name) == 0)
    if bad.size:
      raise ValueError(f'{where}device {bad[0]} has {name}=0; a device that cannot '
                       'transfer can never finish a round.')


def map_clients_to_rows(num_clients: int, num_rows: int, seed: int,
                        mapping: str = 'random',
                        positions: Optional[np.ndarray] = None) -> np.ndarray:
  """Trace row of each client.

  'random': a seeded permutation of the rows (rows are reused only when there
  are more clients than rows). 'modulo': FedScale's rule, client k (1-based, in
  the dataset's first-appearance order *before* size filtering, `positions`
  0-based, default 0..num_clients-1) takes row k % num_rows.
  """
  if num_rows <= 0:
    raise ValueError(f'A trace needs at least one row, got {num_rows}.')
  if mapping == 'modulo':
    positions = (np.arange(num_clients, dtype=np.int64) if positions is None
                 else np.asarray(positions, np.int64))
    if positions.shape != (num_clients,):
      raise ValueError(f'positions has shape {positions.shape}, expected ({num_clients},).')
    return ((positions + 1) % num_rows).astype(np.int32)
  if mapping != 'random':
    raise ValueError(f'Unknown client mapping {mapping!r}; use one of {MAPPINGS}.')
  rng = np.random.default_rng(seed)
  reps = -(-num_clients // num_rows)
  rows = np.concatenate([rng.permutation(num_rows) for _ in range(reps)])
  return rows[:num_clients].astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
  """Dataset clients with their device and availability rows."""

  client_ids: Sequence[str]
  num_examples: np.ndarray  # int64 [num_clients], training examples per client
  devices: DeviceProfiles
  availability: availability_lib.AvailabilityTrace
  device_row: np.ndarray  # int32 [num_clients]
  availability_row: np.ndarray  # int32 [num_clients]

  def __post_init__(self):
    n = len(self.client_ids)
    for name in ('num_examples', 'device_row', 'availability_row'):
      if getattr(self, name).shape != (n,):
        raise ValueError(f'{name} has shape {getattr(self, name).shape}, '
                         f'expected ({n},) for {n} clients.')
    if n and (self.device_row.max() >= self.devices.num_devices
              or self.availability_row.max() >= self.availability.num_devices):
      raise ValueError('A client maps to a trace row beyond the trace.')

  @classmethod
  def build(cls, client_ids: Sequence[str], num_examples: np.ndarray,
            devices: DeviceProfiles,
            availability: availability_lib.AvailabilityTrace,
            seed: int, mapping: str = 'random',
            positions: Optional[np.ndarray] = None) -> 'Population':
    """Binds clients to trace rows with `map_clients_to_rows` (`positions`:
    the clients' places in the dataset before filtering, for 'modulo')."""
    n = len(client_ids)
    return cls(
        client_ids=client_ids,
        num_examples=np.asarray(num_examples, np.int64),
        devices=devices,
        availability=availability,
        device_row=map_clients_to_rows(n, devices.num_devices, seed, mapping, positions),
        availability_row=map_clients_to_rows(n, availability.num_devices,
                                             seed + 1, mapping, positions),
    )

  @property
  def num_clients(self) -> int:
    return len(self.client_ids)

  @property
  def nbytes(self) -> int:
    """Bytes held by the numeric arrays (traces included, ids excluded)."""
    return (self.num_examples.nbytes + self.device_row.nbytes
            + self.availability_row.nbytes + self.devices.nbytes
            + self.availability.nbytes)

  def compute_ms_per_sample(self, clients: np.ndarray) -> np.ndarray:
    return self.devices.compute_ms_per_sample[self.device_row[clients]]

  def download_kbps(self, clients: np.ndarray) -> np.ndarray:
    return self.devices.download_kbps[self.device_row[clients]]

  def upload_kbps(self, clients: np.ndarray) -> np.ndarray:
    return self.devices.upload_kbps[self.device_row[clients]]

  def is_online(self, clients: np.ndarray, time_s: float) -> np.ndarray:
    return self.availability.is_online(self.availability_row[clients], time_s)

  def online_until_s(self, clients: np.ndarray, time_s: float) -> np.ndarray:
    return self.availability.online_until_s(self.availability_row[clients], time_s)

  def online_clients(self, time_s: float) -> np.ndarray:
    """Indices of every client online at `time_s`."""
    return np.flatnonzero(self.is_online(np.arange(self.num_clients), time_s))

  def first_time_online_s(self, count: int) -> tuple[float, int]:
    """(t, online): the first virtual time t >= 0 at which `count` clients are
    online at once, and how many are; when that never happens within the
    longest period, the first time the most clients are online at once.

    One sweep over every slot of the clients' trace rows, repeated over the
    longest period (a row counts once per client mapped to it): online counts
    only rise when a slot opens, so those are the times that matter.
    """
    if count > self.num_clients:
      raise ValueError(f'count {count} exceeds the population of {self.num_clients}.')
    trace = self.availability
    if trace.always_online:
      return 0.0, self.num_clients
    clients_per_row = np.bincount(self.availability_row, minlength=trace.num_devices)
    owner = np.repeat(np.arange(trace.num_devices), np.diff(trace.slot_offsets))
    used = clients_per_row[owner] > 0
    owner = owner[used]
    if not len(owner):
      return 0.0, 0
    period = trace.period_s[owner].astype(np.float64)
    horizon = float(trace.period_s[self.availability_row].max())
    copies = np.ceil(horizon / period).astype(np.int64)
    slot = np.repeat(np.arange(len(owner)), copies)
    shift = (np.arange(len(slot)) - np.repeat(np.cumsum(copies) - copies, copies)) * period[slot]
    starts = trace.slot_start_s[used][slot] + shift
    ends = trace.slot_end_s[used][slot] + shift
    weight = clients_per_row[owner[slot]]
    times = np.unique(np.concatenate([[0.0], starts[starts < horizon]]))
    counts = np.zeros(len(times), np.int64)
    for edges, sign in ((starts, 1), (ends, -1)):
      order = np.argsort(edges, kind='stable')
      cumulative = np.concatenate([[0], np.cumsum(weight[order])])
      counts += sign * cumulative[np.searchsorted(edges[order], times, side='right')]
    enough = np.flatnonzero(counts >= count)
    first = int(enough[0]) if len(enough) else int(np.argmax(counts))
    return float(times[first]), int(counts[first])
