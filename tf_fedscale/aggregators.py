"""Model-update aggregation plug-ins: robustness, privacy, secure sum, compression.

`build_aggregator(name, ...)` returns an `Aggregator`: the (weighted)
`tff.aggregators` factory an algorithm aggregates updates with, how many bytes
a client really uploads through it; for differential privacy, the epsilon
spent is reported by `tf_fedscale.privacy`.

| name | factory |
|---|---|
| `mean` | `MeanFactory` (weighted mean, the algorithms' default) |
| `clipping` | `clipping_factory` around the mean: L2 clip at `clip_norm`, or adaptive (`PrivateQuantileEstimationProcess.no_noise`, towards the `clip_quantile` of update norms, starting at `clip_norm`) |
| `zeroing` | `zeroing_factory`: updates with L2 norm above `zeroing_norm` (or an adaptive estimate: 2 x the 0.98 quantile + 1, TFF's default) are zeroed |
| `dp` | client-level DP, `DifferentiallyPrivateFactory.gaussian_fixed` (clip at `clip_norm`) or `.gaussian_adaptive` (adaptive clipping), noise multiplier `noise_multiplier`, the noise drawn from `seed` (`tf_fedscale.dp_noise`); unweighted mean (`as_weighted_aggregator`) |
| `secure` | `tff.learning.secure_aggregator`: the weighted mean with both sums through `SecureSumFactory` (adaptive bound); simulated (`simulate_secure_sum`: the same integer sums in the clear, since TFF's C++ runtime has no secure intrinsics) |
| `quantize` | `EncodedSumFactory` with tensor_encoding's uniform quantization to `quantization_bits` bits (stochastic rounding, its draws seeded: `SeededQuantizationStage`), bit-packed, inside the weighted mean (like `tff.learning.compression_aggregator`, but every float tensor is quantized) |
| `topk` | `EncodedSumFactory` with a top-k sparsification stage (`SparsifyEncodingStage` below: indices and values of the `sparsify_fraction` largest-magnitude entries); TFF ships no top-k or random-k encoder, only threshold sparsification (`SplitBySmallValueEncodingStage`, variable size) |
| `randk` | the same with `sparsify_fraction` of the entries chosen at random, values scaled by size / k (unbiased) |

Every random draw comes from `seed` (`tf_fedscale.seeding`): the DP noise from
a counter in the aggregator state, the rounding of `quantize` and the choice of
`randk` from the run seed and the bytes of the tensor encoded (so each client
in each round draws its own, and equal inputs draw equal values).

Upload size: for the compressing aggregators, a client's upload is the
serialized size (`tf.io.serialize_tensor`, like `tf_fedscale.payload`) of the
encoded tensors the encoder really produces for each trainable tensor, plus
the scalar weight (`Aggregator.upload_nbytes`); `algorithms.payload_bytes`
turns it into the (download, upload) pair the simulation hands the latency
accountant, so compression really shortens rounds. Quantized values are
bit-packed by tensor_encoding 28 bits per int32 word, which the size counts.

Epsilon (`tf_fedscale.privacy`): client-level (epsilon, delta)-DP of the run
so far, composed round by round from the draw each round really made
(for adaptive clipping, TFF's `noise_multiplier` is already the effective
total one).
"""

import collections
import dataclasses
import math
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from tf_fedscale import dp_noise
from tf_fedscale import payload
from tf_fedscale import seeding

AGGREGATORS = ('mean', 'clipping', 'zeroing', 'dp', 'secure', 'quantize', 'topk',
               'randk')

EncoderFn = Callable[[tf.TensorSpec], Any]  # spec -> te GatherEncoder


SPARSIFY_METHODS = ('top', 'random')


class _EncodedValuesStage(te.core.EncodingStageInterface):
  """What this module's stages share: they compress `ENCODED_VALUES_KEY` and
  do not commute with summation."""

  ENCODED_VALUES_KEY = 'values'

  @property
  def compressible_tensors_keys(self):
    return [self.ENCODED_VALUES_KEY]

  @property
  def commutes_with_sum(self):
    return False


@te.core.tf_style_encoding_stage
class SparsifyEncodingStage(_EncodedValuesStage):
  """Keeps k entries of a rank-1 tensor and sends (indices, values).

  k = ceil(fraction x size), fixed per tensor, so the encoded size is known
  before training. 'top': the k largest magnitudes (biased, no error
  feedback). 'random': k entries chosen uniformly, values scaled by size / k
  so the decoded update is unbiased; the choice is seeded by stream `key` and
  the tensor's bytes (`seeding.content_seed`), so runs replay exactly and
  clients and rounds choose differently.
  Decoding scatters the values back into zeros.
  """

  ENCODED_INDICES_KEY = 'indices'

  def __init__(self, fraction: float, method: str = 'top', key: int = 0):
    if not 0.0 < fraction <= 1.0:
      raise ValueError(f'fraction must be in (0, 1], got {fraction}.')
    if method not in SPARSIFY_METHODS:
      raise ValueError(f'method must be one of {SPARSIFY_METHODS}, got {method!r}.')
    self._fraction = fraction
    self._method = method
    self._key = key

  @property
  def name(self):
    return f'{self._method}_k'

  @property
  def decode_needs_input_shape(self):
    return True

  def get_params(self):
    return collections.OrderedDict(), collections.OrderedDict()

  def encode(self, x, encode_params):
    del encode_params
    size = x.shape.num_elements()
    k = max(1, math.ceil(self._fraction * size))
    if self._method == 'top':
      _, indices = tf.math.top_k(tf.abs(x), k=k, sorted=False)
      values = tf.gather(x, indices)
    else:
      scores = tf.random.stateless_uniform([size], seeding.content_seed(self._key, x),
                                           alg='philox')
      _, indices = tf.math.top_k(scores, k=k, sorted=False)
      values = tf.gather(x, indices) * tf.cast(size / k, x.dtype)
    return collections.OrderedDict([
        (self.ENCODED_INDICES_KEY, indices),
        (self.ENCODED_VALUES_KEY, values),
    ])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands
    indices = tf.expand_dims(encoded_tensors[self.ENCODED_INDICES_KEY], 1)
    return tf.scatter_nd(indices, encoded_tensors[self.ENCODED_VALUES_KEY],
                         tf.cast(shape, tf.int32))


@te.core.tf_style_encoding_stage
class SeededQuantizationStage(_EncodedValuesStage):
  """Uniform quantization to `bits` over the tensor's [min, max] with
  stochastic rounding, as tensor_encoding's `UniformQuantizationEncodingStage`
  (same encoded tensors and keys), but its rounding draws seeded by stream
  `key` and the tensor's bytes (`seeding.content_seed`); tensor_encoding's
  stage draws them unseeded. A value rounds up with probability equal to its
  fractional part, so the decoded tensor is unbiased."""

  ENCODED_VALUES_KEY = 'quantized_values'
  MIN_MAX_VALUES_KEY = 'min_max'
  MAX_INT_VALUE_PARAMS_KEY = 'max_value'

  def __init__(self, bits: int, key: int):
    if not 1 <= bits <= 16:
      raise ValueError(f'bits must be in [1, 16], got {bits}.')
    self._bits = bits
    self._key = key

  @property
  def name(self):
    return 'seeded_uniform_quantization'

  @property
  def decode_needs_input_shape(self):
    return False

  def get_params(self):
    params = collections.OrderedDict([(self.MAX_INT_VALUE_PARAMS_KEY, 2**self._bits - 1)])
    return params, params

  def encode(self, x, encode_params):
    min_x, max_x = tf.reduce_min(x), tf.reduce_max(x)
    max_value = tf.cast(encode_params[self.MAX_INT_VALUE_PARAMS_KEY], x.dtype)
    scaled = tf.compat.v1.div_no_nan(x - min_x, max_x - min_x) * max_value
    floor = tf.floor(scaled)
    uniform = tf.random.stateless_uniform(tf.shape(x), seeding.content_seed(self._key, x),
                                          dtype=x.dtype, alg='philox')
    return collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, floor + tf.cast(uniform < scaled - floor, x.dtype)),
        (self.MIN_MAX_VALUES_KEY, tf.stack([min_x, max_x])),
    ])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del num_summands, shape
    quantized = encoded_tensors[self.ENCODED_VALUES_KEY]
    min_x, max_x = tf.unstack(encoded_tensors[self.MIN_MAX_VALUES_KEY])
    max_value = tf.cast(decode_params[self.MAX_INT_VALUE_PARAMS_KEY], quantized.dtype)
    return quantized / max_value * (max_x - min_x) + min_x


def _flattened(composer: te.core.EncoderComposer) -> te.core.Encoder:
  """The encoder of `composer`'s stages applied to the flattened tensor."""
  return composer.add_parent(te.stages.FlattenEncodingStage(),
                             te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY).make()


def sparsify_encoder(fraction: float, method: str = 'top', key: int = 0) -> te.core.Encoder:
  """Flatten, then keep `fraction` of the entries ('top' or 'random', whose
  choice draws from stream `key`)."""
  return _flattened(te.core.EncoderComposer(SparsifyEncodingStage(fraction, method, key)))


def quantization_encoder(bits: int, key: int) -> te.core.Encoder:
  """Flatten, quantize to `bits` (rounding drawn from stream `key`), bit-pack:
  tensor_encoding's `uniform_quantization` with the seeded stage."""
  return _flattened(te.core.EncoderComposer(te.stages.BitpackingEncodingStage(bits))
                    .add_parent(SeededQuantizationStage(bits, key),
                                SeededQuantizationStage.ENCODED_VALUES_KEY))


def _encoder_fn(make_encoder: Callable[[], Any]) -> EncoderFn:
  """Encodes every float tensor with more than one element; others go as is."""

  def encoder_fn(spec: tf.TensorSpec):
    if spec.dtype.is_floating and spec.shape.num_elements() > 1:
      return te.encoders.as_gather_encoder(make_encoder(), spec)
    return te.encoders.as_gather_encoder(te.encoders.identity(), spec)

  return encoder_fn


@dataclasses.dataclass(frozen=True)
class Aggregator:
  """A model-update aggregator, what it costs to upload, and its privacy."""

  name: str
  factory: tff.aggregators.WeightedAggregationFactory
  encoder_fn: Optional[EncoderFn] = None  # compression: what clients send
  noise_multiplier: Optional[float] = None  # DP

  @property
  def is_private(self) -> bool:
    return self.noise_multiplier is not None

  def prepare_process(self, process: tff.learning.templates.LearningProcess
                      ) -> tff.learning.templates.LearningProcess:
    """`process` made runnable here (secure sum: see `simulate_secure_sum`)."""
    return simulate_secure_sum(process) if self.name == 'secure' else process

  def prepare_computation(self, comp: tff.Computation) -> tff.Computation:
    """`comp` (which aggregates with `factory`) made runnable here."""
    return secure_sums_in_the_clear(comp) if self.name == 'secure' else comp

  def upload_nbytes(self, trainable: Any) -> int:
    """Bytes one client uploads for an update shaped like `trainable`, plus its weight."""
    weight = payload.serialized_nbytes(tf.constant(0.0))
    if self.encoder_fn is None:
      return payload.serialized_nbytes(trainable) + weight
    return sum(encoded_nbytes(self.encoder_fn, t)
               for t in tf.nest.flatten(trainable)) + weight


def simulate_secure_sum(process: tff.learning.templates.LearningProcess
                        ) -> tff.learning.templates.LearningProcess:
  """`process` with TFF's secure-sum intrinsics replaced by plain sums.

  TFF's C++ runtime cannot execute `federated_secure_sum_bitwidth` ("Cannot
  embed a federated value"); `tff.backends.test.replace_secure_intrinsics_with_bodies`
  rewrites them into the same integer sums done in the clear. Everything the
  `SecureSumFactory` does to the values (clipping to the bound, quantizing to
  integers, the modular range) is kept, so the model sees exactly what secure
  aggregation would give; the cryptography and its extra traffic are not
  simulated.
  """
  replace = secure_sums_in_the_clear
  return tff.learning.templates.LearningProcess(
      replace(process.initialize), replace(process.next),
      process.get_model_weights, process.set_model_weights,
      get_hparams_fn=process.get_hparams, set_hparams_fn=process.set_hparams)


def secure_sums_in_the_clear(comp: tff.Computation) -> tff.Computation:
  """`comp` with its secure-sum intrinsics done as plain integer sums (same
  type signature, Python container types kept); see `simulate_secure_sum`."""
  return tff.framework.ConcreteComputation.with_type(
      tff.backends.test.replace_secure_intrinsics_with_bodies(comp), comp.type_signature)


def encoded_nbytes(encoder_fn: EncoderFn, value: Any) -> int:
  """Serialized size of what `encoder_fn`'s encoder sends for `value`."""
  value = tf.convert_to_tensor(value)
  encoder = encoder_fn(tf.TensorSpec(value.shape, value.dtype))
  encode_params, _, _ = encoder.get_params(encoder.initial_state())
  encoded, _ = encoder.encode(value, encode_params)
  return payload.serialized_nbytes(encoded)


def _adaptive_norm(initial: float, quantile: float):
  return tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
      initial_estimate=initial, target_quantile=quantile, learning_rate=0.2)


def build_aggregator(
    name: str, *, clients_per_round: int = 1, clip_norm: float = 1.0,
    adaptive_clipping: bool = False, clip_quantile: float = 0.5,
    zeroing_norm: float = 0.0, noise_multiplier: float = 1.0,
    quantization_bits: int = 8, sparsify_fraction: float = 0.1, seed: int = 0,
) -> Aggregator:
  """The aggregator `name` (see the module docstring for each parameter's role;
  `seed`: the run seed every random draw derives from)."""
  if name not in AGGREGATORS:
    raise ValueError(f'Unknown aggregator {name!r}; choose from {AGGREGATORS}.')
  if not clip_norm > 0:
    raise ValueError(f'clip_norm must be positive, got {clip_norm}.')
  if not 0.0 < clip_quantile < 1.0:
    raise ValueError(f'clip_quantile must be in (0, 1), got {clip_quantile}.')
  mean = tff.aggregators.MeanFactory()
  if name == 'mean':
    return Aggregator(name, mean)
  if name == 'clipping':
    norm = _adaptive_norm(clip_norm, clip_quantile) if adaptive_clipping else clip_norm
    return Aggregator(name, tff.aggregators.clipping_factory(norm, mean))
  if name == 'zeroing':
    if zeroing_norm < 0:
      raise ValueError(f'zeroing_norm must be >= 0, got {zeroing_norm}.')
    norm = zeroing_norm or tff.aggregators.PrivateQuantileEstimationProcess.no_noise(
        initial_estimate=10.0, target_quantile=0.98, learning_rate=math.log(10.0),
        multiplier=2.0, increment=1.0)
    return Aggregator(name, tff.aggregators.zeroing_factory(norm, mean))
  if name == 'dp':
    if not noise_multiplier >= 0:
      raise ValueError(f'noise_multiplier must be >= 0, got {noise_multiplier}.')
    factory = (dp_noise.gaussian_adaptive(noise_multiplier, clients_per_round,
                                          clip_norm, clip_quantile, seed)
               if adaptive_clipping else
               dp_noise.gaussian_fixed(noise_multiplier, clients_per_round, clip_norm,
                                       seed))
    return Aggregator(name, tff.aggregators.as_weighted_aggregator(factory),
                      noise_multiplier=noise_multiplier)
  if name == 'secure':
    # TFF's own configuration: the bound on each (weighted) coordinate adapts to
    # 2x the 0.95 quantile, estimated with secure sums too.
    return Aggregator(name, tff.learning.secure_aggregator(
        zeroing=False, clipping=False, weighted=True))
  if name == 'quantize':
    if not 1 <= quantization_bits <= 16:
      raise ValueError(f'quantization_bits must be in [1, 16], got {quantization_bits}.')
    key = seeding.stream_key(seed, 'quantize')
    encoder_fn = _encoder_fn(lambda: quantization_encoder(quantization_bits, key))
  else:  # topk, randk
    if not 0.0 < sparsify_fraction <= 1.0:
      raise ValueError(f'sparsify_fraction must be in (0, 1], got {sparsify_fraction}.')
    method = 'top' if name == 'topk' else 'random'
    key = seeding.stream_key(seed, 'randk')
    encoder_fn = _encoder_fn(lambda: sparsify_encoder(sparsify_fraction, method, key))
  return Aggregator(name, tff.aggregators.MeanFactory(
      tff.aggregators.EncodedSumFactory(encoder_fn)), encoder_fn=encoder_fn)
