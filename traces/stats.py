"""Summary statistics of device and availability traces (pure numpy).

Shared by `tf_fedscale.traces.inspect` (the CLI), `tf_fedscale.traces.calibrate` (the fit)
and the tests.
"""

from collections.abc import Sequence

import numpy as np

from tf_fedscale import availability as availability_lib

QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
WEEK_S = availability_lib.SECONDS_PER_WEEK
_MAX_PERIOD_GROUPS = 64  # beyond this, online fractions use a device sample
_SAMPLE_DEVICES = 100_000


def quantiles(values: np.ndarray, qs: Sequence[float] = QUANTILES) -> dict[float, float]:
  """{q: value} for each quantile q of `values` (NaN for an empty array)."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    return {q: float('nan') for q in qs}
  return dict(zip(qs, np.quantile(values, qs).tolist()))


def slot_owner(trace: availability_lib.AvailabilityTrace) -> np.ndarray:
  """Device index of every slot (int32)."""
  return np.repeat(np.arange(trace.num_devices, dtype=np.int32),
                   np.diff(trace.slot_offsets))


def online_fraction_per_device(trace: availability_lib.AvailabilityTrace) -> np.ndarray:
  """Share of its period each device is online (1.0 for always-online traces)."""
  if trace.always_online:
    return np.ones(trace.num_devices)
  lengths = trace.slot_end_s.astype(np.float64) - trace.slot_start_s
  online = np.bincount(slot_owner(trace), weights=lengths, minlength=trace.num_devices)
  return online / trace.period_s


def slot_lengths_s(trace: availability_lib.AvailabilityTrace) -> np.ndarray:
  """Length of every online slot in seconds; a slot running to the end of the
  period and one opening at 0 are one slot (it continues across the wrap)."""
  if trace.always_online or trace.slot_start_s.size == 0:
    return np.zeros(0)
  lengths = trace.slot_end_s.astype(np.int64) - trace.slot_start_s
  first = trace.slot_offsets[:-1]
  last = trace.slot_offsets[1:] - 1
  joined = np.flatnonzero((last > first)
                          & (trace.slot_start_s[np.minimum(first, len(lengths) - 1)] == 0)
                          & (trace.slot_end_s[np.maximum(last, 0)] == trace.period_s))
  lengths[last[joined]] += lengths[first[joined]]
  keep = np.ones(len(lengths), bool)
  keep[first[joined]] = False
  return lengths[keep]


def _online_counts_one_period(starts: np.ndarray, ends: np.ndarray, period: int,
                              times_s: np.ndarray) -> np.ndarray:
  """Slots holding t mod period, for each t (slots of a device never overlap,
  so this counts devices)."""
  phase = np.mod(times_s, period)
  return (np.searchsorted(np.sort(starts), phase, side='right')
          - np.searchsorted(np.sort(ends), phase, side='right'))


def online_fraction_at(trace: availability_lib.AvailabilityTrace,
                       times_s: np.ndarray, seed: int = 0) -> np.ndarray:
  """Fraction of devices online at each of `times_s`.

  Exact for traces with few distinct periods; with many (FedScale's per-device
  `finish_time`), estimated on a seeded sample of 100,000 devices.
  """
  times_s = np.asarray(times_s, np.float64)
  n = trace.num_devices
  if n == 0:
    return np.zeros(times_s.shape)
  if trace.always_online:
    return np.ones(times_s.shape)
  periods = np.unique(trace.period_s)
  if len(periods) > _MAX_PERIOD_GROUPS:
    devices = np.random.default_rng(seed).choice(n, min(n, _SAMPLE_DEVICES), replace=False)
    return np.array([trace.is_online(devices, t).mean() for t in times_s])
  owner_period = trace.period_s[slot_owner(trace)]
  counts = np.zeros(times_s.shape, np.int64)
  for period in periods:
    mine = owner_period == period if len(periods) > 1 else slice(None)
    counts += _online_counts_one_period(trace.slot_start_s[mine], trace.slot_end_s[mine],
                                        int(period), times_s)
  return counts / n


def online_fraction_by_hour(trace: availability_lib.AvailabilityTrace,
                            step_s: int = 600) -> np.ndarray:
  """[7, 24] mean fraction online in each hour of the week (from t = 0,
  sampled every `step_s` seconds)."""
  if 3600 % step_s:
    raise ValueError(f'step_s must divide an hour, got {step_s}.')
  times = np.arange(0, WEEK_S, step_s)
  fraction = online_fraction_at(trace, times)
  return fraction.reshape(7, 24, 3600 // step_s).mean(axis=2)
