"""Tests for tf_fedscale.population."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import availability
from tf_fedscale import population as population_lib


class MappingTest(absltest.TestCase):

  def test_modulo_is_fedscale_rule(self):
    rows = population_lib.map_clients_to_rows(5, 3, seed=0, mapping='modulo')
    np.testing.assert_array_equal(rows, [1, 2, 0, 1, 2])

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
