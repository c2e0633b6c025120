"""Keras (tf.keras, Keras 2) models of the tasks, plus masked metrics.

No batch normalization anywhere: TFF averages only trainable weights, so
batch-norm moving statistics would never leave their initial values on the
server. Residual and mobile networks use group normalization instead
(Hsieh et al., 2020; Reddi et al., 2021 use ResNet-18 with group norm).
No dropout either: its random masks would make runs irreproducible.
"""

from collections.abc import Sequence

import tensorflow as tf

GROUPS = 2  # group-norm groups, as the ResNet-18 of Reddi et al. (2021)


def femnist_cnn(num_classes: int = 62, input_shape: Sequence[int] = (28, 28, 1)
                ) -> tf.keras.Model:
  """The CNN of the FedAvg / Adaptive FedOpt EMNIST experiments: conv 32 3x3,
  conv 64 3x3, max-pool 2, dense 128, dense `num_classes` (logits)."""
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=tuple(input_shape)),
      tf.keras.layers.Conv2D(32, 3, activation='relu'),
      tf.keras.layers.Conv2D(64, 3, activation='relu'),
      tf.keras.layers.MaxPooling2D(2),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(128, activation='relu'),
      tf.keras.layers.Dense(num_classes),
  ], name='femnist_cnn')


def _norm(x, groups: int = GROUPS, zero: bool = False):
  """Group norm; `zero` starts its scale at 0 (the last norm of a residual
  branch, so every block starts as the identity: stable first steps)."""
  return tf.keras.layers.GroupNormalization(
      groups=groups, epsilon=1e-5, gamma_initializer='zeros' if zero else 'ones')(x)


def _basic_block(x, filters: int, stride: int):
  shortcut = x
  y = tf.keras.layers.Conv2D(filters, 3, stride, padding='same', use_bias=False)(x)
  y = tf.keras.layers.ReLU()(_norm(y))
  y = tf.keras.layers.Conv2D(filters, 3, 1, padding='same', use_bias=False)(y)
  y = _norm(y, zero=True)
  if stride != 1 or x.shape[-1] != filters:
    shortcut = _norm(tf.keras.layers.Conv2D(filters, 1, stride, use_bias=False)(x))
  return tf.keras.layers.ReLU()(tf.keras.layers.Add()([y, shortcut]))


RESNET_BLOCKS = {'resnet18': (2, 2, 2, 2), 'resnet34': (3, 4, 6, 3)}


def resnet(depth: str, num_classes: int, input_shape: Sequence[int],
           width: int = 64) -> tf.keras.Model:
  """ResNet-18/34 (basic blocks) with group norm. Inputs up to 64 px get the
  CIFAR stem (3x3 conv, no pooling), larger ones ImageNet's (7x7/2 + pool)."""
  inputs = tf.keras.Input(tuple(input_shape))
  if max(input_shape[:2]) <= 64:
    x = tf.keras.layers.Conv2D(width, 3, padding='same', use_bias=False)(inputs)
    x = tf.keras.layers.ReLU()(_norm(x))
  else:
    x = tf.keras.layers.Conv2D(width, 7, 2, padding='same', use_bias=False)(inputs)
    x = tf.keras.layers.ReLU()(_norm(x))
    x = tf.keras.layers.MaxPooling2D(3, 2, padding='same')(x)
  for stage, blocks in enumerate(RESNET_BLOCKS[depth]):
    for block in range(blocks):
      x = _basic_block(x, width * 2 ** stage, 2 if stage and not block else 1)
  x = tf.keras.layers.GlobalAveragePooling2D()(x)
  return tf.keras.Model(inputs, tf.keras.layers.Dense(num_classes)(x), name=depth)


def mobilenet_v2(num_classes: int, input_shape: Sequence[int], alpha: float = 1.0
                 ) -> tf.keras.Model:
  """tf.keras.applications.MobileNetV2 (weights=None, random init) with its
  batch norms replaced by group norms; outputs logits."""
  base = tf.keras.applications.MobileNetV2(
      input_shape=tuple(input_shape), alpha=alpha, include_top=True, weights=None,
      classes=num_classes, classifier_activation=None)

  # Norms feeding a residual Add start at zero, so those blocks start as the identity.
  residual = {node.inbound_layers[1].name for layer in base.layers
              if isinstance(layer, tf.keras.layers.Add) for node in layer._inbound_nodes}  # pylint: disable=protected-access

  def swap(layer):
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      return tf.keras.layers.GroupNormalization(
          groups=GROUPS, epsilon=1e-3, name=layer.name.replace('BN', 'GN'),
          gamma_initializer='zeros' if layer.name in residual else 'ones')
    return layer.__class__.from_config(layer.get_config())

  return tf.keras.models.clone_model(base, clone_function=swap)


def char_lstm(vocab_size: int, embedding_dim: int = 8, units: int = 256,
              layers: int = 2) -> tf.keras.Model:
  """Shakespeare's character LSTM (Reddi et al., 2021): embedding 8, two LSTM
  layers of 256, dense over the vocabulary, at every position."""
  model = tf.keras.Sequential(name='char_lstm')
  model.add(tf.keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True))
  for _ in range(layers):
    model.add(tf.keras.layers.LSTM(units, return_sequences=True))
  model.add(tf.keras.layers.Dense(vocab_size))
  return model


def word_lstm(vocab_size: int, embedding_dim: int = 96, units: int = 670,
              projection: int = 96) -> tf.keras.Model:
  """Stack Overflow next-word LSTM (Reddi et al., 2021): embedding 96, LSTM 670,
  dense 96, dense over the vocabulary, at every position."""
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True),
      tf.keras.layers.LSTM(units, return_sequences=True),
      tf.keras.layers.Dense(projection),
      tf.keras.layers.Dense(vocab_size),
  ], name='word_lstm')


def text_classifier(vocab_size: int, num_classes: int, embedding_dim: int = 64,
                    units: int = 64) -> tf.keras.Model:
  """Embedding + LSTM + dense logits, for review/tweet classification."""
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True),
      tf.keras.layers.LSTM(units),
      tf.keras.layers.Dense(num_classes),
  ], name='text_lstm')


def logistic_regression(input_dim: int, num_outputs: int) -> tf.keras.Model:
  """One-vs-rest logistic regression (Stack Overflow tags): sigmoid outputs."""
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(input_dim,)),
      tf.keras.layers.Dense(num_outputs, activation='sigmoid'),
  ], name='logistic_regression')


class MaskedAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
  """Token accuracy that ignores the given target ids (padding, ...)."""

  def __init__(self, masked_ids: Sequence[int] = (0,), name: str = 'accuracy', **kwargs):
    super().__init__(name=name, **kwargs)
    self._masked_ids = list(masked_ids)

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.cast(y_true, tf.int32)
    mask = tf.ones_like(y_true, tf.float32)
    for token in self._masked_ids:
      mask *= tf.cast(tf.not_equal(y_true, token), tf.float32)
    if sample_weight is not None:
      mask *= tf.cast(sample_weight, tf.float32)
    return super().update_state(y_true, y_pred, sample_weight=mask)

  def get_config(self):
    return dict(super().get_config(), masked_ids=self._masked_ids)
