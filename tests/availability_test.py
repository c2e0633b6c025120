"""Tests for tf_fedscale.availability."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import availability

WEEK = availability.SECONDS_PER_WEEK


def _trace(slots_per_device, period_s=WEEK):
  starts, ends, offsets = [], [], [0]
  for slots in slots_per_device:
    for start, end in slots:
      starts.append(start)
      ends.append(end)
    offsets.append(len(starts))
  n = len(slots_per_device)
  return availability.AvailabilityTrace(
      slot_offsets=np.array(offsets, np.int64),
      slot_start_s=np.array(starts, np.int32),
      slot_end_s=np.array(ends, np.int32),
      period_s=np.full(n, period_s, np.int32))


class AvailabilityTest(absltest.TestCase):

  def test_online_at_interval_edges(self):
    # Closed [start, end], as FedScale's is_active: both edges are online.
    trace = _trace([[(100, 200), (300, 400)]])
    times = [99, 100, 199, 200, 200.5, 250, 300, 399, 400, 400.5]
    got = [bool(trace.is_online([0], t)[0]) for t in times]
    self.assertEqual(got, [False, True, True, True, False, False, True, True, True, False])

  def test_is_periodic(self):
    trace = _trace([[(100, 200)]])
    self.assertTrue(trace.is_online([0], WEEK + 150)[0])
    self.assertFalse(trace.is_online([0], 3 * WEEK + 250)[0])

  def test_device_without_slots_is_never_online(self):
    trace = _trace([[], [(0, 10)]])
    np.testing.assert_array_equal(trace.is_online([0, 1], 5), [False, True])
    np.testing.assert_array_equal(trace.online_devices(5), [1])

  def test_online_until_is_slot_end(self):
    trace = _trace([[(100, 200)], [(0, 50)]])
    np.testing.assert_array_equal(trace.online_until_s([0, 1], WEEK + 150),
                                  [WEEK + 200, WEEK + 150])

  def test_slot_wrapping_around_the_week_continues(self):
    # Online from Sunday 23:00 to Monday 02:00, stored as two slots.
    trace = _trace([[(0, 7200), (WEEK - 3600, WEEK)]])
    self.assertTrue(trace.is_online([0], WEEK - 10)[0])
    self.assertTrue(trace.is_online([0], WEEK + 10)[0])
    self.assertEqual(trace.online_until_s([0], WEEK - 1800)[0], WEEK + 7200)
    self.assertEqual(trace.online_until_s([0], WEEK + 100)[0], WEEK + 7200)

  def test_whole_period_slot_never_ends(self):
    # One slot [0, period): online at every instant, so it never leaves.
    trace = _trace([[(0, WEEK)], [(0, 100), (100, WEEK)], [(0, WEEK - 1)]])
    until = trace.online_until_s([0, 1, 2], 2 * WEEK - 5)
    self.assertTrue(np.isinf(until[0]))
    self.assertTrue(np.isinf(until[1]))  # two adjacent slots covering the period
    self.assertEqual(until[2], 2 * WEEK - 1)
    np.testing.assert_array_equal(trace.online_s_per_period(), [WEEK, WEEK, WEEK - 1])

  def test_always_online(self):
    trace = availability.AvailabilityTrace.always(3)
    self.assertTrue(trace.is_online(np.arange(3), 12345.0).all())
    self.assertTrue(np.isinf(trace.online_until_s([1], 0.0)).all())

  def test_vectorized_matches_scalar_definition(self):
    rng = np.random.default_rng(0)
    slots = []
    for _ in range(50):
      edges = np.sort(rng.choice(WEEK, size=2 * rng.integers(0, 6), replace=False))
      slots.append(list(zip(edges[::2], edges[1::2])))
    trace = _trace(slots)
    for t in rng.uniform(0, 3 * WEEK, 20):
      expected = [any(s <= t % WEEK <= e for s, e in dev) for dev in slots]
      np.testing.assert_array_equal(trace.is_online(np.arange(50), t), expected)

  def test_rejects_slot_ending_before_start(self):
    with self.assertRaisesRegex(ValueError, 'slot 1 ends at 50 s, before its start 60'):
      _trace([[(0, 10), (60, 50)]])
    _trace([[(0, 10), (60, 60)]])  # a closed slot may be one instant

  def test_rejects_overlapping_slots(self):
    with self.assertRaisesRegex(ValueError, 'device 0 overlap'):
      _trace([[(0, 100), (50, 150)]])
    # Device 1's first slot starts before device 0's last ends: not an overlap.
    _trace([[(0, 100), (200, 300)], [(10, 20)]])
    with self.assertRaisesRegex(ValueError, 'device 2 overlap .* at slot 4'):
      _trace([[(0, 100), (200, 300)], [], [(10, 20), (30, 40), (35, 45)]])

  def test_rejects_slot_outside_period(self):
    with self.assertRaisesRegex(ValueError, 'outside the period'):
      _trace([[(0, 100)]], period_s=50)
    with self.assertRaisesRegex(
        ValueError, r'slot 2 of device 2 \[40, 60\] lies outside the period \[0, 50\)'):
      _trace([[(0, 10)], [], [(20, 30), (40, 60)], [(0, 70)]], period_s=50)


if __name__ == '__main__':
  absltest.main()
