"""Tests for tf_fedscale.hooks and the simulation's hook points."""

import collections
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
from tf_fedscale import hooks as hooks_lib
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics
from tf_fedscale import population as population_lib
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic

WEEK = availability.SECONDS_PER_WEEK


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


class FixedSelector(selection.BaseSelector):

  def __init__(self, clients, clients_per_round):
    super().__init__(clients_per_round, overcommit=len(clients) / clients_per_round)
    self.clients = np.asarray(clients)

  def select(self, round_num, virtual_time_s, population, rng):
    return self.clients


def _population(compute_ms, online_until_s=None, num_examples=None):
  """One device per client; client i goes offline at online_until_s[i]."""
  n = len(compute_ms)
  until = np.full(n, WEEK) if online_until_s is None else np.asarray(online_until_s)
  avail = availability.AvailabilityTrace(
      np.arange(n + 1, dtype=np.int64), np.zeros(n, np.int32),
      until.astype(np.int32), np.full(n, WEEK, np.int32))
  return population_lib.Population(
      client_ids=[str(i) for i in range(n)],
      num_examples=(np.full(n, 100, np.int64) if num_examples is None
                    else np.asarray(num_examples, np.int64)),
      devices=population_lib.DeviceProfiles(
          np.asarray(compute_ms, np.float32), np.full(n, np.inf, np.float32),
          np.full(n, np.inf, np.float32)),
      availability=avail, device_row=np.arange(n, dtype=np.int32),
      availability_row=np.arange(n, dtype=np.int32))


class ReviseOutcomeTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Finish times 1..5 s (1 sample x ms x 3 / 1000); client 3 leaves at 2 s.
    self.pop = _population([1000 / 3, 2000 / 3, 3000 / 3, 4000 / 3, 5000 / 3],
                           online_until_s=[WEEK, WEEK, WEEK, 2, WEEK])
    self.accountant = accounting.LatencyAccountant(self.pop, clients_per_round=2)
    self.outcome = self.accountant.account(1, np.arange(5), np.ones(5), 0, 0,
                                           start_time_s=0.0)
    self.online_for = self.pop.online_until_s(np.arange(5), 0.0)

  def test_accountant_baseline(self):
    # Client 3 leaves at 2 s, when the round closes: dropped.
    np.testing.assert_array_equal(self.outcome.status, [0, 0, 1, 2, 1])
    self.assertAlmostEqual(self.outcome.duration_s, 2.0, places=5)

  def test_accept_a_straggler(self):
    keep = np.array([True, True, True, False, False])
    revised = hooks_lib.revise_outcome(self.outcome, keep, self.online_for, 0, 10)
    self.assertAlmostEqual(revised.duration_s, 3.0, places=5)
    S = accounting.Status
    np.testing.assert_array_equal(
        revised.status, [S.COMPLETED, S.COMPLETED, S.COMPLETED, S.DROPPED_OFFLINE,
                         S.STRAGGLER])
    np.testing.assert_allclose(revised.end_s, [1, 2, 3, 2, 3], atol=1e-5)
    np.testing.assert_array_equal(revised.bytes_up, [10, 10, 10, 0, 0])

  def test_cut_a_slow_one(self):
    keep = np.array([True, False, False, False, False])
    revised = hooks_lib.revise_outcome(self.outcome, keep, self.online_for, 0, 10)
    self.assertAlmostEqual(revised.duration_s, 1.0, places=5)
    # Client 3 would leave at 2 s, before it finishes: dropped, as the
    # accountant (and FedScale) rank drop-outs, even though the round closed first.
    np.testing.assert_array_equal(revised.status, [0, 1, 1, 2, 1])
    np.testing.assert_allclose(revised.end_s, [1, 1, 1, 1, 1], atol=1e-5)

  def test_cannot_keep_a_client_that_leaves(self):
    with self.assertRaisesRegex(ValueError, r'Clients \[3\] cannot finish'):
      hooks_lib.revise_outcome(self.outcome, np.array([1, 0, 0, 1, 0], bool),
                               self.online_for, 0, 10)


class AcceptAll:
  """Straggler mitigation: aggregate every client that can finish."""

  def __init__(self, population):
    self.population = population

  def on_client_completion(self, round_num, outcome):
    finish = outcome.download_s + outcome.compute_s + outcome.upload_s
    online_for = self.population.online_until_s(outcome.clients, outcome.start_time_s)
    return finish <= online_for - outcome.start_time_s


class StepsBySpeed:
  """Fewer local steps for slow devices: 1 + client % 3."""

  def local_work(self, round_num, clients, population):
    return 1 + np.asarray(clients) % 3


class ZeroLearningRate:
  def __init__(self, process):
    self.process = process

  def on_round_start(self, round_num, virtual_time_s, process_state):
    hparams = self.process.get_hparams(process_state)
    hparams['client_work']['learning_rate'] = np.float32(0.0)
    return self.process.set_hparams(process_state, hparams)


class Recorder:
  def __init__(self):
    self.calls = collections.defaultdict(list)

  def on_round_end(self, round_num, record, feedback):
    self.calls['end'].append((round_num, feedback is None))
    record['my_column'] = 10.0 * round_num


class CompletedSoFar:
  """A stateful hook: the clients completed in all rounds so far."""

  def __init__(self):
    self.completed = 0

  def get_state(self):
    return {'completed': np.int64(self.completed)}

  def set_state(self, state):
    self.completed = int(state['completed'])

  def on_round_end(self, round_num, record, feedback):
    self.completed += record['completed']
    record['completed_so_far'] = self.completed


class SimulationHooksTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=20, seed=3)
    cls.work = local_work_lib.LocalWork(batch_size=5, local_steps=3)
    cls.pop = _population(np.arange(20, dtype=np.float64) + 1.0,
                          num_examples=cls.task.num_train_examples)

  def _process(self):
    return algorithms.build_process('fedavg', self.task.model_fn(), 0.1, 1.0)

  def _sim(self, process, hooks, clients=(3, 7, 1, 12), k=2, **kwargs):
    return simulation.Simulation(
        process, self.task.train_data, self.pop, FixedSelector(clients, k),
        accounting.LatencyAccountant(self.pop, clients_per_round=k), self.work, seed=0,
        hooks=hooks, **kwargs)

  def test_completion_hook_accepts_stragglers(self):
    sim = self._sim(self._process(), [AcceptAll(self.pop)])
    _, result = sim.run_round(sim.initialize())
    record = result.metrics
    self.assertEqual(record['completed'], 4)
    self.assertEqual(record['stragglers'], 0)
    # The slowest (client 12: 13 ms x 15 samples x 3) closes the round.
    self.assertAlmostEqual(record['round_duration_s'], 13 * 15 * 3 / 1000, places=4)
    self.assertAlmostEqual(record['virtual_time_s'], record['round_duration_s'], places=4)

  def test_per_client_local_work(self):
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    clients = [3, 7, 1]
    sim = self._sim(self._process(), [StepsBySpeed()], clients=clients, k=3,
                    client_log=metrics.ClientLog(
                        os.path.join(output_dir, 'clients.csv'), metrics.TIMELINE_COLUMNS))
    state = sim.run(sim.initialize(), rounds=1)
    timeline = list(csv.DictReader(open(os.path.join(output_dir, 'clients.csv'))))
    steps = [1 + c % 3 for c in clients]
    self.assertEqual([int(r['samples']) for r in timeline], [5 * s for s in steps])
    # TFF trained exactly that much: same weights as datasets of those lengths.
    plain = self._process()
    datasets = [self.work.preprocess(
        self.task.train_data.create_tf_dataset_for_client(str(c)), s)
                for c, s in zip(clients, steps)]
    expected = plain.next(plain.initialize(), datasets).state
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        sim.model_weights(state.process_state).trainable,
        plain.get_model_weights(expected).trainable)

  def test_round_start_can_change_hyperparameters(self):
    process = self._process()
    sim = self._sim(process, [ZeroLearningRate(process)])
    start = sim.initialize()
    state, result = sim.run_round(start)
    self.assertEqual(result.metrics['completed'], 2)
    tf.nest.map_structure(
        np.testing.assert_array_equal, sim.model_weights(state.process_state).trainable,
        sim.model_weights(start.process_state).trainable)

  def test_round_end_adds_columns(self):
    output_dir = self.enterContext(tempfile.TemporaryDirectory())
    recorder = Recorder()
    sim = self._sim(self._process(), [recorder],
                    release_managers=metrics.build_release_managers(output_dir))
    sim.run(sim.initialize(), rounds=2)
    self.assertEqual(recorder.calls['end'], [(0, True), (1, False), (2, False)])
    with open(os.path.join(output_dir, 'metrics.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([float(r['my_column']) for r in rows], [0.0, 10.0, 20.0])

  def test_hook_list_combines(self):
    class KeepFirst:
      def on_client_completion(self, round_num, outcome):
        return np.arange(len(outcome.clients)) == 0

    class KeepAll:
      def on_client_completion(self, round_num, outcome):
        return np.ones(len(outcome.clients), bool)

    hooks = hooks_lib.HookList([KeepFirst(), KeepAll()])
    outcome = accounting.LatencyAccountant(self.pop, clients_per_round=1).account(
        1, np.array([1, 2]), np.ones(2), 0, 0, start_time_s=0.0)
    np.testing.assert_array_equal(hooks.on_client_completion(1, outcome), [True, False])
    self.assertFalse(hooks.chooses_local_work)
    self.assertTrue(hooks_lib.HookList([StepsBySpeed()]).chooses_local_work)
    np.testing.assert_array_equal(
        hooks_lib.HookList([StepsBySpeed()]).local_work(1, np.array([0, 1]), None), [1, 2])
    with self.assertRaisesRegex(ValueError, 'one amount >= 1 per client'):
      hooks_lib.HookList([_BadSteps()]).local_work(1, np.array([0, 1]), None)
    with self.assertRaisesRegex(TypeError, 'object implements no hook'):
      hooks_lib.HookList([object()])

  def test_hook_state_is_round_state(self):
    hook = CompletedSoFar()
    sim = self._sim(self._process(), [Recorder(), hook])
    start = sim.initialize()
    self.assertEqual(dict(start.hook_state), {'hook_1': {'completed': 0}})
    first_state, first = sim.run_round(start)
    second_state, second = sim.run_round(first_state)
    again_state, again = sim.run_round(start)  # a retry: counted once
    self.assertEqual([first.metrics['completed_so_far'], second.metrics['completed_so_far'],
                      again.metrics['completed_so_far']], [2, 4, 2])
    self.assertEqual(int(again_state.hook_state['hook_1']['completed']), 2)
    self.assertEqual(int(start.hook_state['hook_1']['completed']), 0)
    # Checkpointed with the state and restored into a fresh hook.
    checkpointer = checkpoint.Checkpointer(
        self.enterContext(tempfile.TemporaryDirectory()), 1)
    checkpointer.save(2, sim.checkpoint(second_state))
    fresh = self._sim(self._process(), [Recorder(), CompletedSoFar()])
    restored = fresh.restore(checkpointer)
    self.assertEqual(int(restored.hook_state['hook_1']['completed']), 4)
    _, third = fresh.run_round(restored)
    self.assertEqual(third.metrics['completed_so_far'], 6)
    with self.assertRaisesRegex(ValueError, 'stateful hooks are'):
      hooks_lib.HookList([hook]).set_state({})


class _BadSteps:
  def local_work(self, round_num, clients, population):
    return np.zeros(len(clients))


if __name__ == '__main__':
  absltest.main()
