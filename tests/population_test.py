"""Tests for tf_fedscale.population."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import availability
from tf_fedscale import population as population_lib


class MappingTest(absltest.TestCase):

  def test_modulo_is_fedscale_rule(self):
    rows = population_lib.map_clients_to_rows(5, 3, seed=0, mapping='modulo')
    np.testing.assert_array_equal(rows, [1, 2, 0, 1, 2])

  def test_modulo_numbers_clients_before_filtering(self):
    # FedScale numbers clients 1, 2, ... over the whole dataset and filters by
    # size afterwards: the kept clients at places 0, 3, 4 are clients 1, 4, 5.
    rows = population_lib.map_clients_to_rows(3, 3, seed=0, mapping='modulo',
                                              positions=np.array([0, 3, 4]))
    np.testing.assert_array_equal(rows, [1, 1, 2])

  def test_random_is_seeded_permutation(self):
    a = population_lib.map_clients_to_rows(10, 10, seed=1)
    b = population_lib.map_clients_to_rows(10, 10, seed=1)
    c = population_lib.map_clients_to_rows(10, 10, seed=2)
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(a, c))
    np.testing.assert_array_equal(np.sort(a), np.arange(10))

  def test_random_reuses_rows_only_when_needed(self):
    rows = population_lib.map_clients_to_rows(25, 10, seed=0)
    self.assertLessEqual(np.bincount(rows, minlength=10).max(), 3)
    self.assertGreaterEqual(np.bincount(rows, minlength=10).min(), 2)

  def test_unknown_mapping(self):
    with self.assertRaisesRegex(ValueError, "Unknown client mapping 'nearest'"):
      population_lib.map_clients_to_rows(5, 3, seed=0, mapping='nearest')


class PopulationTest(absltest.TestCase):

  def test_gathers_profiles_through_rows(self):
    devices = population_lib.DeviceProfiles(
        np.array([1.0, 2.0, 3.0], np.float32), np.array([10.0, 20.0, 30.0], np.float32),
        np.array([5.0, 6.0, 7.0], np.float32))
    pop = population_lib.Population(
        client_ids=['a', 'b'], num_examples=np.array([4, 5]), devices=devices,
        availability=availability.AvailabilityTrace.always(1),
        device_row=np.array([2, 0], np.int32), availability_row=np.array([0, 0], np.int32))
    np.testing.assert_array_equal(pop.compute_ms_per_sample([0, 1]), [3.0, 1.0])
    np.testing.assert_array_equal(pop.download_kbps([0]), [30.0])
    np.testing.assert_array_equal(pop.upload_kbps([1]), [5.0])
    np.testing.assert_array_equal(pop.online_clients(0.0), [0, 1])

  def _on_trace(self, slots_per_row, rows, period_s=100):
    starts = [a for slots in slots_per_row for a, _ in slots]
    ends = [b for slots in slots_per_row for _, b in slots]
    offsets = np.cumsum([0] + [len(s) for s in slots_per_row])
    trace = availability.AvailabilityTrace(
        slot_offsets=offsets.astype(np.int64), slot_start_s=np.array(starts, np.int32),
        slot_end_s=np.array(ends, np.int32),
        period_s=np.full(len(slots_per_row), period_s, np.int32))
    n = len(rows)
    return population_lib.Population(
        client_ids=[str(i) for i in range(n)], num_examples=np.ones(n, np.int64),
        devices=population_lib.DeviceProfiles.uniform(1),
        availability=trace, device_row=np.zeros(n, np.int32),
        availability_row=np.array(rows, np.int32))

  def test_first_time_enough_clients_are_online(self):
    # Row 0 online [10, 30), row 1 [20, 40) and [90, 100), row 2 [95, 100)
    # and [0, 5) (wrapping). Clients 0,1 on row 0, client 2 on row 1, 3 on 2.
    pop = self._on_trace([[(10, 30)], [(20, 40), (90, 100)], [(0, 5), (95, 100)]],
                         rows=[0, 0, 1, 2])
    # By hand: t=0: client 3; t=10: 0, 1; t=20: 0, 1, 2; t=90: 2; t=95: 2, 3.
    self.assertEqual(pop.first_time_online_s(1), (0.0, 1))
    self.assertEqual(pop.first_time_online_s(2), (10.0, 2))
    self.assertEqual(pop.first_time_online_s(3), (20.0, 3))
    # Never 4 at once: the first time the most (3) are.
    self.assertEqual(pop.first_time_online_s(4), (20.0, 3))
    for t, n in ((10.0, 2), (20.0, 3), (95.0, 2)):
      self.assertLen(pop.online_clients(t), n)

  def test_nobody_ever_online(self):
    pop = self._on_trace([[], [(10, 20)]], rows=[0, 0])
    self.assertEqual(pop.first_time_online_s(1), (0.0, 0))

  def test_shorter_periods_repeat_within_the_longest(self):
    starts, ends = np.array([30, 0], np.int32), np.array([40, 10], np.int32)
    trace = availability.AvailabilityTrace(
        slot_offsets=np.array([0, 1, 2], np.int64), slot_start_s=starts,
        slot_end_s=ends, period_s=np.array([50, 200], np.int32))
    pop = population_lib.Population(
        client_ids=['a', 'b', 'c'], num_examples=np.ones(3, np.int64),
        devices=population_lib.DeviceProfiles.uniform(1), availability=trace,
        device_row=np.zeros(3, np.int32), availability_row=np.array([0, 0, 1], np.int32))
    # Row 0 (period 50) is online [30,40), [80,90), [130,140), [180,190); row 1
    # [0, 10) of 200: three clients at once never; two first at t = 30.
    self.assertEqual(pop.first_time_online_s(3), (30.0, 2))
    self.assertEqual(pop.first_time_online_s(1), (0.0, 1))

  def test_two_million_clients_fit_in_arrays(self):
    n = 2_000_000
    pop = population_lib.Population.build(
        client_ids=range(n), num_examples=np.zeros(n, np.int64),
        devices=population_lib.DeviceProfiles.uniform(n, 1.0, 1.0, 1.0),
        availability=availability.AvailabilityTrace.always(n), seed=0)
    # 8 (examples) + 4 + 4 (rows) + 12 (speeds) + 12 (availability) bytes each.
    self.assertLess(pop.nbytes, 100 * n)

  def test_rejects_negative_speed(self):
    with self.assertRaisesRegex(ValueError, 'device 1 has compute_ms_per_sample=-1.0'):
      population_lib.DeviceProfiles(np.array([1.0, -1.0], np.float32),
                                    np.ones(2, np.float32), np.ones(2, np.float32))

  def test_rejects_zero_bandwidth(self):
    with self.assertRaisesRegex(ValueError, 'device 0 has upload_kbps=0'):
      population_lib.DeviceProfiles(np.ones(1, np.float32), np.ones(1, np.float32),
                                    np.zeros(1, np.float32))


if __name__ == '__main__':
  absltest.main()
