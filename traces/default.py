"""The embedded default population: a seeded generator of device speeds and
weekly availability, used when no trace file is given.

Every parameter of `DEFAULT_PARAMS` is either fitted to real measurements by
`traces/calibrate.py` (the numbers live in `traces/calibrated.py`, with the
source of each) or an assumption stated in `ASSUMED` below; README.md, section
"Traces", lists them all.

Model, per device:
- compute: inference ms per sample, a mixture of two lognormals (AI-Benchmark
  phones without and with an NPU), truncated to the phones' range;
- network: lognormal download and upload kbps, correlated in log space;
- availability (charging = available, as in FedScale): a latent charging habit
  `u ~ N(0, 1)` sets the chance `sigmoid(night_logit + habit_sigma * u)` that
  the device charges on a given night (a slot starting around bedtime) and the
  chance `sigmoid(day_logit + habit_sigma * u)` that each of a few candidate
  daytime slots (short top-ups) happens. Overlapping slots merge; slots that run
  past the end of the week continue at its start.

Generation is vectorized over chunks of devices in 1-D arrays (no Python loop
over devices): 2,000,000 devices take about 4 s of CPU and 256 MB of arrays.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale import population as population_lib
from tf_fedscale.traces import calibrated
from tf_fedscale.traces import slots as slots_lib

DAY_S = 24 * 3600
WEEK_S = availability_lib.SECONDS_PER_WEEK
CHUNK = 1 << 16  # devices generated at a time (bounds memory)


@dataclasses.dataclass(frozen=True)
class GeneratorParams:
  """Distribution parameters of the default generator (see the module docstring)."""

  # Compute: inference ms per sample, a mixture of two lognormals (phones
  # without and with an NPU), truncated to [min, max].
  compute_median_ms: float
  compute_sigma: float
  compute_npu_fraction: float
  compute_npu_median_ms: float
  compute_npu_sigma: float
  compute_min_ms: float
  compute_max_ms: float
  # Network: lognormal kbps, upload correlated with download in log space.
  download_median_kbps: float
  download_sigma: float
  upload_median_kbps: float
  upload_sigma: float
  up_down_correlation: float
  # Availability: a per-device charging habit drives night and daytime slots.
  habit_sigma: float
  night_logit: float  # logit of the chance of charging on a given night (u = 0)
  night_start_mean_h: float
  night_start_std_h: float
  night_median_h: float
  night_sigma: float
  day_logit: float  # logit of the chance of each candidate daytime slot (u = 0)
  day_slots_per_day: int
  day_start_range_h: tuple[float, float]
  day_median_min: float
  day_sigma: float

  def replace(self, **changes) -> 'GeneratorParams':
    return dataclasses.replace(self, **changes)


# Not measured anywhere we can read: chosen, with the reason (README, "Traces").
ASSUMED = dict(
    night_start_mean_h=22.5,  # plugged in at bedtime
    night_start_std_h=2.0,  # a broad evening: the diurnal swing is about 4x
    night_sigma=0.5,  # night-to-night variation of the overnight charge
    day_slots_per_day=2,  # candidate daytime top-ups
    day_start_range_h=(7.0, 22.0),  # waking hours
    day_median_min=10.0,  # short top-ups: FedScale's "short available slots"
    day_sigma=1.2,  # about a quarter of them shorter than 5 minutes
)


def params_from(fitted: dict) -> GeneratorParams:
  """Generator parameters from fitted numbers (traces/calibrated.py) and ASSUMED."""
  return GeneratorParams(**fitted, **ASSUMED)


DEFAULT_PARAMS = params_from(calibrated.FITTED)


def generate_devices(num_devices: int, seed: int,
                     params: GeneratorParams = DEFAULT_PARAMS
                     ) -> population_lib.DeviceProfiles:
  """Device speeds for `num_devices` devices (float32 arrays)."""
  if num_devices < 0:
    raise ValueError(f'num_devices must be >= 0, got {num_devices}.')
  rng = np.random.default_rng([seed, 1])
  z = rng.standard_normal((3, num_devices), dtype=np.float32)
  npu = rng.random(num_devices, dtype=np.float32) < params.compute_npu_fraction
  rho = np.float32(params.up_down_correlation)
  median = np.where(npu, np.float32(params.compute_npu_median_ms),
                    np.float32(params.compute_median_ms))
  sigma = np.where(npu, np.float32(params.compute_npu_sigma),
                   np.float32(params.compute_sigma))
  compute = median * np.exp(sigma * z[0])
  np.clip(compute, params.compute_min_ms, params.compute_max_ms, out=compute)
  download = np.float32(params.download_median_kbps) * np.exp(
      np.float32(params.download_sigma) * z[1])
  z[2] *= np.sqrt(np.float32(1.0) - rho * rho)
  z[2] += rho * z[1]
  upload = np.float32(params.upload_median_kbps) * np.exp(
      np.float32(params.upload_sigma) * z[2])
  return population_lib.DeviceProfiles(
      compute_ms_per_sample=compute.astype(np.float32, copy=False),
      download_kbps=download.astype(np.float32, copy=False),
      upload_kbps=upload.astype(np.float32, copy=False))


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1 / (1 + np.exp(-x))


def _candidate_slots(rng: np.random.Generator, m: int, params: GeneratorParams):
  """Kept night and daytime slots of `m` devices: (device, start_s, length_s),
  float32 seconds from the start of the week (start may pass its end)."""
  f32 = np.float32
  habit = f32(params.habit_sigma) * rng.standard_normal(m, dtype=f32)
  night_p = _sigmoid(f32(params.night_logit) + habit)
  day_p = _sigmoid(f32(params.day_logit) + habit)

  night_dev, night_day = np.nonzero(rng.random((m, 7), dtype=f32) < night_p[:, None])
  k = len(night_dev)
  night_start = night_day.astype(f32) * f32(DAY_S) + f32(3600) * (
      f32(params.night_start_mean_h)
      + f32(params.night_start_std_h) * rng.standard_normal(k, dtype=f32))
  night_len = f32(3600 * params.night_median_h) * np.exp(
      f32(params.night_sigma) * rng.standard_normal(k, dtype=f32))

  slots = params.day_slots_per_day
  day_dev, day_idx = np.nonzero(rng.random((m, 7 * slots), dtype=f32) < day_p[:, None])
  k = len(day_dev)
  lo_h, hi_h = params.day_start_range_h
  day_start = (day_idx // slots).astype(f32) * f32(DAY_S) + f32(3600) * (
      f32(lo_h) + f32(hi_h - lo_h) * rng.random(k, dtype=f32))
  day_len = f32(60 * params.day_median_min) * np.exp(
      f32(params.day_sigma) * rng.standard_normal(k, dtype=f32))

  device = np.concatenate([night_dev, day_dev])
  start = np.concatenate([night_start, day_start])
  length = np.minimum(np.concatenate([night_len, day_len]), f32(DAY_S))
  return device, start, length


def _chunk_availability(rng: np.random.Generator, m: int, params: GeneratorParams):
  device, start, length = _candidate_slots(rng, m, params)
  week = np.float32(WEEK_S)
  start = np.mod(start, week)
  end = start + length
  # Slots running past the week's end continue at its start.
  wraps = np.flatnonzero(end > week)
  device = np.concatenate([device, device[wraps]])
  start = np.concatenate([start, np.zeros(len(wraps), np.float32)])
  end = np.concatenate([np.minimum(end, week), end[wraps] - week])
  # Whole seconds (truncation = floor: all are >= 0); sub-second slots vanish.
  start = start.astype(np.int32)
  end = end.astype(np.int32)
  keep = end > start
  return slots_lib.merge_slots(device[keep], start[keep], end[keep], m, WEEK_S)


def generate_availability(num_devices: int, seed: int,
                          params: GeneratorParams = DEFAULT_PARAMS
                          ) -> availability_lib.AvailabilityTrace:
  """A week of availability slots for `num_devices` devices."""
  if num_devices < 0:
    raise ValueError(f'num_devices must be >= 0, got {num_devices}.')
  counts, starts, ends = [], [], []
  for index, first in enumerate(range(0, num_devices, CHUNK)):
    rng = np.random.default_rng([seed, 2, index])
    c, s, e = _chunk_availability(rng, min(CHUNK, num_devices - first), params)
    counts.append(c)
    starts.append(s)
    ends.append(e)
  offsets = slots_lib.csr_offsets(np.concatenate(counts) if counts
                                  else np.zeros(0, np.int64))
  slot_start = np.concatenate(starts) if starts else np.zeros(0, np.int32)
  del starts  # free the chunks before validation allocates its temporaries
  slot_end = np.concatenate(ends) if ends else np.zeros(0, np.int32)
  del ends
  return availability_lib.AvailabilityTrace(
      slot_offsets=offsets, slot_start_s=slot_start, slot_end_s=slot_end,
      period_s=np.full(num_devices, WEEK_S, np.int32))


def population(client_ids: Sequence[str], num_examples: np.ndarray, seed: int = 0,
               trace_seed: int = 0) -> population_lib.Population:
  """The default population: one generated device and availability row per client
  (rows from `trace_seed`, clients bound to rows at random with `seed`)."""
  return population_lib.Population.build(
      client_ids=client_ids, num_examples=num_examples,
      devices=generate_devices(len(client_ids), trace_seed),
      availability=generate_availability(len(client_ids), trace_seed), seed=seed)
