"""FedScale's optimizers as `tff.learning.optimizers.Optimizer`s.

- `client_sgd`: the client optimizer of FedScale's tasks (`torch_client.py`:
  `torch.optim.SGD(lr, momentum=0.9, weight_decay=5e-4)`). torch's SGD, with
  dampening 0 and no Nesterov, takes per step
      g = g + weight_decay x w
      b = momentum x b + g          (b = g at the first step)
      w = w - lr x b
  which is TFF's `build_sgdm` (its momentum buffer starts at 0, so its first
  step is b = g) given the weight-decayed gradient: `WeightDecay` adds the L2
  term and hands on to it. Without momentum and decay it is `build_sgdm(lr)`.
- `FedScaleYogi`: FedScale's server Yogi (`fedscale/utils/optimizer/yogi.py`),
  TFF's Yogi without Adam's bias correction. With the update d (the new
  global model minus the old, i.e. minus TFF's server "gradient" g):
      m = beta_1 x m + (1 - beta_1) x d
      v = v - (1 - beta_2) x d^2 x sign(v - d^2)      (v starts at `tau`)
      w = w + lr x m / (sqrt(v) + tau)
  TFF's `build_yogi` multiplies lr by sqrt(1 - beta_2^t) / (1 - beta_1^t).
"""

import collections
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff

Optimizer = tff.learning.optimizers.Optimizer
LEARNING_RATE_KEY = 'learning_rate'
FEDSCALE_MOMENTUM = 0.9  # torch_client.py
FEDSCALE_WEIGHT_DECAY = 5e-4


class WeightDecay(Optimizer):
  """`inner` applied to the gradient plus `weight_decay` x the weights (L2, as
  torch's SGD `weight_decay`); state and hparams are `inner`'s."""

  def __init__(self, inner: Optimizer, weight_decay: float):
    if not weight_decay >= 0:
      raise ValueError(f'weight_decay must be >= 0, got {weight_decay}.')
    self._inner = inner
    self._weight_decay = weight_decay

  def initialize(self, specs: Any) -> Any:
    return self._inner.initialize(specs)

  def next(self, state: Any, weights: Any, gradients: Any) -> tuple[Any, Any]:
    def decay(g, w):
      if g is None:  # a weight the loss does not reach: torch skips it too
        return g
      g = tf.convert_to_tensor(g)  # sparse (embedding) gradients: w is dense
      return g + tf.cast(self._weight_decay, g.dtype) * w
    return self._inner.next(state, weights,
                            tf.nest.map_structure(decay, gradients, weights))

  def get_hparams(self, state: Any) -> Any:
    return self._inner.get_hparams(state)

  def set_hparams(self, state: Any, hparams: Any) -> Any:
    return self._inner.set_hparams(state, hparams)


def client_sgd(learning_rate: float, momentum: float = 0.0,
               weight_decay: float = 0.0) -> Optimizer:
  """torch's SGD(lr, momentum, weight_decay) (see the module docstring)."""
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
  sgd = tff.learning.optimizers.build_sgdm(learning_rate=learning_rate,
                                           momentum=momentum or None)
  return WeightDecay(sgd, weight_decay) if weight_decay else sgd


class FedScaleYogi(Optimizer):
  """FedScale's Yogi: no bias correction; `tau` is both the initial second
  moment and the denominator's epsilon (see the module docstring)."""

  def __init__(self, learning_rate: float, tau: float, beta_1: float = 0.9,
               beta_2: float = 0.99):
    if not learning_rate > 0:
      raise ValueError(f'learning_rate must be positive, got {learning_rate}.')
    if not tau > 0:
      raise ValueError(f'tau must be positive, got {tau}.')
    for name, beta in (('beta_1', beta_1), ('beta_2', beta_2)):
      if not 0.0 <= beta < 1.0:
        raise ValueError(f'{name} must be in [0, 1), got {beta}.')
    self._learning_rate = learning_rate
    self._tau = tau
    self._beta_1 = beta_1
    self._beta_2 = beta_2

  def initialize(self, specs: Any) -> Any:
    return collections.OrderedDict(
        learning_rate=self._learning_rate,
        first_moment=tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), specs),
        second_moment=tf.nest.map_structure(
            lambda s: tf.fill(s.shape, tf.constant(self._tau, s.dtype)), specs))

  def next(self, state: Any, weights: Any, gradients: Any) -> tuple[Any, Any]:
    lr = state[LEARNING_RATE_KEY]
    beta_1, beta_2, tau = self._beta_1, self._beta_2, self._tau

    def step(w, m, v, g):
      d = -g  # the server's "gradient" is minus the averaged model update
      m = beta_1 * m + (1.0 - beta_1) * d
      d2 = tf.square(d)
      v = v - (1.0 - beta_2) * d2 * tf.sign(v - d2)
      return w + tf.cast(lr, w.dtype) * m / (tf.sqrt(v) + tau), m, v

    flat = [step(*leaves) for leaves in zip(
        tf.nest.flatten(weights), tf.nest.flatten(state['first_moment']),
        tf.nest.flatten(state['second_moment']), tf.nest.flatten(gradients))]
    pack = lambda i: tf.nest.pack_sequence_as(weights, [leaf[i] for leaf in flat])
    return (collections.OrderedDict(learning_rate=lr, first_moment=pack(1),
                                    second_moment=pack(2)), pack(0))

  def get_hparams(self, state: Any) -> Any:
    return collections.OrderedDict(learning_rate=state[LEARNING_RATE_KEY])

  def set_hparams(self, state: Any, hparams: Any) -> Any:
    return tff.structure.update_struct(state, **hparams)
