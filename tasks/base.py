"""A federated task: client-split data, a Keras model, its loss and metrics."""

import dataclasses
from collections.abc import Callable
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """What a simulation needs to know about a dataset and its model.

  Elements of `train_data` and `test_data` datasets are `(x, y)` pairs, so any
  `tf.keras` model and loss apply. `num_train_examples` is aligned with
  `train_data.client_ids`; the accountant charges compute from it.
  `train_positions` (aligned too) is each training client's 0-based place in
  the dataset's own client order before size filtering (None: 0, 1, 2, ...),
  which `--client_mapping=modulo` numbers clients by, as FedScale does.
  """

  name: str
  train_data: tff.simulation.datasets.ClientData
  test_data: tff.simulation.datasets.ClientData
  num_train_examples: np.ndarray
  keras_model_fn: Callable[[], tf.keras.Model]
  loss_fn: Callable[[], tf.keras.losses.Loss]
  metrics_fn: Callable[[], list[tf.keras.metrics.Metric]]
  train_positions: Optional[np.ndarray] = None

  def model_fn(self) -> Callable[[], tff.learning.models.VariableModel]:
    """A no-arg TFF model constructor for batched `(x, y)` elements."""
    x_spec, y_spec = self.train_data.element_type_structure
    input_spec = (
        tf.TensorSpec([None, *x_spec.shape], x_spec.dtype),
        tf.TensorSpec([None, *y_spec.shape], y_spec.dtype),
    )

    def model_fn():
      return tff.learning.models.from_keras_model(
          self.keras_model_fn(), loss=self.loss_fn(), input_spec=input_spec,
          metrics=self.metrics_fn())

    return model_fn
