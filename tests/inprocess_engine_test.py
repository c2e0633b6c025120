"""Tests for tf_fedscale.engine.inprocess_engine: the same rounds as the TFF worker."""

import tensorflow as tf

# Two logical CPU devices for inprocess:2, before TensorFlow starts (when this
# module is the first to run TensorFlow; otherwise the engine uses threads).
try:
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices('CPU')[0],
      [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
  pass

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl.testing import absltest
import numpy as np
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from tests import cases
from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale import asynchronous
from tf_fedscale.engine import compositions
from tf_fedscale.engine import execution
from tf_fedscale.engine import inprocess_engine
from tf_fedscale.engine import worker_pool
from tf_fedscale import feedback
from tf_fedscale import local_work
from tf_fedscale import oort
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale.tasks import synthetic

CLIENTS = ['0', '3', '5', '8', '11']
# (algorithm, aggregator): every algorithm with the mean, the aggregators with
# FedAvg. Random draws must be alike in both engines: `dp` draws its noise
# from the run seed and a counter in its state, so both engines add the same;
# quantization rounds deterministically here (its stochastic rounding is seeded
# by each update's bytes, which the engines compute alike only up to float
# rounding).
CASES = (('fedavg', 'mean'), ('fedprox', 'mean'), ('fedyogi', 'mean'),
         ('fedsgd', 'mean'), ('mime-lite', 'mean'), ('qffl', 'mean'),
         ('fedavg', 'clipping'), ('fedavg', 'dp'),
         ('fedavg', 'quantize_deterministic'), ('fedavg', 'topk'), ('fedavg', 'secure'))
TOLERANCE = 1e-5
# In-process weights must agree with TFF's worker as closely as TFF's own
# result agrees with itself when the clients come in another order (TFF's
# rounding sensitivity, measured per case), or to a few float32 ulps of the
# weights' scale where that order changes nothing.
SENSITIVITY_FACTOR = 10
ULP_FLOOR = 1e-6
# FedBuff (aggregator, selector): clipping with Oort on the losses the clients
# report, and secure (its buffered weights are client inputs of the form).
ASYNC_CASES = (('clipping', 'oort'), ('secure', 'uniform'))
ASYNC_STEPS = 4


class InProcessEngineTest(cases.NoWorkerLeftTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=20, seed=3)
    # Deterministic client data: a shuffling pipeline reshuffles on each pass,
    # and Mime Lite and q-FFL pass twice, so even two worker runs would differ.
    cls.data = cls.task.train_data.preprocess(lambda d: d.take(40).batch(10))

  def _process(self, algorithm: str, aggregator: str, simulate_secure: bool):
    model_fn = self.task.model_fn()
    if aggregator == 'quantize_deterministic':  # `quantize`, rounding not random
      factory = tff.aggregators.MeanFactory(tff.aggregators.EncodedSumFactory(
          aggregators._encoder_fn(  # pylint: disable=protected-access
              lambda: te.encoders.uniform_quantization(8, stochastic=False))))
      agg = None
    else:
      agg = aggregators.build_aggregator(aggregator, clients_per_round=len(CLIENTS),
                                         noise_multiplier=0.5, seed=7)
      factory = agg.factory
    process = algorithms.build_process(algorithm, model_fn, client_lr=0.05,
                                       server_lr=0.5, model_aggregator=factory)
    if agg is not None and simulate_secure:
      process = agg.prepare_process(process)
    return compositions.compose(self.data.dataset_computation, process)

  def _round(self, composed, state, clients=tuple(CLIENTS)):
    output = composed.next(state, list(clients))
    weights = composed.get_model_weights(output.state)
    return [np.asarray(w) for w in weights.trainable], output.metrics

  def test_same_model_as_the_worker(self):
    reference = {}
    with worker_pool.WorkerPool('local'):
      for algorithm, aggregator in CASES:
        composed = self._process(algorithm, aggregator, simulate_secure=True)
        state = composed.initialize()
        weights, metrics = self._round(composed, state)
        reordered, _ = self._round(composed, state, reversed(CLIENTS))
        sensitivity = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, reordered))
        tolerance = max(SENSITIVITY_FACTOR * sensitivity, ULP_FLOOR)
        reference[algorithm, aggregator] = (state, weights, metrics, tolerance)
    for spec in ('inprocess', 'inprocess:2'):
      with execution.build(spec) as engine:
        self.assertIsInstance(engine, inprocess_engine.InProcessEngine)
        self.assertLen(engine.devices, 1 if spec == 'inprocess' else 2)
        for algorithm, aggregator in CASES:
          with self.subTest(spec=spec, algorithm=algorithm, aggregator=aggregator):
            # `secure` runs its real secure-sum parts here.
            composed = self._process(algorithm, aggregator, simulate_secure=False)
            state, weights, metrics, tolerance = reference[algorithm, aggregator]
            got_weights, got_metrics = self._round(composed, state)
            moved = max(float(np.max(np.abs(w - s))) for w, s in zip(
                weights, composed.get_model_weights(state).trainable))
            self.assertGreater(moved, 10 * tolerance)  # the round changed the model
            for a, b in zip(weights, got_weights):
              np.testing.assert_allclose(b, a, atol=tolerance, rtol=0)
            self.assertEqual(tf.nest.flatten(tf.nest.map_structure(lambda _: 0, metrics)),
                             tf.nest.flatten(tf.nest.map_structure(lambda _: 0, got_metrics)))
            self.assertEqual(list(metrics), list(got_metrics))  # named, in order
            for a, b in zip(tf.nest.flatten(metrics), tf.nest.flatten(got_metrics)):
              np.testing.assert_allclose(np.asarray(b, np.float64),
                                         np.asarray(a, np.float64), rtol=1e-4, atol=1e-5)
            if aggregator == 'secure':
              runner = engine.context.round_runner(compositions.parts_of(composed.next).next)
              self.assertTrue(runner.has_secure_sums)
        self.assertEmpty(engine.context.fallback_reasons)
        self.assertEmpty(engine.stats().worker_pids)  # no TFF worker was needed

  def _async_steps(self, aggregator: str, selector: str
                   ) -> tuple[list[np.ndarray], list[dict], list[tuple], list[np.ndarray]]:
    """(model, step records, update rows, reported squared losses) after
    `ASYNC_STEPS` FedBuff steps on the current engine; clients 0-4 are 10x
    slower, so their updates arrive stale."""
    model_fn = self.task.model_fn()
    if selector == 'oort':
      model_fn = feedback.loss_reporting_model_fn(
          model_fn, feedback.keras_per_example_loss(self.task.loss_fn), num_slots=1)
    pop = cases.always_online_population(self.task,
                                         np.where(np.arange(20) < 5, 10.0, 1.0))
    sim = asynchronous.AsyncSimulation(
        model_fn, tff.learning.optimizers.build_sgdm(0.1),
        tff.learning.optimizers.build_sgdm(1.0), self.task.train_data, pop,
        oort.OortSelector(4) if selector == 'oort' else selection.UniformSelector(4),
        accounting.LatencyAccountant(pop, clients_per_round=4),
        local_work.LocalWork(batch_size=5, local_steps=3),
        asynchronous.AsyncConfig(4, 2, max_staleness=1), seed=0,
        initial_model_weights=seeding.initial_model_weights(self.task.keras_model_fn, 0),
        aggregator=aggregators.build_aggregator(aggregator, clients_per_round=2))
    state, records, rows, losses = sim.initialize(), [], [], []
    for _ in range(ASYNC_STEPS):
      state, result = sim.run_round(state)
      records.append({k: v for k, v in result.metrics.items() if k != 'wall_clock_s'})
      rows.extend(result.client_rows)
      losses.append(result.feedback.loss_sq_sum)
    return sim.model_weights(state.process_state).trainable, records, rows, losses

  def test_async_server_steps_same_as_the_worker(self):
    reference = {}
    with worker_pool.WorkerPool('local'):
      for case in ASYNC_CASES:
        reference[case] = self._async_steps(*case)
    for spec in ('inprocess', 'inprocess:2'):
      with execution.build(spec) as engine:
        for case in ASYNC_CASES:
          with self.subTest(spec=spec, case=case):
            weights, records, rows, losses = reference[case]
            got_weights, got_records, got_rows, got_losses = self._async_steps(*case)
            for a, b in zip(weights, got_weights):
              np.testing.assert_allclose(b, a, atol=TOLERANCE, rtol=0)
            self.assertEqual(got_rows, rows)  # who trained, when, how stale, its fate
            self.assertGreater(max(r['staleness_max'] for r in records), 0)
            for record, got in zip(records, got_records):
              self.assertEqual(list(got), list(record))
              for key, value in record.items():
                np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5,
                                           err_msg=key)
            for a, b in zip(losses, got_losses):
              np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
            if case[1] == 'oort':
              self.assertTrue(np.isfinite(np.concatenate(losses)).any())
        self.assertEmpty(engine.context.fallback_reasons)
        self.assertEmpty(engine.stats().worker_pids)  # no TFF worker was needed


if __name__ == '__main__':
  absltest.main()
