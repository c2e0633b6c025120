"""Tests for tf_fedscale.evaluation's metric picking, client sampling and the
spread of accuracy over clients."""

import math

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import evaluation
from tf_fedscale.engine import inprocess_context
from tf_fedscale.engine import runtime


def _nearest_rank(values, q: float) -> float:
  ordered = sorted(values)
  return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def _worst_mean(values) -> float:
  ordered = sorted(values)
  k = max(1, math.ceil(0.1 * len(ordered) - 1e-9))
  return sum(ordered[:k]) / k


def _expected_spread(values) -> dict[str, float]:
  return {'eval_accuracy_p10': _nearest_rank(values, 0.1),
          'eval_accuracy_p50': _nearest_rank(values, 0.5),
          'eval_accuracy_p90': _nearest_rank(values, 0.9),
          'eval_accuracy_worst10': _worst_mean(values)}


class TrainMetricsTest(absltest.TestCase):

  def test_accuracy_named_metric_wins(self):
    metrics = {'client_work': {'train': {
        'loss': 1.5, 'num_examples': 10, 'recall_at_5': 0.3, 'sparse_accuracy': 0.7}}}
    self.assertEqual(evaluation.train_metrics(metrics),
                     {'train_loss': 1.5, 'train_accuracy': 0.7})

  def test_headline_metric_without_accuracy_in_its_name(self):
    metrics = {'client_work': {'train': {
        'loss': 2.0, 'num_examples': 10, 'num_batches': 2, 'recall_at_5': 0.3}}}
    self.assertEqual(evaluation.train_metrics(metrics)['train_accuracy'], 0.3)

  def test_no_metric_is_nan(self):
    metrics = {'client_work': {'train': {'loss': 2.0, 'num_examples': 10}}}
    self.assertTrue(math.isnan(evaluation.train_metrics(metrics)['train_accuracy']))
    self.assertTrue(math.isnan(evaluation.train_metrics({})['train_loss']))


class ChooseEvalClientsTest(absltest.TestCase):

  def test_all_or_a_seeded_sorted_sample(self):
    ids = [f'c{i}' for i in range(100)]
    self.assertEqual(evaluation.choose_eval_clients(ids, 0, seed=1), ids)
    sample = evaluation.choose_eval_clients(ids, 10, seed=1)
    self.assertLen(set(sample), 10)
    self.assertEqual(sample, [c for c in ids if c in sample])
    self.assertEqual(sample, evaluation.choose_eval_clients(ids, 10, seed=1))
    self.assertNotEqual(sample, evaluation.choose_eval_clients(ids, 10, seed=2))


class _HitRate(tf.keras.metrics.Metric):
  """hits / (hits + misses) of the argmax: two state variables, not a Mean."""

  def __init__(self, name='hit_rate', dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.hits = self.add_weight('hits', initializer='zeros')
    self.misses = self.add_weight('misses', initializer='zeros')

  def update_state(self, y_true, y_pred, sample_weight=None):
    del sample_weight
    hit = tf.cast(tf.equal(tf.cast(y_true, tf.int64), tf.argmax(y_pred, -1)), tf.float32)
    self.hits.assign_add(tf.reduce_sum(hit))
    self.misses.assign_add(tf.reduce_sum(1.0 - hit))

  def result(self):
    return self.hits / (self.hits + self.misses)


class AccuracySpreadTest(absltest.TestCase):

  def _histogram(self, values):
    counts = np.zeros(evaluation.ACCURACY_BINS + 1)
    sums = np.zeros(evaluation.ACCURACY_BINS + 1)
    for v in values:
      b = min(int(v * evaluation.ACCURACY_BINS), evaluation.ACCURACY_BINS)
      counts[b] += 1
      sums[b] += v
    return counts, sums

  def test_percentiles_and_worst_tenth_by_hand(self):
    # 25 clients: worst 10 % = the 3 lowest (0.0, 0.05, 0.1); p10 = the 3rd
    # smallest, p50 the 13th (0.5: 11 values below), p90 the 23rd (22 are <= 0.9).
    values = [i / 20 for i in range(21)] + [0.5, 0.5, 1.0, 0.25]
    spread = evaluation.accuracy_spread(*self._histogram(values))
    self.assertEqual(spread['eval_accuracy_p10'], 0.1)
    self.assertEqual(spread['eval_accuracy_p50'], 0.5)
    self.assertEqual(spread['eval_accuracy_p90'], 0.95)
    self.assertAlmostEqual(spread['eval_accuracy_worst10'], 0.05)
    for key, value in _expected_spread(values).items():
      self.assertAlmostEqual(spread[key], value, msg=key)

  def test_shared_bins_and_random_clients(self):
    rng = np.random.default_rng(3)
    for n in (1, 7, 10, 99, 500):
      values = list(np.round(rng.random(n), 3)) + [1.0]
      spread = evaluation.accuracy_spread(*self._histogram(values))
      for key, value in _expected_spread(values).items():
        self.assertAlmostEqual(spread[key], value, places=9, msg=(n, key))

  def test_no_clients_is_nan(self):
    spread = evaluation.accuracy_spread(np.zeros(3), np.zeros(3))
    self.assertTrue(all(math.isnan(v) for v in spread.values()))


class FederatedEvaluationSpreadTest(absltest.TestCase):
  """Clients whose accuracy is known: a zero model predicts class 0, and client
  i has i of its 10 labels 0."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.worker = cls.enterClassContext(runtime.local_context())

  def _evaluation(self, num_clients: int,
                  metric: str = 'accuracy') -> evaluation.FederatedEvaluation:
    data = {str(i): (np.zeros((10, 2), np.float32),
                     np.array([0] * i + [1] * (10 - i), np.int32))
            for i in range(num_clients)}
    client_data = tff.simulation.datasets.TestClientData(data)

    def keras_model():
      return tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=(2,)),
                                  tf.keras.layers.Dense(2, kernel_initializer='zeros')])

    x_spec, y_spec = client_data.element_type_structure

    def model_fn():
      return tff.learning.models.from_keras_model(
          keras_model(), loss=tf.keras.losses.SparseCategoricalCrossentropy(True),
          input_spec=(tf.TensorSpec([None, *x_spec.shape], x_spec.dtype),
                      tf.TensorSpec([None, *y_spec.shape], y_spec.dtype)),
          metrics=[tf.keras.metrics.SparseCategoricalAccuracy() if metric == 'accuracy'
                   else _HitRate(name='hit_rate')])

    self.weights = tff.learning.models.ModelWeights.from_model(keras_model())
    return evaluation.FederatedEvaluation(model_fn, client_data, client_data.client_ids,
                                          batch_size=4)

  def test_per_client_spread(self):
    evaluator = self._evaluation(11)
    result = evaluator.evaluate(self.weights)
    values = [int(c) / 10 for c in evaluator.client_ids]
    self.assertAlmostEqual(result['eval_accuracy'], sum(values) / len(values), places=6)
    for key, value in _expected_spread(values).items():
      self.assertAlmostEqual(result[key], value, places=6, msg=key)

  def test_a_metric_that_is_no_mean_has_no_spread(self):
    # Like recall's (true positives, false negatives), its state is no (total, count).
    evaluator = self._evaluation(3, metric='hit_rate')
    result = evaluator.evaluate(self.weights)
    self.assertFalse(math.isnan(result['eval_accuracy']))
    for key in evaluation.SPREAD_KEYS:
      self.assertTrue(math.isnan(result[key]), key)

  def test_the_evaluation_keeps_a_map_reduce_form(self):
    process = self._evaluation(3)._process  # pylint: disable=protected-access
    inprocess_context.map_reduce_form(process.next)


if __name__ == '__main__':
  absltest.main()
