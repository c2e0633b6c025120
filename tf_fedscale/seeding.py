"""Everything random in a run, drawn from `--seed`.

Initial model weights are drawn with a global TF seed that is removed again: a
global TF seed changes the op seeds of every tf.data shuffle built eagerly
afterwards, so a client pipeline built in Python would no longer match the same
pipeline built inside a TFF computation (where no global seed is set).

Draws inside TFF computations (DP noise, stochastic quantization, random-k)
use TF's stateless RNG (Philox, so CPU and GPU agree) keyed by
`stream_key(seed, stream)`: one independent key per kind of draw, so two runs
with the same flags draw the same values and a retried or resumed round draws
what the uninterrupted run drew.
"""

import zlib
from collections.abc import Callable

import numpy as np
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


def stream_key(seed: int, stream: str) -> int:
  """A 63-bit key for the draws named `stream`, derived from the run `seed`."""
  entropy = np.random.SeedSequence([seed, zlib.crc32(stream.encode())])
  return int(entropy.generate_state(1, np.uint64)[0] >> np.uint64(1))


def stateless_seed(key: int, counter: tf.Tensor) -> tf.Tensor:
  """The int64 [2] stateless-RNG seed of draw `counter` of stream `key`."""
  return tf.stack([tf.constant(key, tf.int64), tf.cast(counter, tf.int64)])


def content_seed(key: int, x: tf.Tensor) -> tf.Tensor:
  """A stateless-RNG seed from stream `key` and the bytes of `x` (farmhash64):
  each client's tensor in each round gets its own draws without a counter,
  and equal inputs replay them."""
  fingerprint = tf.fingerprint(tf.reshape(tf.io.serialize_tensor(x), [1]))
  return stateless_seed(key, tf.bitcast(fingerprint[0], tf.int64))
