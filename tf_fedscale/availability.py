"""When each device is online: periodic availability slots held as flat arrays.

Device `r` owns slots `slot_offsets[r]:slot_offsets[r+1]` of `slot_start_s` and
`slot_end_s`, sorted and non-overlapping, in seconds within its period
(`period_s[r]`, a week in FedScale's trace). A device is online at virtual time
`t` iff `slot_start <= t mod period <= slot_end` for one of its slots (closed,
as FedScale's `ClientMetadata.is_active`, with the same float modulo). Storing
slots in CSR form keeps millions of devices in a few arrays, and every query
is a vectorized bisection over the queried devices only.
"""

import dataclasses
from typing import Optional

import numpy as np

SECONDS_PER_WEEK = 7 * 24 * 3600
NO_SLOT = -1


@dataclasses.dataclass(frozen=True, eq=False)
class AvailabilityTrace:
  """Availability slots of `num_devices` devices (see the module docstring)."""

  slot_offsets: np.ndarray  # int64 [num_devices + 1]
  slot_start_s: np.ndarray  # int32 [num_slots], seconds within the period
  slot_end_s: np.ndarray  # int32 [num_slots], inclusive
  period_s: np.ndarray  # int32 [num_devices]
  always_online: bool = False
  _online_s: Optional[np.ndarray] = dataclasses.field(
      default=None, init=False, repr=False)  # cache of online_s_per_period

  def __post_init__(self):
    validate(self)

  @classmethod
  def always(cls, num_devices: int) -> 'AvailabilityTrace':
    """Devices that are online at every instant (no availability trace)."""
    return cls(
        slot_offsets=np.zeros(num_devices + 1, np.int64),
        slot_start_s=np.zeros(0, np.int32),
        slot_end_s=np.zeros(0, np.int32),
        period_s=np.full(num_devices, SECONDS_PER_WEEK, np.int32),
        always_online=True,
    )

  @property
  def num_devices(self) -> int:
    return len(self.period_s)

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in (self.slot_offsets, self.slot_start_s,
                                  self.slot_end_s, self.period_s))

  def _current_slot(self, devices: np.ndarray, time_s: float) -> np.ndarray:
    """Index of the slot holding `time_s` for each device, or NO_SLOT."""
    devices = np.asarray(devices, np.int64)
    if self.slot_start_s.size == 0:
      return np.full(devices.shape, NO_SLOT, np.int64)
    period = self.period_s[devices].astype(np.float64)
    phase = np.mod(time_s, period)
    lo = self.slot_offsets[devices]
    hi = self.slot_offsets[devices + 1]
    # Bisection for the last slot whose start <= phase, for all devices at once.
    left, right = lo.copy(), hi.copy()
    while True:
      active = left < right
      if not active.any():
        break
      mid = (left + right) // 2
      go_right = active & (self.slot_start_s[np.minimum(mid, hi - 1)] <= phase)
      left = np.where(go_right, mid + 1, left)
      right = np.where(active & ~go_right, mid, right)
    slot = left - 1
    has_slot = slot >= lo
    safe = np.where(has_slot, slot, 0)
    inside = has_slot & (phase <= self.slot_end_s[safe])
    return np.where(inside, slot, NO_SLOT)

  def is_online(self, devices: np.ndarray, time_s: float) -> np.ndarray:
    """Boolean mask: which of `devices` are online at `time_s`."""
    devices = np.asarray(devices)
    if self.always_online:
      return np.ones(devices.shape, bool)
    return self._current_slot(devices, time_s) != NO_SLOT

  def online_until_s(self, devices: np.ndarray, time_s: float) -> np.ndarray:
    """Absolute virtual time at which each device's current slot ends.

    `inf` for always-online devices and for devices whose slots cover their
    whole period (they never leave), `time_s` for devices that are offline now.
    """
    devices = np.asarray(devices, np.int64)
    if self.always_online:
      return np.full(devices.shape, np.inf)
    slot = self._current_slot(devices, time_s)
    period = self.period_s[devices].astype(np.float64)
    slot_origin = time_s - np.mod(time_s, period)
    if self.slot_end_s.size == 0:
      return np.full(devices.shape, float(time_s))
    safe = np.maximum(slot, 0)
    end = slot_origin + self.slot_end_s[safe]
    # A slot that runs to the period's end continues into a slot opening at 0.
    first = np.minimum(self.slot_offsets[devices], len(self.slot_start_s) - 1)
    wraps = ((self.slot_end_s[safe] == self.period_s[devices])
             & (self.slot_start_s[first] == 0) & (first != safe))
    end = np.where(wraps, end + self.slot_end_s[first], end)
    end = np.where(self.online_s_per_period()[devices] >= self.period_s[devices],
                   np.inf, end)
    return np.where(slot == NO_SLOT, time_s, end)

  def online_s_per_period(self) -> np.ndarray:
    """Seconds each device is online per period (float64 [num_devices])."""
    if self._online_s is None:
      if self.always_online:
        online = self.period_s.astype(np.float64)
      else:
        lengths = self.slot_end_s.astype(np.float64) - self.slot_start_s
        online = np.add.reduceat(np.append(lengths, 0.0),
                                 np.minimum(self.slot_offsets[:-1], len(lengths)))
        online[np.diff(self.slot_offsets) == 0] = 0.0
      object.__setattr__(self, '_online_s', online)
    return self._online_s

  def online_devices(self, time_s: float) -> np.ndarray:
    """Indices of all devices online at `time_s`."""
    return np.flatnonzero(self.is_online(np.arange(self.num_devices), time_s))


def validate(trace: AvailabilityTrace, source: Optional[str] = None) -> None:
  """Raises ValueError naming the first malformed entry of `trace`."""
  where = f'{source}: ' if source else ''
  n = len(trace.period_s)
  offsets = trace.slot_offsets
  if offsets.shape != (n + 1,) or offsets[0] != 0:
    raise ValueError(f'{where}slot_offsets must have {n + 1} entries starting '
                     f'at 0, got shape {offsets.shape}.')
  if offsets[-1] != len(trace.slot_start_s) or len(trace.slot_start_s) != len(trace.slot_end_s):
    raise ValueError(f'{where}slot arrays disagree: offsets end at {offsets[-1]}, '
                     f'{len(trace.slot_start_s)} starts, {len(trace.slot_end_s)} ends.')
  bad = np.flatnonzero(np.diff(offsets) < 0)
  if bad.size:
    raise ValueError(f'{where}slot_offsets decrease at device {bad[0]}.')
  bad = np.flatnonzero(trace.period_s <= 0)
  if bad.size:
    raise ValueError(f'{where}device {bad[0]} has period {trace.period_s[bad[0]]} s; '
                     'periods must be positive.')
  starts, ends = trace.slot_start_s, trace.slot_end_s
  bad = np.flatnonzero(ends < starts)
  if bad.size:
    raise ValueError(f'{where}slot {bad[0]} ends at {ends[bad[0]]} s, before its '
                     f'start {starts[bad[0]]} s.')
  if starts.size:
    # Per-device checks without a per-slot owner array (tens of millions of
    # slots for millions of devices): only devices that have slots matter.
    has_slots = np.flatnonzero(np.diff(offsets) > 0)
    first_slot = offsets[has_slots]
    owner_of = lambda slot: int(np.searchsorted(offsets, slot, side='right') - 1)
    last_end = np.maximum.reduceat(ends, first_slot)
    outside = [int(i) for i in np.flatnonzero(starts < 0)[:1]]
    late = has_slots[last_end > trace.period_s[has_slots]]
    if late.size:
      lo, hi = offsets[late[0]], offsets[late[0] + 1]
      outside.append(int(lo + np.argmax(ends[lo:hi] > trace.period_s[late[0]])))
    if outside:
      slot = min(outside)
      device = owner_of(slot)
      raise ValueError(f'{where}slot {slot} of device {device} '
                       f'[{starts[slot]}, {ends[slot]}] lies outside the period '
                       f'[0, {trace.period_s[device]}).')
    starts_device = np.zeros(len(starts), bool)
    starts_device[first_slot] = True
    bad = np.flatnonzero(~starts_device[1:] & (starts[1:] < ends[:-1]))
    if bad.size:
      raise ValueError(f'{where}slots of device {owner_of(bad[0] + 1)} overlap or are '
                       f'unsorted at slot {bad[0] + 1}.')
