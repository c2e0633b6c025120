"""Seeded initial model weights that leave no global TensorFlow seed behind.

A global TF seed changes the op seeds of every tf.data shuffle built eagerly
afterwards, so a client pipeline built in Python would no longer match the same
pipeline built inside a TFF computation (where no global seed is set).
"""

from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff


def seeded_model(keras_model_fn: Callable[[], tf.keras.Model],
                 seed: int) -> tf.keras.Model:
  """A new Keras model whose initial weights are drawn from `seed`."""
  tf.keras.utils.set_random_seed(seed)
  try:
    return keras_model_fn()
  finally:
    tf.random.set_seed(None)


def initial_model_weights(keras_model_fn: Callable[[], tf.keras.Model],
                          seed: int) -> tff.learning.models.ModelWeights:
  """The model's initial weights drawn from `seed`, as numpy arrays."""
  model = seeded_model(keras_model_fn, seed)
  return tff.learning.models.ModelWeights(
      trainable=[v.numpy() for v in model.trainable_variables],
      non_trainable=[v.numpy() for v in model.non_trainable_variables])
