"""Federated evaluation of the current model on test clients (`build_fed_eval`).

Besides the example-weighted means, evaluation reports the spread of the
headline metric over clients (LEAF's and FederatedScope's 10th/90th
percentiles, and the mean of the worst 10 % that fairness work such as q-FFL
cares about). Each client adds a histogram of its own value to its local
metrics (`ACCURACY_BINS` bins of [0, 1], one count and its value in the bin it
falls in), so TFF's usual sum over clients yields the distribution: one
federated call, with a MapReduceForm like any evaluation. A percentile is the
nearest-rank value (the ceil(q n)-th smallest of n clients), read as the mean
of its bin: exact whenever the clients in that bin share one value, within
1 / ACCURACY_BINS otherwise.
"""

import collections
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import algorithms
from tf_fedscale.engine import compositions

ACCURACY_BINS = 10_000
SPREAD_COUNTS, SPREAD_SUMS = 'client_spread_counts', 'client_spread_sums'
PERCENTILES = (10, 50, 90)
WORST_FRACTION = 0.1
SPREAD_KEYS = (*(f'eval_accuracy_p{q}' for q in PERCENTILES), 'eval_accuracy_worst10')

class FederatedEvaluation:
  """Evaluates model weights on a fixed set of test clients.

  The test clients' datasets are built by the TFF worker from their ids
  (`ClientData.dataset_computation`), like training data.
  """

  def __init__(self, model_fn: Callable[[], tff.learning.models.VariableModel],
               test_data: tff.simulation.datasets.ClientData,
               client_ids: Sequence[str], batch_size: int):
    if not client_ids:
      raise ValueError('FederatedEvaluation needs at least one test client.')
    batched = test_data.preprocess(lambda ds: ds.batch(batch_size))
    self._process = compositions.compose(
        batched.dataset_computation,
        tff.learning.algorithms.build_fed_eval(
            lambda: ClientSpreadModel(model_fn()), loop_implementation=algorithms.LOOP),
        compositions.ClientSource(test_data.dataset_computation,
                                  lambda raw, _: raw.batch(batch_size)))
    self._state = self._process.initialize()
    self.client_ids = list(client_ids)

  def evaluate(self, model_weights: Any) -> dict[str, float]:
    """Returns eval_loss and eval_accuracy (example-weighted over clients) and
    the spread of the accuracy over clients (`SPREAD_KEYS`)."""
    state = self._process.set_model_weights(self._state, model_weights)
    output = self._process.next(state, self.client_ids)
    metrics = output.metrics['client_work']['eval']['current_round_metrics']
    spread = (accuracy_spread(np.asarray(metrics[SPREAD_COUNTS]),
                              np.asarray(metrics[SPREAD_SUMS]))
              if SPREAD_COUNTS in metrics else dict.fromkeys(SPREAD_KEYS, math.nan))
    return {'eval_loss': float(metrics['loss']),
            'eval_accuracy': float(_accuracy(metrics)), **spread}


def accuracy_spread(counts: np.ndarray, sums: np.ndarray) -> dict[str, float]:
  """`SPREAD_KEYS` from a histogram over clients: clients per bin and the sum
  of their values (see the module docstring); NaN without clients."""
  counts = np.rint(counts).astype(np.int64)
  n = int(counts.sum())
  if not n:
    return dict.fromkeys(SPREAD_KEYS, math.nan)
  with np.errstate(divide='ignore', invalid='ignore'):
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
  cumulative = np.cumsum(counts)

  def rank(k: int) -> int:  # the bin holding the k-th smallest value (1-based)
    return int(np.searchsorted(cumulative, k))

  spread = {f'eval_accuracy_p{q}': float(means[rank(_ceil(q / 100 * n))])
            for q in PERCENTILES}
  worst = _ceil(WORST_FRACTION * n)
  last = rank(worst)
  below = int(cumulative[last - 1]) if last else 0
  spread['eval_accuracy_worst10'] = float(
      (sums[:last].sum() + (worst - below) * means[last]) / worst)
  return spread


def _ceil(x: float) -> int:
  """ceil(x), at least 1, robust to x = k + float round-off."""
  return max(1, math.ceil(round(x, 9)))


class ClientSpreadModel(tff.learning.models.VariableModel):
  """`model` whose local metrics also hold the histogram of this client's
  headline metric (`_accuracy`'s pick, when it is a Keras `Mean`, whose state
  is (total, count): accuracies are; recall is not); everything else is
  `model`'s."""

  def __init__(self, model: tff.learning.models.VariableModel):
    self._model = model
    names = [n for n in model.metric_finalizers() if n not in _COUNTERS]
    headline = ([n for n in names if 'accuracy' in n] or names)[:1]
    means = {m.name for m in getattr(model, 'get_metrics', list)()
             if isinstance(m, tf.keras.metrics.Mean)}
    self._metric = next((n for n in headline if n in means), None)

  @property
  def trainable_variables(self):
    return self._model.trainable_variables

  @property
  def non_trainable_variables(self):
    return self._model.non_trainable_variables

  @property
  def local_variables(self):
    return self._model.local_variables

  @property
  def input_spec(self):
    return self._model.input_spec

  def forward_pass(self, batch_input, training=True):
    return self._model.forward_pass(batch_input, training=training)

  def predict_on_batch(self, batch_input, training=True):
    return self._model.predict_on_batch(batch_input, training=training)

  @tf.function
  def report_local_unfinalized_metrics(self):
    metrics = self._model.report_local_unfinalized_metrics()
    if self._metric is None:
      return metrics
    total, count = (tf.cast(v, tf.float64) for v in metrics[self._metric])
    value = tf.math.divide_no_nan(total, count)
    index = tf.clip_by_value(tf.cast(tf.floor(value * ACCURACY_BINS), tf.int32),
                             0, ACCURACY_BINS)
    one_hot = tf.one_hot(index, ACCURACY_BINS + 1, dtype=tf.float64) * tf.cast(
        count > 0, tf.float64)
    metrics[SPREAD_COUNTS] = [one_hot]
    metrics[SPREAD_SUMS] = [one_hot * value]
    return metrics

  def metric_finalizers(self):
    finalizers = collections.OrderedDict(self._model.metric_finalizers())
    if self._metric is not None:
      finalizers[SPREAD_COUNTS] = finalizers[SPREAD_SUMS] = lambda values: values[0]
    return finalizers

  def reset_metrics(self):
    self._model.reset_metrics()


_COUNTERS = ('loss', 'num_examples', 'num_batches', SPREAD_COUNTS, SPREAD_SUMS)


def _accuracy(metrics: dict[str, Any]) -> float:
  """The task's headline metric: the first whose name says accuracy, else the
  first that is not the loss or a counter (e.g. recall_at_5 for tag
  prediction); NaN when there is none."""
  for name, value in metrics.items():
    if 'accuracy' in name:
      return float(value)
  for name, value in metrics.items():
    if name not in _COUNTERS:
      return float(value)
  return float('nan')


def choose_eval_clients(client_ids: Sequence[str], max_clients: int,
                        seed: int) -> list[str]:
  """All test clients, or a seeded sample of `max_clients` (0 means all)."""
  if max_clients <= 0 or max_clients >= len(client_ids):
    return list(client_ids)
  rng = np.random.default_rng([seed, 7])
  picked = np.sort(rng.choice(len(client_ids), max_clients, replace=False))
  return [client_ids[i] for i in picked]


def train_metrics(metrics: Any) -> dict[str, float]:
  """train_loss and train_accuracy from a `tff.learning` process's metrics."""
  try:
    train = metrics['client_work']['train']
  except (KeyError, TypeError):
    return {'train_loss': float('nan'), 'train_accuracy': float('nan')}
  return {'train_loss': float(train.get('loss', float('nan'))),
          'train_accuracy': _accuracy(train)}
