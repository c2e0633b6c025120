"""What one training step of a model costs, counted per layer, and its time.

A model's cost has three parts: training FLOPs per example (forward FLOPs x
`TRAINING_FLOPS_PER_FORWARD`: the forward pass, the gradient with respect to
the inputs and the one with respect to the weights, each about one forward;
Kaplan et al. 2020, and FedScale's x3), trainable parameters (the optimizer
updates every one of them once per step, whatever the batch) and sequential
steps (a recurrent layer runs its time steps one after another, each with a
fixed overhead, whatever the batch). A step of `b` examples takes, on a device
of relative speed 1,

  step_s = s_per_flop x flops_per_example x b + s_per_param x params
           + s_per_sequential_step x sequential_steps + s_per_step

with the four coefficients fitted to FLASH's measured on-device training
times (traces/calibrate.py); a device `k` times faster takes step_s / k.
The per-layer rules (`dense`, `recurrent`, `embedding`, ...) are the ones both
the Keras counter (tf_fedscale/keras_cost.py) and the check against FLASH's
grids (traces/validate_compute.py) use.
"""

import dataclasses
import math

TRAINING_FLOPS_PER_FORWARD = 3.0
LSTM_GATES = 4
GRU_GATES = 3


@dataclasses.dataclass(frozen=True)
class Cost:
  """Forward FLOPs per example, trainable parameters and sequential (recurrent)
  steps of a model or layer (floats or arrays)."""

  forward_flops: float
  params: float
  sequential_steps: float = 0.0

  def __add__(self, other: 'Cost') -> 'Cost':
    return Cost(self.forward_flops + other.forward_flops, self.params + other.params,
                self.sequential_steps + other.sequential_steps)

  @property
  def training_flops(self) -> float:
    return TRAINING_FLOPS_PER_FORWARD * self.forward_flops


@dataclasses.dataclass(frozen=True)
class StepCoefficients:
  """Seconds per training FLOP, per parameter update, per sequential step and
  per step on a device of relative speed 1 (see the module docstring)."""

  s_per_flop: float
  s_per_param: float
  s_per_sequential_step: float
  s_per_step: float

  def __post_init__(self):
    for name, value in dataclasses.asdict(self).items():
      if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f'{name} must be a finite number >= 0, got {value}.')

  def step_s(self, cost: Cost, batch_size):
    """Seconds of one step of `batch_size` examples at relative speed 1."""
    return (self.s_per_flop * cost.training_flops * batch_size
            + self.s_per_param * cost.params
            + self.s_per_sequential_step * cost.sequential_steps + self.s_per_step)

  def per_example_s(self, cost: Cost, batch_size: int) -> float:
    """Seconds per trained example in steps of `batch_size` at relative speed 1."""
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
    return float(self.step_s(cost, batch_size)) / batch_size


# ---- per-layer rules (positions: outputs per example, e.g. time steps) ----


def dense(inputs, units, positions=1) -> Cost:
  """Matrix multiply plus bias at every position."""
  return Cost(positions * (2 * inputs * units + units), inputs * units + units)


def embedding(vocab, dim, positions=1) -> Cost:
  """A row lookup: a copy per output value; the whole table is trained."""
  return Cost(positions * dim, vocab * dim)


def recurrent(inputs, units, steps, gates) -> Cost:
  """LSTM (4 gates) or GRU (3): the gates' matrix multiplies, biases and
  about 10 elementwise operations per unit, every one of `steps` steps."""
  return Cost(steps * (2 * gates * units * (inputs + units) + (gates + 10) * units),
              gates * units * (inputs + units + 1), steps)


def conv(kernel_elements, in_channels, filters, out_positions, groups=1,
         bias=True) -> Cost:
  """Convolution (grouped or depthwise with `groups`), at every output position."""
  per_filter = kernel_elements * in_channels // groups
  return Cost(out_positions * filters * (2 * per_filter + bias),
              filters * (per_filter + bias))


def elementwise(outputs, params=0) -> Cost:
  """Activations, pooling, normalization, adds: one operation per output."""
  return Cost(outputs, params)
