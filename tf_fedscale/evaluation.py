"""Federated evaluation of the current model on test clients (`build_fed_eval`)."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import algorithms
from tf_fedscale.engine import compositions


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
        tff.learning.algorithms.build_fed_eval(model_fn, loop_implementation=algorithms.LOOP),
        compositions.ClientSource(test_data.dataset_computation,
                                  lambda raw, _: raw.batch(batch_size)))
    self._state = self._process.initialize()
    self.client_ids = list(client_ids)

  def evaluate(self, model_weights: Any) -> dict[str, float]:
    """Returns eval_loss and eval_accuracy (example-weighted over clients)."""
    state = self._process.set_model_weights(self._state, model_weights)
    output = self._process.next(state, self.client_ids)
    metrics = output.metrics['client_work']['eval']['current_round_metrics']
    return {'eval_loss': float(metrics['loss']),
            'eval_accuracy': float(_accuracy(metrics))}


_COUNTERS = ('loss', 'num_examples', 'num_batches')


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
