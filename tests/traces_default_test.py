"""Tests for tf_fedscale.traces.default: determinism, the published shape of the default
population, and its fit to the FLASH quantiles committed in traces/calibrated.py.

Tolerances (20,000 devices; sampling error is a few percent):
- medians of download and upload within 5% of their parameters;
- order-of-magnitude spread: 95th / 5th percentile >= 9.5 (10 less sampling error)
  for compute, download and upload (FedScale: AI Benchmark, MobiPerf);
- separate up and down: upload median below download, log correlation within
  0.05 of the parameter;
- diurnal cycle: the most-online hour of the day at night (22:00-06:00), the
  least-online in the day (09:00-20:00), at least 3x apart;
- slots often shorter than a round: at least 25% of slots under 10 minutes;
- FLASH (1,000 devices' weekly charging hours): the 10th-90th percentiles of
  weekly online hours within 25%, the mean online fraction within 0.03;
- AI-Benchmark compute (phones > 2 GB RAM, FLASH's scale): 10th-90th percentiles
  within 20% (the mixture misses the gap between the two clusters of phones a
  little, 12% at the 10th and 15% at the 25th percentile).
"""

from absl.testing import absltest
import numpy as np

from tf_fedscale.traces import calibrated
from tf_fedscale.traces import default
from tf_fedscale.traces import slots
from tf_fedscale.traces import stats

N = 20_000


class DefaultPopulationTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.devices = default.generate_devices(N, seed=0)
    cls.trace = default.generate_availability(N, seed=0)

  def test_deterministic_per_seed(self):
    again = default.generate_availability(N, seed=0)
    other = default.generate_availability(N, seed=1)
    for name in ('slot_offsets', 'slot_start_s', 'slot_end_s'):
      np.testing.assert_array_equal(getattr(self.trace, name), getattr(again, name))
    self.assertFalse(np.array_equal(self.trace.slot_start_s[:100], other.slot_start_s[:100]))
    d = default.generate_devices(N, seed=0)
    np.testing.assert_array_equal(d.compute_ms_per_sample, self.devices.compute_ms_per_sample)
    self.assertFalse(np.array_equal(
        default.generate_devices(N, seed=1).upload_kbps, self.devices.upload_kbps))

  def test_dtypes_and_sizes(self):
    self.assertEqual(self.devices.compute_ms_per_sample.dtype, np.float32)
    self.assertEqual(self.trace.slot_start_s.dtype, np.int32)
    self.assertEqual(self.trace.num_devices, N)
    self.assertEqual(default.generate_availability(0, seed=0).num_devices, 0)
    across_chunks = default.generate_availability(default.CHUNK + 3, seed=0)
    self.assertEqual(across_chunks.num_devices, default.CHUNK + 3)

  def test_medians(self):
    p = default.DEFAULT_PARAMS
    for values, want in ((self.devices.download_kbps, p.download_median_kbps),
                         (self.devices.upload_kbps, p.upload_median_kbps)):
      self.assertAlmostEqual(np.median(values) / want, 1.0, delta=0.05)

  def test_order_of_magnitude_spread(self):
    for name in ('compute_ms_per_sample', 'download_kbps', 'upload_kbps'):
      p5, p95 = np.quantile(getattr(self.devices, name), (0.05, 0.95))
      self.assertGreaterEqual(p95 / p5, 9.5, name)

  def test_compute_within_phone_range(self):
    p = default.DEFAULT_PARAMS
    self.assertGreaterEqual(self.devices.compute_ms_per_sample.min(), np.float32(p.compute_min_ms))
    self.assertLessEqual(self.devices.compute_ms_per_sample.max(), np.float32(p.compute_max_ms))

  def test_separate_up_and_down(self):
    down, up = self.devices.download_kbps, self.devices.upload_kbps
    self.assertLess(np.median(up), np.median(down))
    corr = np.corrcoef(np.log(down), np.log(up))[0, 1]
    self.assertAlmostEqual(corr, default.DEFAULT_PARAMS.up_down_correlation, delta=0.05)

  def test_diurnal_cycle(self):
    by_hour = stats.online_fraction_by_hour(self.trace).mean(axis=0)
    peak, trough = int(np.argmax(by_hour)), int(np.argmin(by_hour))
    self.assertTrue(peak >= 22 or peak < 6, by_hour)
    self.assertTrue(9 <= trough < 20, by_hour)
    self.assertGreaterEqual(by_hour[peak] / by_hour[trough], 3.0)

  def test_short_slots_are_common(self):
    lengths = stats.slot_lengths_s(self.trace)
    self.assertGreaterEqual(np.mean(lengths < 600), 0.25)

  def test_matches_flash_weekly_charging(self):
    targets = calibrated.TARGETS
    hours = stats.online_fraction_per_device(self.trace) * 168
    for q, want in targets['weekly_online_hours_quantiles'].items():
      self.assertAlmostEqual(np.quantile(hours, q) / want, 1.0, delta=0.25, msg=f'q={q}')
    self.assertAlmostEqual(hours.mean() / 168, targets['mean_online_fraction'], delta=0.03)

  def test_matches_ai_benchmark_compute(self):
    for q, want in calibrated.TARGETS['compute_ms_quantiles'].items():
      got = np.quantile(self.devices.compute_ms_per_sample, q)
      self.assertAlmostEqual(got / want, 1.0, delta=0.2, msg=f'q={q}')

  def test_online_until_crosses_the_week_end(self):
    # A device whose slot runs to the end of the week stays online into the next.
    t = self.trace
    last = t.slot_offsets[1:] - 1
    has = t.slot_offsets[1:] > t.slot_offsets[:-1]
    wraps = np.flatnonzero(has & (t.slot_end_s[np.maximum(last, 0)] == t.period_s)
                           & (t.slot_start_s[np.minimum(t.slot_offsets[:-1],
                                                        len(t.slot_start_s) - 1)] == 0))
    self.assertNotEmpty(wraps)
    device = wraps[0]
    until = t.online_until_s([device], t.period_s[device] - 1.0)[0]
    self.assertGreater(until, t.period_s[device])


class MergeSlotsTest(absltest.TestCase):

  def test_merges_overlapping_and_touching_per_device(self):
    counts, start, end = slots.merge_slots(
        device=np.array([1, 0, 1, 1, 0, 3]), start=np.array([50, 10, 0, 20, 10, 0]),
        end=np.array([60, 20, 20, 30, 15, 100]), num_devices=4, max_end=100)
    np.testing.assert_array_equal(counts, [1, 2, 0, 1])
    np.testing.assert_array_equal(start, [10, 0, 50, 0])
    np.testing.assert_array_equal(end, [20, 30, 60, 100])

  def test_devices_stay_apart_at_the_period_edge(self):
    counts, start, end = slots.merge_slots(
        np.array([0, 1]), np.array([50, 0]), np.array([100, 10]), 2, 100)
    np.testing.assert_array_equal(counts, [1, 1])
    np.testing.assert_array_equal(end, [100, 10])


if __name__ == '__main__':
  absltest.main()
