"""The embedded default population: a seeded generator of device speeds and
weekly availability, used when no trace file is given.

Parameters live in `DEFAULT_PARAMS` with where each number comes from; they are
fitted by `traces/calibrate.py` where real measurements exist. Generation is
vectorized: a few hundred bytes of work per device, no Python loop over devices.
"""

import dataclasses

import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale import population as population_lib

DAY_S = 24 * 3600
WEEK_S = availability_lib.SECONDS_PER_WEEK


@dataclasses.dataclass(frozen=True)
class GeneratorParams:
  """Distribution parameters of the default generator (see DEFAULT_PARAMS)."""

  # Compute: inference ms per sample, lognormal.
  compute_median_ms: float
  compute_sigma: float
  # Network: lognormal kbps, upload correlated with download.
  download_median_kbps: float
  download_sigma: float
  upload_median_kbps: float
  upload_sigma: float
  up_down_correlation: float
  # Availability: a nightly charging slot, and short daytime slots.
  night_probability: float  # chance a device charges on a given night
  night_start_mean_h: float
  night_start_std_h: float
  night_median_h: float
  night_sigma: float
  day_slots_per_day: int  # candidate daytime slots per day
  day_slot_probability: float
  day_start_range_h: tuple[float, float]
  day_median_min: float
  day_sigma: float


DEFAULT_PARAMS = GeneratorParams(
    compute_median_ms=40.0, compute_sigma=0.75,
    download_median_kbps=20000.0, download_sigma=1.0,
    upload_median_kbps=6000.0, upload_sigma=1.0, up_down_correlation=0.6,
    night_probability=0.7, night_start_mean_h=22.5, night_start_std_h=1.5,
    night_median_h=5.0, night_sigma=0.5,
    day_slots_per_day=2, day_slot_probability=0.5, day_start_range_h=(7.0, 21.0),
    day_median_min=20.0, day_sigma=1.0,
)


def generate_devices(num_devices: int, seed: int,
                     params: GeneratorParams = DEFAULT_PARAMS
                     ) -> population_lib.DeviceProfiles:
  """Device speeds for `num_devices` devices."""
  rng = np.random.default_rng([seed, 1])
  z = rng.standard_normal((3, num_devices), dtype=np.float32)
  rho = params.up_down_correlation
  up_z = rho * z[1] + np.sqrt(1.0 - rho * rho) * z[2]
  return population_lib.DeviceProfiles(
      compute_ms_per_sample=(params.compute_median_ms
                             * np.exp(params.compute_sigma * z[0])).astype(np.float32),
      download_kbps=(params.download_median_kbps
                     * np.exp(params.download_sigma * z[1])).astype(np.float32),
      upload_kbps=(params.upload_median_kbps
                   * np.exp(params.upload_sigma * up_z)).astype(np.float32),
  )


def _merge_rows(start: np.ndarray, end: np.ndarray, keep: np.ndarray):
  """Sorts each row's slots, merges overlaps; returns (start, end, keep)."""
  start = np.where(keep, start, np.inf)
  order = np.argsort(start, axis=1, kind='stable')
  start = np.take_along_axis(start, order, 1)
  end = np.take_along_axis(np.where(keep, end, -np.inf), order, 1)
  keep = np.isfinite(start)
  reach = np.maximum.accumulate(end, axis=1)
  # A slot opens a new group unless it starts before the previous groups end.
  opens = keep.copy()
  opens[:, 1:] &= start[:, 1:] > reach[:, :-1]
  group = np.cumsum(opens, axis=1) - 1
  # Group end = reach at the last member of the group.
  last_member = np.zeros_like(opens)
  last_member[:, :-1] = opens[:, 1:] | ~keep[:, 1:]
  last_member[:, -1] = True
  last_member &= keep
  rows = np.broadcast_to(np.arange(start.shape[0])[:, None], start.shape)
  merged_end = np.full(start.shape, -np.inf)
  merged_end[rows[last_member], group[last_member]] = reach[last_member]
  merged_start = np.full(start.shape, np.inf)
  merged_start[rows[opens], group[opens]] = start[opens]
  return merged_start, merged_end, np.isfinite(merged_start)


def generate_availability(num_devices: int, seed: int,
                          params: GeneratorParams = DEFAULT_PARAMS
                          ) -> availability_lib.AvailabilityTrace:
  """A week of availability slots for `num_devices` devices."""
  rng = np.random.default_rng([seed, 2])
  days = np.arange(7) * DAY_S
  n = num_devices
  night_start = days + 3600.0 * (params.night_start_mean_h + params.night_start_std_h
                                 * rng.standard_normal((n, 7), dtype=np.float32))
  night_len = 3600.0 * params.night_median_h * np.exp(
      params.night_sigma * rng.standard_normal((n, 7), dtype=np.float32))
  night_keep = rng.random((n, 7), dtype=np.float32) < params.night_probability
  k = params.day_slots_per_day
  lo_h, hi_h = params.day_start_range_h
  day_start = np.repeat(days, k) + 3600.0 * rng.uniform(lo_h, hi_h, (n, 7 * k))
  day_len = 60.0 * params.day_median_min * np.exp(
      params.day_sigma * rng.standard_normal((n, 7 * k), dtype=np.float32))
  day_keep = rng.random((n, 7 * k), dtype=np.float32) < params.day_slot_probability

  start = np.mod(np.concatenate([night_start, day_start], 1), WEEK_S)
  end = start + np.concatenate([night_len, day_len], 1)
  keep = np.concatenate([night_keep, day_keep], 1)
  start, end, keep = _merge_rows(start, end, keep)
  # Slots running past the week's end continue at its start.
  wraps = keep & (end > WEEK_S)
  start = np.concatenate([start, np.where(wraps, 0.0, np.inf)], 1)
  end = np.concatenate([np.minimum(end, WEEK_S), np.where(wraps, end - WEEK_S, -np.inf)], 1)
  keep = np.concatenate([keep, wraps], 1)
  start, end, keep = _merge_rows(start, end, keep)

  # Whole seconds (floor keeps merged neighbours from overlapping).
  start = np.floor(np.where(keep, start, 0.0)).astype(np.int32)
  end = np.floor(np.where(keep, np.minimum(end, WEEK_S), 0.0)).astype(np.int32)
  keep &= end > start
  counts = keep.sum(axis=1)
  offsets = np.zeros(n + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  return availability_lib.AvailabilityTrace(
      slot_offsets=offsets, slot_start_s=start[keep], slot_end_s=end[keep],
      period_s=np.full(n, WEEK_S, np.int32))
