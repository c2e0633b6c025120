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
from tf_fedscale import checkpoint
from tf_fedscale.engine import runtime
from tf_fedscale import evaluation
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics
from tf_fedscale import population as population_lib
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


class FixedSelector(selection.BaseSelector):
  """Invites the given clients, round after round."""

  def __init__(self, schedule):
    super().__init__(clients_per_round=len(schedule[0]))
    self.schedule = schedule

  def select(self, round_num, virtual_time_s, population, rng):
    return np.array(self.schedule[round_num - 1])


class RoundRobinSelector(selection.BaseSelector):
  """Invites the next clients_per_round clients; its state is where it is."""

  def __init__(self, clients_per_round, num_clients):
    super().__init__(clients_per_round)
    self.num_clients = num_clients
    self.next_client = 0
    self.observed = 0

  def select(self, round_num, virtual_time_s, population, rng):
    picked = (self.next_client + np.arange(self.clients_per_round)) % self.num_clients
    self.next_client = int(picked[-1] + 1) % self.num_clients
    return picked

  def observe(self, round_num, feedback):
    self.observed += len(feedback.clients)

  def get_state(self):
    return {'next_client': np.int64(self.next_client), 'observed': np.int64(self.observed)}

  def set_state(self, state):
    self.next_client = int(state['next_client'])
    self.observed = int(state['observed'])


class FailOnceEngine:
  """Runs the round named `fail`, throws its result away as if the worker had
  died at its end (the selector having chosen and observed), and calls again."""

  def __init__(self, fail):
    self.fail = fail
    self.calls = []
    self.recycled = []

  def call(self, fn, *args, description=''):
    self.calls.append(description)
    if description == self.fail:
      self.fail = None
      fn(*args)
      self.calls.append(f'retry {description}')
    return fn(*args)

  def recycle_grown_workers(self, when):
    self.recycled.append(when)


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
        client_log=metrics.ClientLog(os.path.join(output_dir, 'clients.csv'),
                                     metrics.TIMELINE_COLUMNS))
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

  def test_a_round_is_a_function_of_its_state(self):
    pop = population_lib.Population.build(
        self.task.train_data.client_ids, self.task.num_train_examples,
        population_lib.DeviceProfiles.uniform(20, 10.0, 1000.0, 500.0),
        availability.AvailabilityTrace.always(20), seed=0)
    sim = simulation.Simulation(
        self._process(), self.task.train_data, pop, RoundRobinSelector(3, 20),
        accounting.LatencyAccountant(pop, clients_per_round=3), self.work, seed=0)
    start = sim.initialize()
    self.assertEqual(start.selector_state, {'next_client': 0, 'observed': 0})
    first_state, first = sim.run_round(start)
    second_state, _ = sim.run_round(first_state)  # the selector moves on ...
    self.assertEqual(int(second_state.selector_state['next_client']), 6)
    again_state, again = sim.run_round(start)  # ... and a retry starts over
    self.assertEqual(start.round_num, 0)  # nothing in the input changed
    self.assertEqual(start.virtual_time_s, 0.0)
    self.assertEqual(int(start.selector_state['next_client']), 0)
    self.assertEqual(again.client_rows, first.client_rows)
    self.assertEqual(dict(again_state.selector_state), {'next_client': 3, 'observed': 3})
    self.assertEqual(again_state.virtual_time_s, first_state.virtual_time_s)
    self.assertGreater(first_state.virtual_time_s, 0.0)
    # Round 0's state stays round 0's after rounds moved the selector on.
    self.assertEqual(dict(sim.initialize().selector_state),
                     {'next_client': 0, 'observed': 0})
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        sim.model_weights(again_state.process_state).trainable,
        sim.model_weights(first_state.process_state).trainable)
    self.assertEqual([r[1] for r in first.client_rows], ['0', '1', '2'])

  def test_selector_state_is_checkpointed_and_restored(self):
    ckpt_dir = self.enterContext(tempfile.TemporaryDirectory())
    pop = _ideal_population(self.task)

    def build():
      return simulation.Simulation(
          self._process(), self.task.train_data, pop, RoundRobinSelector(3, 20),
          accounting.LatencyAccountant(pop, clients_per_round=3), self.work, seed=0)

    checkpointer = checkpoint.Checkpointer(ckpt_dir, every_rounds=2)
    reference = build().run(build().initialize(), rounds=3)
    build().run(build().initialize(), rounds=2, checkpointer=checkpointer)
    resumed_sim = build()
    restored = resumed_sim.restore(checkpointer)
    self.assertEqual(int(restored.selector_state['next_client']), 6)
    resumed = resumed_sim.run(restored, rounds=3)
    self.assertEqual(dict(resumed.selector_state), dict(reference.selector_state))
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        resumed_sim.model_weights(resumed.process_state).trainable,
        resumed_sim.model_weights(reference.process_state).trainable)

  def test_retrying_a_round_is_calling_it_again(self):
    pop = _ideal_population(self.task)

    def build():
      return simulation.Simulation(
          self._process(), self.task.train_data, pop, RoundRobinSelector(3, 20),
          accounting.LatencyAccountant(pop, clients_per_round=3), self.work, seed=0)

    plain, plain_records = build(), []
    expected = plain.run(plain.initialize(), 3, plain_records.append)
    flaky, records = build(), []
    engine = FailOnceEngine('round 2')
    state = flaky.run(flaky.initialize(), 3, records.append, engine=engine)
    self.assertEqual(engine.calls, ['round 0', 'round 1', 'round 2',
                                      'retry round 2', 'round 3'])
    self.assertEqual(engine.recycled, ['after round 1', 'after round 2',
                                         'after round 3'])
    self.assertEqual(dict(state.selector_state), dict(expected.selector_state))
    self.assertEqual(state.virtual_time_s, expected.virtual_time_s)
    def rows(records):
      return [{k: repr(v) for k, v in r.items() if k != 'wall_clock_s'} for r in records]

    self.assertEqual(rows(records), rows(plain_records))
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        flaky.model_weights(state.process_state).trainable,
        plain.model_weights(expected.process_state).trainable)

  def test_rejects_what_is_not_a_selector(self):
    pop = _ideal_population(self.task)
    with self.assertRaisesRegex(TypeError, 'object is not a selection.Selector'):
      simulation.Simulation(
          self._process(), self.task.train_data, pop, object(),
          accounting.LatencyAccountant(pop, clients_per_round=2), self.work, seed=0)

  def test_rejects_misaligned_population(self):
    pop = _ideal_population(synthetic.build(num_clients=5))
    with self.assertRaisesRegex(ValueError, 'same order'):
      simulation.Simulation(
          self._process(), self.task.train_data, pop, selection.UniformSelector(2),
          accounting.LatencyAccountant(pop, clients_per_round=2), self.work, seed=0)


if __name__ == '__main__':
  absltest.main()
