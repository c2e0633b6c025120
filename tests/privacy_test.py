"""Tests for tf_fedscale.privacy: epsilon from the sampling rates really used."""

import csv
import math
import os
import tempfile

from absl.testing import absltest
import dp_accounting
import numpy as np

from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale import availability
from tf_fedscale import checkpoint
from tf_fedscale.engine import runtime
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics
from tf_fedscale import population as population_lib
from tf_fedscale import privacy
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


def _epsilon_from_rdp(rdp, delta):
  """Canonne, Kamath & Steinke 2020 (Prop. 12 of arXiv:2004.00010 v4):
  eps = min over orders a of rdp(a) + log(1 - 1/a) - log(delta a) / (a - 1)."""
  orders = np.array(privacy.RDP_ORDERS, np.float64)
  usable = orders > 1.01
  a, r = orders[usable], np.asarray(rdp)[usable]
  return float(np.min(r + np.log1p(-1 / a) - np.log(delta * a) / (a - 1)))


def _population(num_clients, online):
  """`online` clients always online, the rest never."""
  slots = [(0, availability.SECONDS_PER_WEEK) if i < online else None
           for i in range(num_clients)]
  offsets = np.cumsum([0] + [s is not None for s in slots]).astype(np.int64)
  trace = availability.AvailabilityTrace(
      slot_offsets=offsets,
      slot_start_s=np.zeros(online, np.int32),
      slot_end_s=np.full(online, availability.SECONDS_PER_WEEK, np.int32),
      period_s=np.full(num_clients, availability.SECONDS_PER_WEEK, np.int32))
  task = synthetic.build(num_clients=num_clients, seed=3)
  pop = population_lib.Population(
      client_ids=task.train_data.client_ids, num_examples=task.num_train_examples,
      devices=population_lib.DeviceProfiles.uniform(num_clients, 1.0, 1e5, 1e5),
      availability=trace, device_row=np.arange(num_clients, dtype=np.int32),
      availability_row=np.arange(num_clients, dtype=np.int32))
  return task, pop


class EpsilonTest(absltest.TestCase):

  def test_uniform_epsilon_matches_dp_accounting(self):
    z, q, delta = 1.1, 0.01, 1e-5
    for rounds in (1, 10, 100):
      accountant = dp_accounting.rdp.RdpAccountant(privacy.RDP_ORDERS)
      accountant.compose(dp_accounting.SelfComposedDpEvent(
          dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)),
          rounds))
      self.assertAlmostEqual(privacy.dp_epsilon(z, q, rounds, delta),
                             accountant.get_epsilon(delta), places=9)
    eps = [privacy.dp_epsilon(z, q, r, delta) for r in (1, 10, 100)]
    self.assertEqual(eps, sorted(eps))
    # RDP is an upper bound of the tighter PLD accounting.
    pld = dp_accounting.pld.PLDAccountant()
    pld.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), 100))
    self.assertBetween(pld.get_epsilon(delta), 0.5 * eps[-1], eps[-1])
    self.assertEqual(privacy.dp_epsilon(z, q, 0, delta), 0.0)
    self.assertEqual(privacy.dp_epsilon(0.0, q, 3, delta), float('inf'))

  def test_unamplified_rounds_by_hand(self):
    # Rate 1 (a selector that is not random): each round is a Gaussian
    # mechanism, RDP a / (2 z^2) (Mironov 2017); rounds without aggregation
    # cost nothing. Rates [1, 0, 1] with z = 2: RDP = 2 a / 8.
    _, pop = _population(4, 4)
    report = privacy.PrivacyReport(2.0, 2, pop, 1e-5, samples_uniformly=False)
    for rate in (1.0, 0.0, 1.0):
      report.compose(rate)
    self.assertEqual(report.released_rounds, 2)
    orders = np.array(privacy.RDP_ORDERS)
    self.assertAlmostEqual(report.epsilon(), _epsilon_from_rdp(2 * orders / 8, 1e-5),
                           places=9)

  def test_mixed_rates_compose_round_by_round(self):
    z, delta, rates = 1.0, 1e-5, [0.3, 0.6, 0.0, 1.0, 0.3]
    _, pop = _population(10, 10)
    report = privacy.PrivacyReport(z, 3, pop, delta, samples_uniformly=True)
    for rate in rates:
      report.compose(rate)
    # RDP adds up over rounds. Poisson-subsampled Gaussian at integer order a
    # (Mironov, Talwar & Zhang 2019): log(sum_k C(a,k) (1-q)^(a-k) q^k
    # exp((k^2 - k) / (2 z^2))) / (a - 1), summed over the rounds' rates.
    orders = np.array(privacy.RDP_ORDERS, np.float64)
    integer = orders[(orders == np.round(orders)) & (orders >= 2)]
    def rdp(q, a):
      if q == 1.0:
        return a / (2 * z ** 2)
      a = int(a)
      k = np.arange(a + 1)
      log_terms = (np.array([math.lgamma(a + 1) - math.lgamma(i + 1) - math.lgamma(a - i + 1)
                             for i in k])
                   + (a - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * z ** 2))
      top = log_terms.max()
      return (top + math.log(np.exp(log_terms - top).sum())) / (a - 1)
    total = np.array([sum(rdp(q, a) for q in rates if q > 0) for a in integer])
    by_hand = float(np.min(total + np.log1p(-1 / integer)
                           - np.log(delta * integer) / (integer - 1)))
    # The report also tries fractional orders: at most this, and close to it.
    self.assertLessEqual(report.epsilon(), by_hand + 1e-9)
    self.assertGreater(report.epsilon(), 0.95 * by_hand)
    # Higher rates cost more than the conventional K / N = 0.3 every round.
    self.assertGreater(report.epsilon(), privacy.dp_epsilon(z, 0.3, 5, delta))


class RecordedRatesTest(absltest.TestCase):

  def _run(self, selector, online, rounds=2):
    task, pop = _population(20, online)
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    agg = aggregators.build_aggregator('dp', clients_per_round=3, noise_multiplier=1.0)
    model_fn = task.model_fn()
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', model_fn, 0.1, 1.0, model_aggregator=agg.factory))
    report = privacy.PrivacyReport(1.0, 3, pop, 1e-5, selector.samples_uniformly)
    sim = simulation.Simulation(
        process, task.train_data, pop, selector,
        accounting.LatencyAccountant(pop, clients_per_round=3),
        local_work_lib.LocalWork(batch_size=5, local_steps=2), seed=0,
        release_managers=metrics.build_release_managers(output_dir), hooks=[report])
    sim.run(sim.initialize(), rounds)
    with open(os.path.join(output_dir, 'metrics.csv')) as f:
      return list(csv.DictReader(f))

  def test_uniform_selection_is_charged_invited_over_online(self):
    # 5 of 20 clients online, 3 invited: q = 3 / 5, not K / N = 3 / 20.
    rows = self._run(selection.UniformSelector(3), online=5)
    self.assertEqual([float(r['dp_sampling_rate']) for r in rows], [0.0, 0.6, 0.6])
    self.assertEqual(float(rows[0]['epsilon']), 0.0)
    self.assertAlmostEqual(float(rows[2]['epsilon']),
                           privacy.dp_epsilon(1.0, 0.6, 2, 1e-5), places=6)
    self.assertAlmostEqual(float(rows[2]['epsilon_uniform']),
                           privacy.dp_epsilon(1.0, 3 / 20, 2, 1e-5), places=6)
    self.assertEqual(float(rows[2]['dp_delta']), 1e-5)

  def test_a_selector_that_is_not_random_is_charged_rate_one(self):
    rows = self._run(selection.FastestSelector(3), online=20, rounds=1)
    self.assertEqual(float(rows[1]['dp_sampling_rate']), 1.0)
    self.assertAlmostEqual(float(rows[1]['epsilon']),
                           privacy.dp_epsilon(1.0, 1.0, 1, 1e-5), places=6)
    self.assertTrue(math.isfinite(float(rows[1]['epsilon'])))


class StateTest(absltest.TestCase):
  """The report's composed privacy loss lives in the round state."""

  def _sim(self, output_dir=None):
    task, pop = _population(20, 5)
    agg = aggregators.build_aggregator('dp', clients_per_round=3, noise_multiplier=1.0)
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', task.model_fn(), 0.1, 1.0, model_aggregator=agg.factory))
    return simulation.Simulation(
        process, task.train_data, pop, selection.UniformSelector(3),
        accounting.LatencyAccountant(pop, clients_per_round=3),
        local_work_lib.LocalWork(batch_size=5, local_steps=2), seed=0,
        hooks=[privacy.PrivacyReport(1.0, 3, pop, 1e-5, samples_uniformly=True)],
        release_managers=(metrics.build_release_managers(output_dir)
                          if output_dir else ()))

  def test_state_round_trips(self):
    _, pop = _population(10, 10)
    report = privacy.PrivacyReport(1.0, 3, pop, 1e-5, samples_uniformly=True)
    for rate in (0.3, 0.0, 0.6):
      report.compose(rate)
    other = privacy.PrivacyReport(1.0, 3, pop, 1e-5, samples_uniformly=True)
    other.set_state(report.get_state())
    self.assertEqual(other.epsilon(), report.epsilon())
    with self.assertRaisesRegex(ValueError, 'RDP values'):
      other.set_state({'rdp': np.zeros(3), 'released_rounds': 1})

  def test_a_retried_round_gives_the_same_record_and_hook_state(self):
    sim = self._sim()
    start = sim.initialize()
    self.assertEqual(list(start.hook_state), ['hook_0'])
    first_state, first = sim.run_round(start)
    second_state, second = sim.run_round(first_state)
    again_state, again = sim.run_round(start)  # a retry from the same state
    self.assertEqual(again.metrics['epsilon'], first.metrics['epsilon'])
    self.assertEqual(again.metrics['dp_sampling_rate'], 0.6)
    np.testing.assert_array_equal(again_state.hook_state['hook_0']['rdp'],
                                  first_state.hook_state['hook_0']['rdp'])
    self.assertEqual(int(start.hook_state['hook_0']['released_rounds']), 0)
    self.assertEqual(int(first_state.hook_state['hook_0']['released_rounds']), 1)
    # The second round composes on the first, not on the retry.
    self.assertAlmostEqual(first.metrics['epsilon'],
                           privacy.dp_epsilon(1.0, 0.6, 1, 1e-5), places=9)
    self.assertAlmostEqual(second.metrics['epsilon'],
                           privacy.dp_epsilon(1.0, 0.6, 2, 1e-5), places=9)

  def test_resume_composes_the_same_epsilon_as_an_uninterrupted_run(self):
    reference_dir = self.enterContext(tempfile.TemporaryDirectory())
    self._sim(reference_dir).run(self._sim().initialize(), 4)
    resumed_dir = self.enterContext(tempfile.TemporaryDirectory())
    checkpointer = checkpoint.Checkpointer(os.path.join(resumed_dir, 'ckpt'), 2)
    first = self._sim(resumed_dir)
    first.run(first.initialize(), 2, checkpointer=checkpointer)
    # A new process: nothing carried over but the checkpoint (metrics.csv is
    # not read back).
    os.remove(os.path.join(resumed_dir, 'metrics.csv'))
    second = self._sim(resumed_dir)
    state = second.restore(checkpointer)
    self.assertEqual(state.round_num, 2)
    self.assertEqual(int(state.hook_state['hook_0']['released_rounds']), 2)
    second.run(state, 4, checkpointer=checkpointer)
    def epsilons(output_dir):
      with open(os.path.join(output_dir, 'metrics.csv')) as f:
        return {int(r['round']): float(r['epsilon']) for r in csv.DictReader(f)}
    reference, resumed = epsilons(reference_dir), epsilons(resumed_dir)
    self.assertEqual(sorted(resumed), [3, 4])
    self.assertEqual(resumed[4], reference[4])
    self.assertAlmostEqual(reference[4], privacy.dp_epsilon(1.0, 0.6, 4, 1e-5), places=9)


if __name__ == '__main__':
  absltest.main()
