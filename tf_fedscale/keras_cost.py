"""Counts a Keras model's cost per example, layer by layer, with the rules of
`tf_fedscale.model_cost` (the shapes come from the built model)."""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tf_fedscale import model_cost


def _per_example(shape) -> tuple:
  """The per-example shape of a layer's (first) input or output."""
  if isinstance(shape, list):
    shape = shape[0]
  shape = tuple(tf.TensorShape(shape).as_list())[1:]
  if any(d is None for d in shape):
    raise ValueError(f'shape {shape} has an unknown dimension; costs need fixed shapes.')
  return shape


def _trainable(layer: tf.keras.layers.Layer) -> int:
  return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def layer_cost(layer: tf.keras.layers.Layer, input_shape,
               output_shape) -> model_cost.Cost:
  """Cost of one built layer with the given (batched) input and output shapes."""
  layers = tf.keras.layers
  if isinstance(layer, layers.InputLayer):
    return model_cost.Cost(0.0, 0.0)
  in_shape, out_shape = _per_example(input_shape), _per_example(output_shape)
  positions = int(np.prod(out_shape[:-1]))
  if isinstance(layer, layers.Dense):
    return model_cost.dense(in_shape[-1], layer.units, positions)
  if isinstance(layer, layers.Embedding):
    return model_cost.embedding(layer.input_dim, layer.output_dim,
                                int(np.prod(in_shape)))
  if isinstance(layer, (layers.LSTM, layers.GRU)):
    gates = (model_cost.LSTM_GATES if isinstance(layer, layers.LSTM)
             else model_cost.GRU_GATES)
    return model_cost.recurrent(in_shape[-1], layer.units, in_shape[0], gates)
  if isinstance(layer, layers.DepthwiseConv2D):
    channels = in_shape[-1] * layer.depth_multiplier
    return model_cost.conv(int(np.prod(layer.kernel_size)), channels, channels,
                           positions, groups=channels, bias=layer.use_bias)
  if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose):
    return model_cost.conv(int(np.prod(layer.kernel_size)), in_shape[-1],
                           layer.filters, positions, groups=layer.groups,
                           bias=layer.use_bias)
  if layer.trainable_weights and not isinstance(
      layer, (layers.GroupNormalization, layers.BatchNormalization,
              layers.LayerNormalization)):
    raise ValueError(f'no cost rule for layer {layer.name!r} '
                     f'({type(layer).__name__}), which has trainable weights.')
  return model_cost.elementwise(int(np.prod(out_shape)), _trainable(layer))


def _model_cost(model: tf.keras.Model, input_shape) -> model_cost.Cost:
  """Sums the layers' costs: a Sequential model's shapes are propagated from
  `input_shape`, a functional model's are its graph's."""
  total = model_cost.Cost(0.0, 0.0)
  shape = input_shape
  for layer in model.layers:
    if isinstance(model, tf.keras.Sequential):
      layer_in, layer_out = shape, layer.compute_output_shape(shape)
    else:
      layer_in, layer_out = layer.input_shape, layer.output_shape
    total += (_model_cost(layer, layer_in) if isinstance(layer, tf.keras.Model)
              else layer_cost(layer, layer_in, layer_out))
    shape = layer_out
  return total


def keras_model_cost(model: tf.keras.Model,
                     example_shape: Sequence[int]) -> model_cost.Cost:
  """Cost per example of `model` on inputs of `example_shape` (no batch
  dimension); a model not yet built is built on it."""
  input_shape = tf.TensorShape((None, *example_shape))
  if not model.built:
    model.build(input_shape)
  return _model_cost(model, input_shape)
