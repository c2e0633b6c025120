"""Tests for tf_fedscale.aggregators: DP noise and epsilon, compression, the upload size."""


from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale import availability
from tf_fedscale.engine import runtime
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import payload
from tf_fedscale import population as population_lib
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


def _aggregate(factory, values, weights):
  process = factory.create(tff.TensorType(np.float32, values[0].shape),
                           tff.TensorType(np.float32))
  return process.next(process.initialize(), values, weights).result


class PrivacyTest(absltest.TestCase):

  def test_gaussian_noise_scale(self):
    # Mean of K zero updates: only noise, stddev clip * z / K.
    k, z, clip = 4, 2.0, 0.5
    agg = aggregators.build_aggregator('dp', clients_per_round=k, noise_multiplier=z,
                                       clip_norm=clip)
    result = _aggregate(agg.factory, [np.zeros(40000, np.float32)] * k, [1.0] * k)
    self.assertAlmostEqual(float(np.std(result)), clip * z / k, delta=0.02 * clip * z / k)
    self.assertAlmostEqual(float(np.mean(result)), 0.0, delta=0.01)

  def test_clips_and_ignores_weights(self):
    agg = aggregators.build_aggregator('dp', clients_per_round=2, noise_multiplier=0.0,
                                       clip_norm=1.0)
    big = np.zeros(4, np.float32)
    big[0] = 10.0
    small = np.array([0, 0.5, 0, 0], np.float32)
    result = _aggregate(agg.factory, [big, small], [100.0, 1.0])
    np.testing.assert_allclose(result, [0.5, 0.25, 0, 0], atol=1e-6)  # (clip + small) / 2


class SeededDrawsTest(absltest.TestCase):
  """Every draw comes from the run seed: the same seed draws the same values."""

  def _dp_results(self, seed, adaptive, rounds=2):
    # 40 expected clients: TFF's adaptive clipping needs z < 2 x 0.05 x 40.
    agg = aggregators.build_aggregator('dp', clients_per_round=40, noise_multiplier=1.0,
                                       adaptive_clipping=adaptive, seed=seed)
    process = agg.factory.create(tff.TensorType(np.float32, [500]),
                                 tff.TensorType(np.float32))
    state, results = process.initialize(), []
    for _ in range(rounds):
      output = process.next(state, [np.zeros(500, np.float32)] * 2, [1.0, 1.0])
      state = output.state
      results.append(np.asarray(output.result))
    return results

  def test_dp_noise_replays_from_the_seed_and_differs_per_round(self):
    for adaptive in (False, True):
      first, second = self._dp_results(0, adaptive)
      again = self._dp_results(0, adaptive)
      np.testing.assert_array_equal(again[0], first)
      np.testing.assert_array_equal(again[1], second)
      self.assertLess(abs(np.corrcoef(first, second)[0, 1]), 0.2)
      other = self._dp_results(1, adaptive, rounds=1)[0]
      self.assertLess(abs(np.corrcoef(first, other)[0, 1]), 0.2)

  def test_quantization_rounding_replays_from_the_seed_and_is_unbiased(self):
    x = tf.random.stateless_uniform([1000], [1, 2])
    spec = tf.TensorSpec(x.shape, x.dtype)

    def decoded(seed, value=x):
      encoder = te.encoders.as_simple_encoder(
          aggregators.quantization_encoder(2, seeding.stream_key(seed, 'quantize')), spec)
      return encoder.decode(encoder.encode(value, encoder.initial_state())[0]).numpy()

    first = decoded(0)
    np.testing.assert_array_equal(decoded(0), first)
    self.assertFalse(np.array_equal(decoded(1), first))
    self.assertFalse(np.array_equal(decoded(0, x[::-1])[::-1], first))
    # 2 bits: 4 levels over [min, max]; each entry rounds to a neighbouring
    # level, up with probability equal to its fractional part.
    step = (float(tf.reduce_max(x)) - float(tf.reduce_min(x))) / 3
    self.assertLessEqual(float(np.max(np.abs(first - x.numpy()))), step * (1 + 1e-5))
    mean = np.mean([decoded(seed) for seed in range(200)], axis=0)
    self.assertLess(float(np.max(np.abs(mean - x.numpy()))), 0.4 * step)

  def test_random_k_draws_from_the_seed(self):
    x = tf.reshape(tf.range(1.0, 101.0), [10, 10])
    spec = tf.TensorSpec(x.shape, x.dtype)

    def kept(seed):
      encoder = te.encoders.as_simple_encoder(aggregators.sparsify_encoder(
          0.1, 'random', seeding.stream_key(seed, 'randk')), spec)
      decoded = encoder.decode(encoder.encode(x, encoder.initial_state())[0])
      return set(np.flatnonzero(decoded.numpy()))

    self.assertEqual(kept(0), kept(0))
    self.assertNotEqual(kept(0), kept(1))


class CompressionTest(absltest.TestCase):

  def test_top_k_keeps_the_largest_entries(self):
    x = tf.constant([[0.1, -5.0, 0.2], [3.0, 0.0, -0.3]])
    encoder = te.encoders.as_simple_encoder(aggregators.sparsify_encoder(0.34),
                                            tf.TensorSpec(x.shape, x.dtype))
    state = encoder.initial_state()
    encoded, _ = encoder.encode(x, state)
    values = [t for k, t in encoded.items() if k.endswith('/values')]
    self.assertLen(values, 1)
    self.assertEqual(int(tf.size(values[0])), 3)  # ceil(0.34 x 6)
    np.testing.assert_allclose(encoder.decode(encoded), [[0, -5.0, 0], [3.0, 0, -0.3]])

  def test_random_k_is_unbiased_seeded_by_the_update_and_replays(self):
    x = tf.reshape(tf.range(1.0, 101.0), [10, 10])
    encoder = te.encoders.as_simple_encoder(aggregators.sparsify_encoder(0.1, 'random'),
                                            tf.TensorSpec(x.shape, x.dtype))
    state = encoder.initial_state()
    decoded = encoder.decode(encoder.encode(x, state)[0]).numpy()
    kept = np.flatnonzero(decoded)
    self.assertLen(kept, 10)
    np.testing.assert_allclose(decoded.ravel()[kept], x.numpy().ravel()[kept] * 10)
    np.testing.assert_array_equal(encoder.decode(encoder.encode(x, state)[0]), decoded)
    other = encoder.decode(encoder.encode(x + 0.5, state)[0]).numpy()
    self.assertNotEqual(set(np.flatnonzero(other)), set(kept))
    # Uniform: over 200 different updates each entry is kept about 20 times.
    hits = np.zeros(100)
    for i in range(200):
      hits += encoder.decode(encoder.encode(x + i, state)[0]).numpy().ravel() != 0
    self.assertBetween(hits.min(), 5, 20)
    self.assertBetween(hits.max(), 20, 40)

  def test_upload_size_is_the_encoded_size(self):
    spec = tf.TensorSpec([60, 10], tf.float32)
    agg = aggregators.build_aggregator('quantize', quantization_bits=4)
    encoder = te.encoders.as_gather_encoder(te.encoders.uniform_quantization(4), spec)
    params, _, _ = encoder.get_params(encoder.initial_state())
    encoded, _ = encoder.encode(tf.random.normal([60, 10]), params)
    bitpacked = [t for k, t in encoded.items() if 'bitpacked' in k][0]
    # 600 values x 4 bits, packed 28 bits per int32 word (tensor_encoding's layout).
    self.assertEqual(int(tf.size(bitpacked)), -(-600 * 4 // 28))
    self.assertEqual(aggregators.encoded_nbytes(agg.encoder_fn, tf.zeros([60, 10])),
                     payload.serialized_nbytes(encoded))


class SimulationChargesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=20, seed=3)
    cls.work = local_work_lib.LocalWork(batch_size=5, local_steps=2)
    n = 20
    # Uploads at 1 kbps dominate the round.
    cls.pop = population_lib.Population.build(
        cls.task.train_data.client_ids, cls.task.num_train_examples,
        population_lib.DeviceProfiles.uniform(n, 1.0, 1e5, 1.0),
        availability.AvailabilityTrace.always(n), seed=0)

  def _simulate(self, agg):
    model_fn = self.task.model_fn()
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', model_fn, 0.1, 1.0, model_aggregator=agg.factory))
    sim = simulation.Simulation(
        process, self.task.train_data, self.pop, selection.UniformSelector(3),
        accounting.LatencyAccountant(self.pop, clients_per_round=3), self.work, seed=0,
        payload_bytes=algorithms.payload_bytes('fedavg', model_fn, agg.upload_nbytes))
    _, result = sim.run_round(sim.initialize())
    return result.metrics

  def test_accountant_charges_the_encoded_upload(self):
    agg = aggregators.build_aggregator('quantize', quantization_bits=8)
    record = self._simulate(agg)
    kernel = aggregators.encoded_nbytes(agg.encoder_fn, tf.zeros([60, 10]))
    bias = aggregators.encoded_nbytes(agg.encoder_fn, tf.zeros([10]))
    per_client = kernel + bias + payload.serialized_nbytes(0.0)
    self.assertEqual(record['bytes_up'], 3 * per_client)
    plain = self._simulate(aggregators.build_aggregator('mean'))
    self.assertLess(per_client, plain['bytes_up'] / 3 / 2.5)
    # The round is shorter by exactly the upload time saved (1 kbps, 1 kbit =
    # 1024 bits as FedScale's).
    saved_s = (plain['bytes_up'] / 3 - per_client) * 8 / accounting.BITS_PER_KBIT
    self.assertAlmostEqual(plain['round_duration_s'] - record['round_duration_s'],
                           saved_s, places=6)


class EveryAggregatorTest(parameterized.TestCase):

  @parameterized.parameters(*aggregators.AGGREGATORS)
  def test_runs_a_round(self, name):
    task = synthetic.build(num_clients=20, seed=3)
    work = local_work_lib.LocalWork(batch_size=5, local_steps=2)
    agg = aggregators.build_aggregator(name, clients_per_round=3, adaptive_clipping=True,
                                       noise_multiplier=0.1)
    process = agg.prepare_process(algorithms.build_process(
        'fedavg', task.model_fn(), 0.1, 1.0, model_aggregator=agg.factory))
    composed = simulation.compose_with_client_data(
        process, task.train_data.preprocess(work.preprocess))
    output = composed.next(composed.initialize(), ['1', '2', '3'])
    weights = composed.get_model_weights(output.state).trainable
    self.assertTrue(all(np.isfinite(w).all() for w in weights))
    self.assertGreater(max(float(np.abs(w).max()) for w in weights), 0.0)

  def test_rejects_bad_parameters(self):
    with self.assertRaisesRegex(ValueError, "Unknown aggregator 'median'"):
      aggregators.build_aggregator('median')
    with self.assertRaisesRegex(ValueError, 'quantization_bits must be in'):
      aggregators.build_aggregator('quantize', quantization_bits=0)
    with self.assertRaisesRegex(ValueError, 'sparsify_fraction'):
      aggregators.build_aggregator('topk', sparsify_fraction=1.5)


if __name__ == '__main__':
  absltest.main()
