"""Shared pieces of the dataset tasks: turning a source into a `Task`."""

from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import sources

ElementFn = Callable[[Any], tuple[tf.Tensor, tf.Tensor]]


def sparse_ce() -> tf.keras.losses.Loss:
  return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy_metrics() -> list[tf.keras.metrics.Metric]:
  return [tf.keras.metrics.SparseCategoricalAccuracy(name='accuracy')]


def check_model(model: str, choices: tuple[str, ...], task: str) -> str:
  """The model variant (first choice when empty); ValueError for unknown ones."""
  model = model or choices[0]
  if model not in choices:
    raise ValueError(f'--model={model!r} is not a model of task {task}; choose from '
                     f'{list(choices)}.')
  return model


def make_task(name: str, source: sources.FederatedSource, train_fn: ElementFn,
              keras_model_fn: Callable[[], tf.keras.Model],
              test_fn: Optional[ElementFn] = None,
              loss_fn: Callable[[], tf.keras.losses.Loss] = sparse_ce,
              metrics_fn: Callable[[], list] = accuracy_metrics,
              num_train_examples: Optional[np.ndarray] = None,
              train_dataset_fn: Optional[Callable[[tf.data.Dataset], tf.data.Dataset]] = None,
              test_dataset_fn: Optional[Callable[[tf.data.Dataset], tf.data.Dataset]] = None,
              ) -> base.Task:
  """A Task whose elements are `train_fn(raw)` / `test_fn(raw)` of the source's
  raw elements (or whole-dataset transforms when one element does not map to
  one example). `num_train_examples` defaults to the stored counts."""
  test_fn = test_fn or train_fn
  train_dataset_fn = train_dataset_fn or (lambda ds: ds.map(train_fn))
  test_dataset_fn = test_dataset_fn or (lambda ds: ds.map(test_fn))
  train = source.train.client_data.preprocess(train_dataset_fn)
  test = source.test.client_data.preprocess(test_dataset_fn)
  counts = source.train.num_examples if num_train_examples is None else num_train_examples
  return base.Task(
      name=name, train_data=train, test_data=test,
      num_train_examples=np.asarray(counts, np.int64),
      keras_model_fn=keras_model_fn, loss_fn=loss_fn, metrics_fn=metrics_fn,
      train_positions=source.train.positions)
