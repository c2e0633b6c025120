"""Tests for tf_fedscale.selection."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import availability
from tf_fedscale import population as population_lib
from tf_fedscale import selection

WEEK = availability.SECONDS_PER_WEEK


def _population(online_mask):
  """Clients online during [0, 100) iff online_mask[i]."""
  n = len(online_mask)
  counts = np.asarray(online_mask, np.int64)
  offsets = np.concatenate([[0], np.cumsum(counts)])
  m = int(counts.sum())
  avail = availability.AvailabilityTrace(
      offsets, np.zeros(m, np.int32), np.full(m, 100, np.int32),
      np.full(n, WEEK, np.int32))
  return population_lib.Population(
      client_ids=[str(i) for i in range(n)], num_examples=np.ones(n, np.int64),
      devices=population_lib.DeviceProfiles.uniform(1), availability=avail,
      device_row=np.zeros(n, np.int32), availability_row=np.arange(n, dtype=np.int32))


class UniformSelectorTest(absltest.TestCase):

  def test_overcommitted_count_of_distinct_online_clients(self):
    rng = np.random.default_rng(0)
    mask = rng.random(1000) < 0.3
    pop = _population(mask)
    selector = selection.UniformSelector(clients_per_round=20, overcommit=1.3)
    self.assertEqual(selector.num_candidates, 26)
    chosen = selector.select(1, 50.0, pop, np.random.default_rng(1))
    self.assertLen(chosen, 26)
    self.assertLen(np.unique(chosen), 26)
    self.assertTrue(pop.is_online(chosen, 50.0).all())

  def test_same_rng_same_choice(self):
    pop = _population(np.ones(500, bool))
    selector = selection.UniformSelector(10)
    a = selector.select(3, 0.0, pop, np.random.default_rng([7, 3]))
    b = selector.select(3, 0.0, pop, np.random.default_rng([7, 3]))
    c = selector.select(3, 0.0, pop, np.random.default_rng([8, 3]))
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(a, c))

  def test_few_online_returns_all_of_them(self):
    mask = np.zeros(10_000, bool)
    mask[[5, 17, 9000]] = True
    pop = _population(mask)
    chosen = selection.UniformSelector(10).select(1, 10.0, pop, np.random.default_rng(0))
    self.assertCountEqual(chosen, [5, 17, 9000])

  def test_nobody_online(self):
    pop = _population(np.ones(10, bool))
    chosen = selection.UniformSelector(3).select(1, 500.0, pop, np.random.default_rng(0))
    self.assertEmpty(chosen)

  def test_build_selector_rejects_unknown_name(self):
    with self.assertRaisesRegex(ValueError, "Unknown selector 'oracle'"):
      selection.build_selector('oracle', 10, 1.0)

  def test_rejects_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'clients_per_round must be >= 1, got 0'):
      selection.UniformSelector(0)
    with self.assertRaisesRegex(ValueError, 'overcommit must be >= 1.0, got 0.5'):
      selection.UniformSelector(5, 0.5)


if __name__ == '__main__':
  absltest.main()
