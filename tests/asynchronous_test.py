"""Tests for tf_fedscale.asynchronous (FedBuff)."""

import csv
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import asynchronous
from tf_fedscale import availability
from tf_fedscale import checkpoint
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import population as population_lib
from tf_fedscale import runtime
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


def _population(task, compute_ms):
  n = len(task.train_data.client_ids)
  return population_lib.Population(
      task.train_data.client_ids, task.num_train_examples,
      population_lib.DeviceProfiles(np.asarray(compute_ms, np.float32),
                                    np.full(n, np.inf, np.float32),
                                    np.full(n, np.inf, np.float32)),
      availability.AvailabilityTrace.always(n),
      device_row=np.arange(n, dtype=np.int32), availability_row=np.arange(n, dtype=np.int32))


class AsynchronousTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = synthetic.build(num_clients=20, seed=5)
    self.work = local_work_lib.LocalWork(batch_size=5, local_steps=3)
    self.model_fn = self.task.model_fn()
    self.initial = seeding.initial_model_weights(self.task.keras_model_fn, 0)

  def _async(self, population, selector, config, updates_path=None):
    return asynchronous.AsyncSimulation(
        self.model_fn, tff.learning.optimizers.build_sgdm(0.1),
        tff.learning.optimizers.build_sgdm(1.0), self.task.train_data, population,
        selector, accounting.LatencyAccountant(population, clients_per_round=3),
        self.work, config, seed=0, initial_model_weights=self.initial,
        updates_path=updates_path)

  def test_reproduces_synchronous_fedavg(self):
    schedule = [[3, 7, 1], [0, 19, 4], [5, 6, 2]]
    sim = self._async(_population(self.task, np.full(20, 5.0)), ScheduleSelector(schedule),
                      asynchronous.AsyncConfig(3, 3, max_staleness=0))
    records = []
    sim.run(sim.initial_state(), 3, records.append)

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
        sim.weights.trainable, fedavg.get_model_weights(state).trainable)
    self.assertEqual([r['round'] for r in records], [0, 1, 2, 3])
    self.assertEqual([r['staleness_max'] for r in records[1:]], [0, 0, 0])
    # 3 steps x 5 samples x 5 ms x 3 = 0.225 s per wave of equal clients.
    self.assertAlmostEqual(records[-1]['virtual_time_s'], 3 * 0.225, places=5)

  def test_slow_clients_arrive_stale_and_are_dropped_past_the_limit(self):
    compute_ms = np.where(np.arange(20) < 5, 10.0, 1.0)  # clients 0-4: 10x slower
    updates = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'u.csv')
    sim = self._async(_population(self.task, compute_ms),
                      selection.UniformSelector(4),
                      asynchronous.AsyncConfig(4, 2, max_staleness=1,
                                               staleness_weighting='sqrt'),
                      updates_path=updates)
    records = []
    sim.run(sim.initial_state(), 30, records.append)
    with open(updates) as f:
      rows = list(csv.DictReader(f))
    applied = [int(r['staleness']) for r in rows if r['status'] == 'applied']
    self.assertLessEqual(max(applied), 1)
    stale = [r for r in rows if r['status'] == 'stale']
    self.assertNotEmpty(stale)
    self.assertTrue(all(int(r['staleness']) > 1 for r in stale))
    self.assertEqual(sum(r['stale_dropped'] for r in records), len(stale))
    self.assertTrue(all(r['completed'] == 2 for r in records[1:]))

  def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(self):
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    compute_ms = np.where(np.arange(20) < 5, 10.0, 1.0)
    config = asynchronous.AsyncConfig(4, 2, max_staleness=2)

    def build(name):
      return self._async(_population(self.task, compute_ms), selection.UniformSelector(4),
                         config, updates_path=os.path.join(tmp, f'{name}.csv'))

    def steps(records):
      return [{k: repr(v) for k, v in r.items() if k != 'wall_clock_s'} for r in records]

    reference, expected = build('reference'), []
    reference.run(reference.initial_state(), 10, expected.append)

    ckpt_dir = os.path.join(tmp, 'checkpoints')
    killed = build('resumed')
    killed.run(killed.initial_state(), 7, checkpointer=checkpoint.Checkpointer(ckpt_dir, 4))
    # As if killed after step 7 was logged but before its checkpoint was written.
    shutil.rmtree(os.path.join(ckpt_dir, f'{checkpoint.PREFIX}7'))
    resumed, records = build('resumed'), []
    state = resumed.restore(checkpoint.Checkpointer(ckpt_dir, 4))
    self.assertEqual(state.version, 4)
    resumed.run(state, 10, records.append)

    self.assertEqual(steps(records), steps(expected[5:]))
    tf.nest.map_structure(np.testing.assert_array_equal,
                          resumed.weights.trainable, reference.weights.trainable)
    with open(os.path.join(tmp, 'reference.csv')) as a, \
         open(os.path.join(tmp, 'resumed.csv')) as b:
      self.assertEqual(b.read(), a.read())

  def test_staleness_weights(self):
    self.assertEqual(asynchronous.staleness_weight(3, 'constant'), 1.0)
    self.assertAlmostEqual(asynchronous.staleness_weight(3, 'sqrt'), 0.5)
    with self.assertRaisesRegex(ValueError, "Unknown staleness weighting 'linear'"):
      asynchronous.AsyncConfig(2, 2, 1, 'linear')
    with self.assertRaisesRegex(ValueError, 'buffer_size must be >= 1, got 0'):
      asynchronous.AsyncConfig(2, 0, 1)


if __name__ == '__main__':
  absltest.main()
