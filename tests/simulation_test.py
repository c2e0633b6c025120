"""Tests for tf_fedscale.simulation: the driver against plain `process.next`."""

import csv
import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale import accounting
from tf_fedscale import algorithms
from tf_fedscale import availability
from tf_fedscale import evaluation
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics
from tf_fedscale import population as population_lib
from tf_fedscale import runtime
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


class FixedSelector(selection.Selector):
  """Invites the given clients, round after round."""

  def __init__(self, schedule):
    super().__init__(clients_per_round=len(schedule[0]))
    self.schedule = schedule

  def select(self, round_num, virtual_time_s, population, rng):
    return np.array(self.schedule[round_num - 1])


def _ideal_population(task):
  """Always online, infinitely fast: the traces change nothing."""
  n = len(task.train_data.client_ids)
  return population_lib.Population.build(
      task.train_data.client_ids, task.num_train_examples,
      population_lib.DeviceProfiles.uniform(n),
      availability.AvailabilityTrace.always(n), seed=0)


class SimulationTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.task = synthetic.build(num_clients=20, seed=3)
    self.work = local_work_lib.LocalWork(batch_size=5, local_steps=3)

  def _process(self):
    return algorithms.build_process('fedavg', self.task.model_fn(), 0.1, 1.0)

  def test_same_clients_no_traces_gives_plain_weights(self):
    schedule = [[3, 7, 1], [0, 19, 4]]
    pop = _ideal_population(self.task)
    sim = simulation.Simulation(
        self._process(), self.task.train_data, pop, FixedSelector(schedule),
        accounting.LatencyAccountant(pop, clients_per_round=3), self.work, seed=0)
    state = sim.run(sim.initialize(), rounds=2)

    plain = self._process()
    plain_state = plain.initialize()
    for clients in schedule:
      datasets = [self.work.preprocess(
          self.task.train_data.create_tf_dataset_for_client(str(c))) for c in clients]
      plain_state = plain.next(plain_state, datasets).state
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
        sim.model_weights(state.process_state).trainable,
        plain.get_model_weights(plain_state).trainable)
    self.assertEqual(state.round_num, 2)

  def test_writes_round_records_and_timeline(self):
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    pop = population_lib.Population.build(
        self.task.train_data.client_ids, self.task.num_train_examples,
        population_lib.DeviceProfiles.uniform(20, 10.0, 1000.0, 500.0),
        availability.AvailabilityTrace.always(20), seed=0)
    model_fn = self.task.model_fn()
    sim = simulation.Simulation(
        algorithms.build_process('fedavg', model_fn, 0.1, 1.0),
        self.task.train_data, pop, selection.UniformSelector(4, overcommit=1.5),
        accounting.LatencyAccountant(pop, clients_per_round=4), self.work, seed=0,
        evaluation=evaluation.FederatedEvaluation(
            model_fn, self.task.test_data, ['0', '1', '2'], batch_size=5),
        eval_every=2,
        release_managers=metrics.build_release_managers(output_dir),
        timeline=metrics.TimelineWriter(os.path.join(output_dir, 'clients.csv'),
                                        pop.client_ids))
    sim.run(sim.initialize(), rounds=2)

    with open(os.path.join(output_dir, 'metrics.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r['round'] for r in rows], ['0', '1', '2'])
    self.assertEqual([r['selected'] for r in rows], ['0', '6', '6'])
    self.assertEqual([r['completed'] for r in rows], ['0', '4', '4'])
    self.assertEqual(rows[1]['eval_accuracy'], 'nan')
    self.assertNotEqual(rows[2]['eval_accuracy'], 'nan')
    # 3 samples x 5 per client x 10 ms x 3 = 0.45 s of compute per client.
    timeline = list(csv.DictReader(open(os.path.join(output_dir, 'clients.csv'))))
    self.assertLen(timeline, 12)
    self.assertAlmostEqual(float(timeline[0]['compute_s']), 0.45, places=3)
    virtual = [float(r['virtual_time_s']) for r in rows]
    self.assertLess(virtual[1], virtual[2])

  def test_rejects_misaligned_population(self):
    pop = _ideal_population(synthetic.build(num_clients=5))
    with self.assertRaisesRegex(ValueError, 'same order'):
      simulation.Simulation(
          self._process(), self.task.train_data, pop, selection.UniformSelector(2),
          accounting.LatencyAccountant(pop, clients_per_round=2), self.work, seed=0)


if __name__ == '__main__':
  absltest.main()
