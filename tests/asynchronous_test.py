"""Tests for tf_fedscale.asynchronous (FedBuff)."""

import csv
import os
import re
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tests import cases
from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import asynchronous
from tf_fedscale import checkpoint
from tf_fedscale.engine import inprocess_context
from tf_fedscale.engine import runtime
from tf_fedscale import feedback
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import oort
from tf_fedscale import privacy
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


class ScheduleSelector(selection.BaseSelector):
  """Round r invites schedule[r - 1]."""

  def __init__(self, schedule):
    super().__init__(clients_per_round=len(schedule[0]))
    self.schedule = schedule

  def select(self, round_num, virtual_time_s, population, rng):
    return np.array(self.schedule[round_num - 1])


class AsynchronousTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = synthetic.build(num_clients=20, seed=5)
    self.work = local_work_lib.LocalWork(batch_size=5, local_steps=3)
    self.model_fn = self.task.model_fn()
    self.initial = seeding.initial_model_weights(self.task.keras_model_fn, 0)

  def _async(self, population, selector, config, updates_path=None, **kwargs):
    return asynchronous.AsyncSimulation(
        kwargs.pop('model_fn', self.model_fn), tff.learning.optimizers.build_sgdm(0.1),
        tff.learning.optimizers.build_sgdm(1.0), self.task.train_data, population,
        selector, accounting.LatencyAccountant(population, clients_per_round=3),
        self.work, config, seed=0, initial_model_weights=self.initial,
        client_log=asynchronous.client_log(updates_path) if updates_path else None,
        **kwargs)

  def test_reproduces_synchronous_fedavg(self):
    schedule = [[3, 7, 1], [0, 19, 4], [5, 6, 2]]
    sim = self._async(cases.always_online_population(self.task, np.full(20, 5.0)),
                      ScheduleSelector(schedule),
                      asynchronous.AsyncConfig(3, 3, max_staleness=0))
    records = []
    final = sim.run(sim.initialize(), 3, records.append)

    fedavg = tff.learning.algorithms.build_weighted_fed_avg(
        self.model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
    fedavg = tff.simulation.compose_dataset_computation_with_learning_process(
        self.task.train_data.preprocess(self.work.preprocess).dataset_computation, fedavg)
    state = fedavg.set_model_weights(fedavg.initialize(), self.initial)
    for clients in schedule:
      state = fedavg.next(state, [str(c) for c in clients]).state
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        sim.model_weights(final.process_state).trainable,
        fedavg.get_model_weights(state).trainable)
    self.assertEqual([r['round'] for r in records], [0, 1, 2, 3])
    self.assertEqual([r['staleness_max'] for r in records[1:]], [0, 0, 0])
    # 3 steps x 5 samples x 5 ms x 3 = 0.225 s per wave of equal clients.
    self.assertAlmostEqual(records[-1]['virtual_time_s'], 3 * 0.225, places=5)

  def test_slow_clients_arrive_stale_and_are_dropped_past_the_limit(self):
    compute_ms = np.where(np.arange(20) < 5, 10.0, 1.0)  # clients 0-4: 10x slower
    updates = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'u.csv')
    sim = self._async(cases.always_online_population(self.task, compute_ms),
                      selection.UniformSelector(4),
                      asynchronous.AsyncConfig(4, 2, max_staleness=1,
                                               staleness_weighting='sqrt'),
                      updates_path=updates)
    records = []
    sim.run(sim.initialize(), 30, records.append)
    with open(updates) as f:
      rows = list(csv.DictReader(f))
    applied = [int(r['staleness']) for r in rows if r['status'] == 'applied']
    self.assertLessEqual(max(applied), 1)
    stale = [r for r in rows if r['status'] == 'stale']
    self.assertNotEmpty(stale)
    self.assertTrue(all(int(r['staleness']) > 1 for r in stale))
    self.assertEqual(sum(r['stale_dropped'] for r in records), len(stale))
    self.assertTrue(all(r['completed'] == 2 for r in records[1:]))

  def test_a_slowly_filling_buffer_reports_progress(self):
    population = cases.always_online_population(self.task, np.full(20, 50.0))
    by_results = self._async(population, selection.UniformSelector(2),
                             asynchronous.AsyncConfig(2, 12, max_staleness=0,
                                                      progress_every_results=5))
    with self.assertLogs('absl', 'WARNING') as logs:
      by_results.run_round(by_results.initialize())
    self.assertLen(logs.output, 2)
    self.assertRegex(logs.output[0], r'server step 1 is waiting for its buffer: 5 of 12 '
                     r'updates after 5 client results \(0 dropped offline, 0 too stale\) '
                     r'in [0-9.]+ virtual s \(virtual time [0-9.]+ s\); \d clients training')
    self.assertIn('10 of 12 updates after 10 client results', logs.output[1])
    # Every 2 virtual s without a step: one line per 2 s, as the buffer fills.
    by_time = self._async(population, selection.UniformSelector(2),
                          asynchronous.AsyncConfig(2, 12, max_staleness=0,
                                                   progress_every_s=2.0))
    with self.assertLogs('absl', 'WARNING') as logs:
      state, _ = by_time.run_round(by_time.initialize())
    times = [float(re.search(r'virtual time ([0-9.]+) s', l).group(1)) for l in logs.output]
    buffered = [int(re.search(r'buffer: (\d+) of 12', l).group(1)) for l in logs.output]
    self.assertBetween(len(times), 1, int(state.virtual_time_s // 2.0))
    self.assertTrue(all(b - a >= 2.0 - 0.05 for a, b in zip([0.0] + times, times)), times)
    self.assertEqual(buffered, sorted(buffered))
    self.assertLess(buffered[-1], 12)

  def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(self):
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    compute_ms = np.where(np.arange(20) < 5, 10.0, 1.0)
    config = asynchronous.AsyncConfig(4, 2, max_staleness=2)

    def build(name):
      return self._async(cases.always_online_population(self.task, compute_ms),
                         selection.UniformSelector(4),
                         config, updates_path=os.path.join(tmp, f'{name}.csv'))

    def steps(records):
      return [{k: repr(v) for k, v in r.items() if k != 'wall_clock_s'} for r in records]

    reference, expected = build('reference'), []
    reference_state = reference.run(reference.initialize(), 10, expected.append)

    ckpt_dir = os.path.join(tmp, 'checkpoints')
    killed = build('resumed')
    killed.run(killed.initialize(), 7, checkpointer=checkpoint.Checkpointer(ckpt_dir, 4))
    # As if killed after step 7 was logged but before its checkpoint was written.
    shutil.rmtree(os.path.join(ckpt_dir, f'{checkpoint.PREFIX}7'))
    resumed, records = build('resumed'), []
    state = resumed.restore(checkpoint.Checkpointer(ckpt_dir, 4))
    self.assertEqual(state.round_num, 4)
    resumed_state = resumed.run(state, 10, records.append)

    self.assertEqual(steps(records), steps(expected[5:]))
    tf.nest.map_structure(np.testing.assert_array_equal,
                          resumed.model_weights(resumed_state.process_state).trainable,
                          reference.model_weights(reference_state.process_state).trainable)
    with open(os.path.join(tmp, 'reference.csv')) as a, \
         open(os.path.join(tmp, 'resumed.csv')) as b:
      self.assertEqual(b.read(), a.read())

  def test_a_server_step_is_a_function_of_its_state(self):
    sim = self._async(cases.always_online_population(
                          self.task, np.where(np.arange(20) < 5, 10.0, 1.0)),
                      oort.OortSelector(4), asynchronous.AsyncConfig(4, 2, max_staleness=2),
                      model_fn=self._loss_model_fn())
    state = sim.run(sim.initialize(), 2)
    first_state, first = sim.run_round(state)
    again_state, again = sim.run_round(state)  # a retry: the same step
    self.assertEqual(again.client_rows, first.client_rows)
    self.assertEqual(again_state.virtual_time_s, first_state.virtual_time_s)
    for key, value in first_state.selector_state.items():
      np.testing.assert_array_equal(again_state.selector_state[key], value, err_msg=key)
    tf.nest.map_structure(np.testing.assert_array_equal,
                          again_state.process_state['trainable'],
                          first_state.process_state['trainable'])
    self.assertEqual(state.round_num, 2)  # the input is untouched

  def test_oort_learns_from_every_update(self):
    selector = oort.OortSelector(4, exploration=0.5)
    sim = self._async(cases.always_online_population(self.task, np.full(20, 5.0)), selector,
                      asynchronous.AsyncConfig(4, 2, max_staleness=3),
                      model_fn=self._loss_model_fn())
    results = []
    state = sim.initialize()
    for _ in range(6):
      state, result = sim.run_round(state)
      results.append(result)
    saved = state.selector_state
    applied = sum(r.metrics['completed'] for r in results)
    self.assertEqual(int(saved['count'].sum()), applied)  # one observation per update
    for result in results:
      done = result.feedback.status == accounting.Status.COMPLETED
      self.assertTrue((result.feedback.loss_count[done] == 15).all())  # 3 steps x 5
      rms = np.sqrt(result.feedback.loss_sq_sum[done] / 15)
      self.assertTrue(np.isfinite(rms).all())
    explored = np.flatnonzero(saved['count'] > 0)
    np.testing.assert_allclose(saved['duration_s'][explored], 0.225, rtol=1e-5)
    self.assertTrue((saved['utility'][explored] > 0).all())
    # With utilities known, Oort now exploits as well as explores.
    selector.set_state(saved)
    picked = selector.select(7, state.virtual_time_s, sim.population,
                             np.random.default_rng(0))
    self.assertNotEmpty(np.intersect1d(picked, explored))
    self.assertNotEmpty(selector.last_exploited)

  def test_oort_exploration_decays_once_per_server_step(self):
    selector = oort.OortSelector(4, exploration=0.9, exploration_decay=0.98,
                                 exploration_min=0.3)
    steps_selecting = []
    select = selector.select
    def counting_select(round_num, *args):
      steps_selecting.append(round_num)
      return select(round_num, *args)
    selector.select = counting_select
    sim = self._async(cases.always_online_population(self.task, np.arange(20) + 1.0), selector,
                      asynchronous.AsyncConfig(4, 2, max_staleness=3),
                      model_fn=self._loss_model_fn())
    sim.run(sim.initialize(), 5)
    last_step = steps_selecting[-1]
    self.assertGreater(len(steps_selecting), last_step)  # several calls per step
    expected = 0.9  # FedScale's max(exploration x decay, min), once per step
    for _ in range(last_step - 1):  # from step 2 (step 1 is uniform)
      expected = max(expected * 0.98, 0.3)
    self.assertAlmostEqual(selector.exploration, expected, places=12)

  def test_the_aggregator_aggregates_the_buffer(self):
    clip = 0.01
    agg = aggregators.build_aggregator('clipping', clip_norm=clip)
    sim = self._async(cases.always_online_population(self.task, np.full(20, 5.0)),
                      selection.UniformSelector(3),
                      asynchronous.AsyncConfig(3, 3, max_staleness=0), aggregator=agg)
    start = sim.initialize()
    state, result = sim.run_round(start)
    delta = [a - b for a, b in zip(state.process_state['trainable'],
                                   start.process_state['trainable'])]
    norm = np.sqrt(sum(float(np.sum(d.astype(np.float64) ** 2)) for d in delta))
    self.assertGreater(norm, 0.0)
    self.assertLessEqual(norm, clip * (1 + 1e-5))  # a mean of clipped updates
    plain = self._async(cases.always_online_population(self.task, np.full(20, 5.0)),
                        selection.UniformSelector(3),
                        asynchronous.AsyncConfig(3, 3, max_staleness=0))
    plain_state, _ = plain.run_round(plain.initialize())
    plain_norm = np.sqrt(sum(float(np.sum((a - b).astype(np.float64) ** 2)) for a, b in zip(
        plain_state.process_state['trainable'], start.process_state['trainable'])))
    self.assertGreater(plain_norm, 10 * clip)

  def test_dp_is_refused(self):
    agg = aggregators.build_aggregator('dp', clients_per_round=2, noise_multiplier=1.0)
    with self.assertRaisesRegex(ValueError, "cannot run the DP aggregator 'dp'"):
      self._async(cases.always_online_population(self.task, np.full(20, 5.0)),
                  selection.UniformSelector(2), asynchronous.AsyncConfig(2, 2, 1),
                  aggregator=agg)

  def test_refuses_what_it_cannot_do(self):
    pop = cases.always_online_population(self.task, np.full(20, 5.0))

    class RoundStart:
      def on_round_start(self, round_num, virtual_time_s, process_state):
        return None

    with self.assertRaisesRegex(ValueError, r"hooks \['RoundStart'\] implement on_round_start"):
      self._async(pop, selection.UniformSelector(2), asynchronous.AsyncConfig(2, 2, 1),
                  hooks=[RoundStart()])
    with self.assertRaisesRegex(ValueError, 'no rounds to cut'):
      asynchronous.AsyncSimulation(
          self.model_fn, tff.learning.optimizers.build_sgdm(0.1),
          tff.learning.optimizers.build_sgdm(1.0), self.task.train_data, pop,
          selection.UniformSelector(2),
          accounting.LatencyAccountant(pop, clients_per_round=2, deadline_s=5.0),
          self.work, asynchronous.AsyncConfig(2, 2, 1), seed=0,
          initial_model_weights=self.initial)
    with self.assertRaisesRegex(ValueError, 'needs per-client training losses'):
      self._async(pop, oort.OortSelector(2), asynchronous.AsyncConfig(2, 2, 1))

  def _loss_model_fn(self):
    return feedback.loss_reporting_model_fn(
        self.model_fn, feedback.keras_per_example_loss(self.task.loss_fn), num_slots=1)

  def test_every_aggregator_runs_server_steps(self):
    pop = cases.always_online_population(self.task, np.full(20, 5.0))
    for name in [n for n in aggregators.AGGREGATORS if n != 'dp']:  # test_dp_is_refused
      with self.subTest(name):
        agg = aggregators.build_aggregator(name, clients_per_round=2,
                                           adaptive_clipping=True)
        sim = self._async(pop, selection.UniformSelector(2),
                          asynchronous.AsyncConfig(2, 2, 1), aggregator=agg)
        start = sim.initialize()
        state, result = sim.run_round(sim.run_round(start)[0])
        moved = [np.abs(a - b).max() for a, b in zip(state.process_state['trainable'],
                                                     start.process_state['trainable'])]
        self.assertTrue(np.isfinite(moved).all())
        self.assertGreater(max(moved), 0.0)
        self.assertEqual(result.metrics['bytes_up'],
                         2 * agg.upload_nbytes(self.initial.trainable))

  def test_every_computation_has_a_map_reduce_form(self):
    # So the in-process engine runs FedBuff with every aggregator, Oort's
    # loss-reporting model included, without a TFF worker.
    for name in aggregators.AGGREGATORS:
      with self.subTest(name):
        computations = asynchronous.build_computations(
            self._loss_model_fn(), tff.learning.optimizers.build_sgdm(0.1),
            tff.learning.optimizers.build_sgdm(1.0),
            aggregators.build_aggregator(name, clients_per_round=2,
                                         adaptive_clipping=True, noise_multiplier=0.1))
        inprocess_context.map_reduce_form(computations.server_step)
    inprocess_context.map_reduce_form(computations.train)  # whatever the aggregator

  def test_staleness_weights(self):
    self.assertEqual(asynchronous.staleness_weight(3, 'constant'), 1.0)
    self.assertAlmostEqual(asynchronous.staleness_weight(3, 'sqrt'), 0.5)
    with self.assertRaisesRegex(ValueError, "Unknown staleness weighting 'linear'"):
      asynchronous.AsyncConfig(2, 2, 1, 'linear')
    with self.assertRaisesRegex(ValueError, 'buffer_size must be >= 1, got 0'):
      asynchronous.AsyncConfig(2, 0, 1)


if __name__ == '__main__':
  absltest.main()
