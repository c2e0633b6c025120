"""DP-FedAvg's aggregators with their Gaussian noise drawn from the run seed.

TFF's `DifferentiallyPrivateFactory.gaussian_fixed` / `.gaussian_adaptive`
add noise through tensorflow_privacy's `GaussianSumQuery`, which draws it with
an unseeded `tf.random_normal_initializer`: every run, and every resumed run,
gets other noise. The factories here are the same queries (same clipping, same
noise scale, same adaptive-clipping estimator, same DP events) whose noise is
drawn with TF's stateless RNG from a seed kept in the query's global state:
`[stream key, draw counter]`, the counter advanced by one every aggregation.
The seed is part of the aggregator state, hence of the process state and its
checkpoints: a retried round adds the same noise, a resumed run the noise of
the uninterrupted one.

The noise is a function of `--seed`: anyone who has the seed can remove it.
These runs simulate the mechanism; a deployment would draw its noise from a
secret source.
"""

import collections

import dp_accounting
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp
from tensorflow_federated.python.aggregators import differential_privacy

from tf_fedscale import seeding


def _next_seed(seed: tf.Tensor) -> tf.Tensor:
  return seed + tf.constant([0, 1], tf.int64)


class SeededGaussianSumQuery(tfp.GaussianSumQuery):
  """`GaussianSumQuery` whose noise comes from `noise_seed` in its global state."""

  _GlobalState = collections.namedtuple('_GlobalState',
                                        ['l2_norm_clip', 'stddev', 'noise_seed'])

  def __init__(self, l2_norm_clip: float, stddev: float, key: int):
    super().__init__(l2_norm_clip, stddev)
    self._key = key

  def make_global_state(self, l2_norm_clip, stddev, noise_seed=None):
    """The parent's state plus the noise seed (the stream's first draw when
    not given)."""
    if noise_seed is None:
      noise_seed = seeding.stateless_seed(self._key, 0)
    return self._GlobalState(tf.cast(l2_norm_clip, tf.float32),
                             tf.cast(stddev, tf.float32), noise_seed)

  def get_noised_result(self, sample_state, global_state):
    """The sum plus N(0, stddev^2) per entry (each tensor its own stream),
    the next draw's seed, and the parent's DP event."""
    leaves = tf.nest.flatten(sample_state)
    noised = [
        v + tf.random.stateless_normal(
            tf.shape(v),
            tf.random.experimental.stateless_fold_in(global_state.noise_seed, i,
                                                     alg='philox'),
            stddev=tf.cast(global_state.stddev, v.dtype), dtype=v.dtype, alg='philox')
        for i, v in enumerate(leaves)]
    event = dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
    return (tf.nest.pack_sequence_as(sample_state, noised),
            global_state._replace(noise_seed=_next_seed(global_state.noise_seed)), event)


class SeededQuantileEstimatorQuery(tfp.QuantileEstimatorQuery):
  """`QuantileEstimatorQuery` whose count of records below the estimate is
  noised by a `SeededGaussianSumQuery` (stream `key`)."""

  def __init__(self, *args, key: int, **kwargs):
    self._key = key  # read by the parent's __init__ through the method below
    super().__init__(*args, **kwargs)

  def _construct_below_estimate_query(self, below_estimate_stddev, expected_num_records):
    return tfp.NormalizedQuery(
        SeededGaussianSumQuery(0.5, below_estimate_stddev, self._key),
        denominator=expected_num_records)


class SeededAdaptiveClipSumQuery(tfp.QuantileAdaptiveClipSumQuery):
  """`QuantileAdaptiveClipSumQuery` with seeded value noise (stream `value_key`)
  and seeded clipped-count noise (stream `count_key`)."""

  def __init__(self, initial_l2_norm_clip: float, noise_multiplier: float,
               target_unclipped_quantile: float, learning_rate: float,
               clipped_count_stddev: float, expected_num_records: float,
               value_key: int, count_key: int):
    super().__init__(initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile,
                     learning_rate, clipped_count_stddev, expected_num_records,
                     geometric_update=True)
    self._sum_query = SeededGaussianSumQuery(
        initial_l2_norm_clip, noise_multiplier * initial_l2_norm_clip, value_key)
    self._quantile_estimator_query = SeededQuantileEstimatorQuery(
        initial_l2_norm_clip, target_unclipped_quantile, learning_rate,
        clipped_count_stddev, expected_num_records, geometric_update=True,
        key=count_key)

  def get_noised_result(self, sample_state, global_state):
    """The parent's result; the parent rebuilds the value query's state from
    the new clip alone, so the seed is carried on here."""
    result, new_state, event = super().get_noised_result(sample_state, global_state)
    sum_state = new_state.sum_state._replace(
        noise_seed=_next_seed(global_state.sum_state.noise_seed))
    return result, new_state._replace(sum_state=sum_state), event


def gaussian_fixed(noise_multiplier: float, clients_per_round: float, clip: float,
                   seed: int) -> tff.aggregators.DifferentiallyPrivateFactory:
  """`DifferentiallyPrivateFactory.gaussian_fixed` with noise from `seed`."""
  query = tfp.NormalizedQuery(
      SeededGaussianSumQuery(clip, clip * noise_multiplier,
                             seeding.stream_key(seed, 'dp_noise')),
      denominator=float(clients_per_round))
  return tff.aggregators.DifferentiallyPrivateFactory(query)


def gaussian_adaptive(noise_multiplier: float, clients_per_round: float,
                      initial_l2_norm_clip: float, target_unclipped_quantile: float,
                      seed: int, learning_rate: float = 0.2
                      ) -> tff.aggregators.DifferentiallyPrivateFactory:
  """`DifferentiallyPrivateFactory.gaussian_adaptive` (TFF's split of
  `noise_multiplier` into value and clipped-count noise, geometric updates)
  with noise from `seed`."""
  value_noise_multiplier, clipped_count_stddev = (
      differential_privacy.adaptive_clip_noise_params(
          noise_multiplier, float(clients_per_round)))
  query = SeededAdaptiveClipSumQuery(
      initial_l2_norm_clip, value_noise_multiplier, target_unclipped_quantile,
      learning_rate, clipped_count_stddev, float(clients_per_round),
      value_key=seeding.stream_key(seed, 'dp_noise'),
      count_key=seeding.stream_key(seed, 'dp_clipped_count_noise'))
  return tff.aggregators.DifferentiallyPrivateFactory(
      tfp.NormalizedQuery(query, denominator=float(clients_per_round)))
