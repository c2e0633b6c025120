"""Tests for tf_fedscale.feedback: per-client losses out of the TFF computation."""

import math

import numpy as np
from absl.testing import absltest
import tensorflow as tf

from tf_fedscale import accounting
from tf_fedscale import algorithms
from tf_fedscale import availability
from tf_fedscale.engine import runtime
from tf_fedscale import feedback
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import oort
from tf_fedscale import population as population_lib
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


def _ideal_population(task):
  n = len(task.train_data.client_ids)
  return population_lib.Population.build(
      task.train_data.client_ids, task.num_train_examples,
      population_lib.DeviceProfiles.uniform(n, 1.0, 1e4, 1e4),
      availability.AvailabilityTrace.always(n), seed=0)


class RecordingOort(oort.OortSelector):
  """Oort that keeps the feedback it received."""

  def observe(self, round_num, outcome):
    self.feedback = outcome
    super().observe(round_num, outcome)


class FeedbackTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=20, seed=3)
    cls.work = local_work_lib.LocalWork(batch_size=5, local_steps=3)
    cls.lr = 0.1

  def _loss_model_fn(self, slots):
    return feedback.loss_reporting_model_fn(
        self.task.model_fn(), feedback.keras_per_example_loss(self.task.loss_fn), slots)

  def test_losses_of_every_local_step_match_plain_sgd(self):
    process = algorithms.build_process('fedavg', self._loss_model_fn(4), self.lr, 1.0)
    self.assertEqual(feedback.reported_loss_slots(process), 4)
    tasks = feedback.ClientTasks(self.task.train_data, self.work, loss_slots=4)
    composed = simulation.compose_with_client_data(process, tasks)
    clients, amounts = ['3', '7', '1'], np.array([3, 1, 2])
    output = composed.next(composed.initialize(), tasks.arguments(clients, amounts))
    sq_sum, count = tasks.losses(output.metrics, 3)

    # The same local SGD in plain TF: per-example losses at each step's weights.
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
    for i, (client, amount) in enumerate(zip(clients, amounts)):
      model = self.task.keras_model_fn()
      expected_sq, expected_count = 0.0, 0
      dataset = self.work.preprocess(
          self.task.train_data.create_tf_dataset_for_client(client), amount)
      for x, y in dataset:
        with tf.GradientTape() as tape:
          losses = loss_fn(y, model(x))
          mean = tf.reduce_mean(losses)
        expected_sq += float(tf.reduce_sum(losses ** 2))
        expected_count += len(y)
        grads = tape.gradient(mean, model.trainable_variables)
        for v, g in zip(model.trainable_variables, grads):
          v.assign_sub(self.lr * g)
      self.assertEqual(count[i], expected_count)
      self.assertEqual(expected_count, amount * 5)
      self.assertAlmostEqual(sq_sum[i], expected_sq, delta=1e-4 * expected_sq)
    # Later losses are lower than ln(10)^2 (the untrained model's).
    self.assertLess(sq_sum[0] / count[0], np.log(10) ** 2)

  def test_wrapped_model_trains_like_the_plain_one(self):
    plain = algorithms.build_process('fedavg', self.task.model_fn(), self.lr, 1.0)
    wrapped = algorithms.build_process('fedavg', self._loss_model_fn(3), self.lr, 1.0)
    plain = simulation.compose_with_client_data(
        plain, self.task.train_data.preprocess(self.work.preprocess))
    tasks = feedback.ClientTasks(self.task.train_data, self.work, loss_slots=3)
    wrapped = simulation.compose_with_client_data(wrapped, tasks)
    a = plain.next(plain.initialize(), ['2', '5']).state
    b = wrapped.next(wrapped.initialize(), tasks.arguments(['2', '5'])).state
    tf.nest.map_structure(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
        plain.get_model_weights(a).trainable, wrapped.get_model_weights(b).trainable)

  def test_oort_in_a_simulation_learns_from_tff_losses(self):
    pop = _ideal_population(self.task)
    selector = RecordingOort(4, overcommit=1.5)
    process = algorithms.build_process(
        'fedavg', self._loss_model_fn(selector.num_candidates), self.lr, 1.0)
    sim = simulation.Simulation(
        process, self.task.train_data, pop, selector,
        accounting.LatencyAccountant(pop, clients_per_round=4), self.work, seed=0)
    records = []
    state = sim.run(sim.initialize(), rounds=2, on_round=records.append)
    self.assertEqual(state.round_num, 2)
    # metrics.csv's Oort columns: round 1 is uniform, round 2 Oort's first call.
    self.assertTrue(math.isnan(records[1]['oort_exploration']))
    self.assertEqual((records[1]['oort_exploited'], records[1]['oort_explored']), (0, 0))
    self.assertAlmostEqual(records[2]['oort_exploration'], 0.9 * 0.98)
    self.assertEqual(records[2]['oort_exploited'], 6 - int(6 * 0.9 * 0.98))
    self.assertEqual(records[2]['oort_exploited'] + records[2]['oort_explored'], 6)
    self.assertEqual(records[2]['oort_preferred_duration_s'],
                     selector.preferred_duration_s)
    fb = selector.feedback
    done = fb.status == accounting.Status.COMPLETED
    self.assertEqual(done.sum(), 4)
    np.testing.assert_array_equal(fb.loss_count[done], fb.samples[done])  # 3 x 5
    self.assertTrue(np.isnan(fb.loss_sq_sum[~done]).all())
    rms = np.sqrt(fb.loss_sq_sum[done] / fb.loss_count[done])
    np.testing.assert_allclose(selector.utility[fb.clients[done]],
                               fb.loss_count[done] * rms)
    # FedScale's Oort counts stragglers' feedback too: 2 rounds x int(1.5 x 4) invited.
    self.assertEqual(selector.count.sum(), 2 * 6)

  def test_plain_process_unchanged_without_loss_selector(self):
    pop = _ideal_population(self.task)
    process = algorithms.build_process('fedavg', self.task.model_fn(), self.lr, 1.0)
    sim = simulation.Simulation(
        process, self.task.train_data, pop, selection.UniformSelector(2),
        accounting.LatencyAccountant(pop, clients_per_round=2), self.work, seed=0)
    self.assertIsNone(sim._tasks)  # pylint: disable=protected-access
    with self.assertRaisesRegex(ValueError, 'needs per-client training losses'):
      simulation.Simulation(
          process, self.task.train_data, pop, oort.OortSelector(2),
          accounting.LatencyAccountant(pop, clients_per_round=2), self.work, seed=0)


if __name__ == '__main__':
  absltest.main()
