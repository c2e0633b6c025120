"""Synthetic(alpha, beta): the FedProx paper's non-IID logistic-regression data.

Client k draws u_k ~ N(0, alpha), B_k ~ N(0, beta), a local model
W_k, b_k ~ N(u_k, 1) and a feature mean v_k ~ N(B_k, 1); its examples are
x ~ N(v_k, diag(j^-1.2)) with label argmax(W_k^T x + b_k) (Li et al., 2020,
"Federated Optimization in Heterogeneous Networks", Sec. 5.1). alpha controls
how much local models differ, beta how much local features differ.

With `shared_model=True` every client labels with the same W, b ~ N(0, 1) (drawn
from the task seed): the clients still differ in their features (beta) and sizes,
but what one client teaches the global model holds for the others, so accuracy
on held-out data climbs round after round (the demo's task). With per-client
models (the paper's setting) FedAvg here plateaus near 0.18.

Sizes follow FedProx's power law, lognormal(4, 2) + 50 (capped here at
`max_examples` so one client cannot dominate a 2-core run). Every client's data
is generated inside TF from stateless RNG seeds, so the dataset function is
serializable and the TFF worker builds each client's data itself.
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.tasks import base

NUM_FEATURES = 60
NUM_CLASSES = 10
TRAIN_FRACTION = 0.8


def client_sizes(num_clients: int, seed: int, max_examples: int) -> np.ndarray:
  """Examples per client (train + test), FedProx's lognormal(4, 2) + 50."""
  rng = np.random.default_rng(seed)
  sizes = rng.lognormal(4.0, 2.0, num_clients).astype(np.int64) + 50
  return np.minimum(sizes, max_examples)


def _client_seeds(index: tf.Tensor, seed: int) -> tf.Tensor:
  return tf.random.experimental.stateless_split(
      tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)]), 6)


def labelling_model(index: tf.Tensor, seed: int, alpha: float,
                    shared_model: bool) -> tuple[tf.Tensor, tf.Tensor]:
  """W [features, classes] and b [classes] with which client `index` labels."""
  if shared_model:
    model_seeds = tf.random.experimental.stateless_split(
        tf.constant([seed, -1], tf.int64), 2)
    return (tf.random.stateless_normal([NUM_FEATURES, NUM_CLASSES], model_seeds[0]),
            tf.random.stateless_normal([NUM_CLASSES], model_seeds[1]))
  seeds = _client_seeds(index, seed)
  u = tf.random.stateless_normal([], seeds[0], stddev=alpha ** 0.5)
  return (tf.random.stateless_normal([NUM_FEATURES, NUM_CLASSES], seeds[2], mean=u),
          tf.random.stateless_normal([NUM_CLASSES], seeds[3], mean=u))


def _client_examples(index: tf.Tensor, size: tf.Tensor, seed: int,
                     alpha: float, beta: float, shared_model: bool):
  """All (x, y) of client `index`, generated from stateless seeds."""
  seeds = _client_seeds(index, seed)
  b_shift = tf.random.stateless_normal([], seeds[1], stddev=beta ** 0.5)
  w, b = labelling_model(index, seed, alpha, shared_model)
  v = tf.random.stateless_normal([NUM_FEATURES], seeds[4], mean=b_shift)
  std = tf.pow(tf.range(1, NUM_FEATURES + 1, dtype=tf.float32), -0.6)
  x = v + std * tf.random.stateless_normal([size, NUM_FEATURES], seeds[5])
  y = tf.argmax(tf.matmul(x, w) + b, axis=1, output_type=tf.int32)
  return x, y


def _client_data(client_ids: list[str], sizes: np.ndarray, seed: int,
                 alpha: float, beta: float, shared_model: bool,
                 train: bool) -> tff.simulation.datasets.ClientData:
  def dataset_fn(client_id: tf.Tensor) -> tf.data.Dataset:
    index = tf.strings.to_number(client_id, tf.int32)
    size = tf.gather(tf.constant(sizes, tf.int32), index)
    x, y = _client_examples(index, size, seed, alpha, beta, shared_model)
    num_train = tf.cast(tf.cast(size, tf.float32) * TRAIN_FRACTION, tf.int32)
    if train:
      x, y = x[:num_train], y[:num_train]
    else:
      x, y = x[num_train:], y[num_train:]
    return tf.data.Dataset.from_tensor_slices((x, y))

  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      client_ids, dataset_fn)


def build(num_clients: int = 1000, alpha: float = 0.5, beta: float = 0.5,
          seed: int = 0, max_examples: int = 2000,
          shared_model: bool = False) -> base.Task:
  """The Synthetic(alpha, beta) task with `num_clients` clients."""
  if num_clients < 1:
    raise ValueError(f'num_clients must be >= 1, got {num_clients}.')
  sizes = client_sizes(num_clients, seed, max_examples)
  client_ids = [str(i) for i in range(num_clients)]
  num_train = (sizes.astype(np.float32) * np.float32(TRAIN_FRACTION)).astype(np.int64)

  def keras_model_fn():
    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(NUM_FEATURES,)),
        tf.keras.layers.Dense(NUM_CLASSES, kernel_initializer='zeros'),
    ])

  return base.Task(
      name='synthetic',
      train_data=_client_data(client_ids, sizes, seed, alpha, beta, shared_model,
                                  train=True),
      test_data=_client_data(client_ids, sizes, seed, alpha, beta, shared_model,
                                 train=False),
      num_train_examples=num_train,
      keras_model_fn=keras_model_fn,
      loss_fn=lambda: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics_fn=lambda: [tf.keras.metrics.SparseCategoricalAccuracy()],
  )
