"""Tests for tf_fedscale.privacy: epsilon of the draws the rounds really made."""

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


REPLACE_ONE = dp_accounting.NeighboringRelation.REPLACE_ONE


def _epsilon_from_columns(rows, noise_multiplier, delta):
  """What an independent check computes from metrics.csv (README, Aggregators)."""
  accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=REPLACE_ONE)
  for row in rows:
    if int(row['dp_sample_size']):
      accountant.compose(dp_accounting.SampledWithoutReplacementDpEvent(
          int(row['dp_population']), int(row['dp_sample_size']),
          dp_accounting.GaussianDpEvent(noise_multiplier / 2)))
  return accountant.get_epsilon(delta)


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


class LossSelector(selection.UniformSelector):
  """A plug-in that declares it reads the clients' training losses."""

  needs_client_loss = True


class EpsilonTest(absltest.TestCase):

  def test_unamplified_rounds_by_hand(self):
    # Population = sample (a selector that is not random): each round is a
    # Gaussian mechanism with sensitivity 2 x clip under REPLACE_ONE, so RDP
    # a x (2 clip)^2 / (2 (z clip)^2) = 2 a / z^2 (Mironov 2017); a round that
    # invited nobody costs nothing. Two rounds with z = 2: RDP = a.
    _, pop = _population(4, 4)
    report = privacy.PrivacyReport(2.0, selection.FastestSelector(2), pop, 1e-5)
    for draw in ((3, 3), (0, 0), (2, 2)):
      report.compose(*draw)
    self.assertEqual(report.released_rounds, 2)
    orders = np.array(privacy.RDP_ORDERS)
    self.assertAlmostEqual(report.epsilon(), _epsilon_from_rdp(orders, 1e-5), places=9)

  def test_draws_compose_as_dp_accounting_does(self):
    z, delta, draws = 1.0, 1e-5, [(40, 5), (10, 5), (0, 0), (25, 5), (5, 5)]
    _, pop = _population(40, 40)
    report = privacy.PrivacyReport(z, selection.UniformSelector(5), pop, delta)
    for draw in draws:
      report.compose(*draw)
    rows = [{'dp_population': n, 'dp_sample_size': m} for n, m in draws]
    self.assertAlmostEqual(report.epsilon(), _epsilon_from_columns(rows, z, delta),
                           places=9)
    # Fewer clients online, less amplification.
    def epsilon(draw):
      one = privacy.PrivacyReport(z, selection.UniformSelector(5), pop, delta)
      one.compose(*draw)
      return one.epsilon()
    self.assertLess(epsilon((40, 5)), epsilon((10, 5)))
    self.assertLess(epsilon((10, 5)), epsilon((5, 5)))
    # Above the Poisson / add-or-remove figure at the same rate and z.
    poisson = dp_accounting.rdp.RdpAccountant()
    poisson.compose(dp_accounting.PoissonSampledDpEvent(
        5 / 40, dp_accounting.GaussianDpEvent(z)))
    self.assertGreater(epsilon((40, 5)), poisson.get_epsilon(delta))

  def test_no_noise_is_infinite_epsilon(self):
    _, pop = _population(10, 10)
    report = privacy.PrivacyReport(0.0, selection.UniformSelector(3), pop, 1e-5)
    self.assertEqual(report.epsilon(), 0.0)
    report.compose(10, 3)
    self.assertEqual(report.epsilon(), math.inf)

  def test_a_selector_that_reads_client_losses_is_refused(self):
    _, pop = _population(10, 10)
    with self.assertRaisesRegex(ValueError, 'LossSelector chooses clients by their '
                                'training losses'):
      privacy.PrivacyReport(1.0, LossSelector(3), pop, 1e-5)


class RecordedDrawsTest(absltest.TestCase):

  def _run(self, selector, online, rounds=2):
    task, pop = _population(20, online)
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    agg = aggregators.build_aggregator('dp', clients_per_round=3, noise_multiplier=1.0)
    model_fn = task.model_fn()
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', model_fn, 0.1, 1.0, model_aggregator=agg.factory))
    report = privacy.PrivacyReport(1.0, selector, pop, 1e-5)
    sim = simulation.Simulation(
        process, task.train_data, pop, selector,
        accounting.LatencyAccountant(pop, clients_per_round=3),
        local_work_lib.LocalWork(batch_size=5, local_steps=2), seed=0,
        release_managers=metrics.build_release_managers(output_dir), hooks=[report])
    sim.run(sim.initialize(), rounds)
    with open(os.path.join(output_dir, 'metrics.csv')) as f:
      return list(csv.DictReader(f))

  def test_uniform_selection_is_charged_its_draw_among_the_online(self):
    # 5 of 20 clients online, int(1.3 x 3) = 3 invited: 3 of 5 drawn.
    rows = self._run(selection.UniformSelector(3, overcommit=1.3), online=5)
    self.assertEqual([int(r['dp_population']) for r in rows], [0, 5, 5])
    self.assertEqual([int(r['dp_sample_size']) for r in rows], [0, 3, 3])
    self.assertEqual(float(rows[0]['epsilon']), 0.0)
    for r in range(1, 3):
      self.assertEqual(float(rows[r]['epsilon']),
                       _epsilon_from_columns(rows[:r + 1], 1.0, 1e-5))
    # The conventional figure: the invited count drawn from all 20, every round.
    uniform = [{'dp_population': 20, 'dp_sample_size': 3}] * 2
    self.assertEqual(float(rows[2]['epsilon_uniform']),
                     _epsilon_from_columns(uniform, 1.0, 1e-5))
    self.assertGreater(float(rows[2]['epsilon']), float(rows[2]['epsilon_uniform']))
    self.assertEqual(float(rows[2]['dp_delta']), 1e-5)

  def test_no_unnoised_training_metrics_are_written(self):
    rows = self._run(selection.UniformSelector(3), online=20, rounds=1)
    self.assertNotIn('dp_sampling_rate', rows[0])
    for row in rows:
      self.assertEqual((row['train_loss'], row['train_accuracy']), ('nan', 'nan'))

  def test_a_selector_that_is_not_random_is_not_amplified(self):
    rows = self._run(selection.FastestSelector(3), online=20, rounds=1)
    self.assertEqual((int(rows[1]['dp_population']), int(rows[1]['dp_sample_size'])),
                     (3, 3))
    orders = np.array(privacy.RDP_ORDERS)
    self.assertAlmostEqual(float(rows[1]['epsilon']),
                           _epsilon_from_rdp(2 * orders, 1e-5), places=9)


class StateTest(absltest.TestCase):
  """The report's composed privacy loss lives in the round state."""

  def _sim(self, output_dir=None):
    task, pop = _population(20, 5)
    agg = aggregators.build_aggregator('dp', clients_per_round=3, noise_multiplier=1.0)
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', task.model_fn(), 0.1, 1.0, model_aggregator=agg.factory))
    selector = selection.UniformSelector(3)
    return simulation.Simulation(
        process, task.train_data, pop, selector,
        accounting.LatencyAccountant(pop, clients_per_round=3),
        local_work_lib.LocalWork(batch_size=5, local_steps=2), seed=0,
        hooks=[privacy.PrivacyReport(1.0, selector, pop, 1e-5)],
        release_managers=(metrics.build_release_managers(output_dir)
                          if output_dir else ()))

  def test_state_round_trips(self):
    _, pop = _population(10, 10)
    report = privacy.PrivacyReport(1.0, selection.UniformSelector(3), pop, 1e-5)
    for draw in ((10, 3), (0, 0), (5, 3)):
      report.compose(*draw)
    other = privacy.PrivacyReport(1.0, selection.UniformSelector(3), pop, 1e-5)
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
    self.assertEqual((again.metrics['dp_population'], again.metrics['dp_sample_size']),
                     (5, 3))
    np.testing.assert_array_equal(again_state.hook_state['hook_0']['rdp'],
                                  first_state.hook_state['hook_0']['rdp'])
    self.assertEqual(int(start.hook_state['hook_0']['released_rounds']), 0)
    self.assertEqual(int(first_state.hook_state['hook_0']['released_rounds']), 1)
    # The second round composes on the first, not on the retry.
    draw = {'dp_population': 5, 'dp_sample_size': 3}
    self.assertAlmostEqual(first.metrics['epsilon'],
                           _epsilon_from_columns([draw], 1.0, 1e-5), places=9)
    self.assertAlmostEqual(second.metrics['epsilon'],
                           _epsilon_from_columns([draw] * 2, 1.0, 1e-5), places=9)

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
    def rows(output_dir):
      with open(os.path.join(output_dir, 'metrics.csv')) as f:
        return {int(r['round']): r for r in csv.DictReader(f)}
    reference, resumed = rows(reference_dir), rows(resumed_dir)
    self.assertEqual(sorted(resumed), [3, 4])
    self.assertEqual(resumed[4], reference[4])  # the noised model's eval too
    self.assertAlmostEqual(float(reference[4]['epsilon']), _epsilon_from_columns(
        [reference[r] for r in range(5)], 1.0, 1e-5), places=9)


if __name__ == '__main__':
  absltest.main()
