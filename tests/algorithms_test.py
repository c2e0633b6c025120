"""Tests for tf_fedscale.algorithms and tf_fedscale.qffl."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import algorithms
from tf_fedscale.engine import runtime
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import optimizers
from tf_fedscale import payload
from tf_fedscale import qffl
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic

CLIENTS = ['0', '3', '5', '8', '11', '14']
SERVER_LR = {'fedadam': 0.05, 'fedyogi': 0.05, 'fedscale-yogi': 0.05, 'fedadagrad': 0.05,
             'fedsgd': 0.5}


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


def _first_50(dataset):
  """Deterministic local data: the same 5 batches on every pass."""
  return dataset.take(50).batch(10)


class AlgorithmsTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=20, seed=3)
    cls.work = local_work_lib.LocalWork(batch_size=10, local_steps=5)
    x, y = [], []
    for c in CLIENTS:
      for xb, yb in cls.task.train_data.create_tf_dataset_for_client(c).batch(1000):
        x.append(xb)
        y.append(yb)
    cls.x, cls.y = tf.concat(x, 0), tf.concat(y, 0)

  def _loss(self, weights):
    model = self.task.keras_model_fn()
    weights.assign_weights_to(model)
    return float(self.task.loss_fn()(self.y, model(self.x)))

  def _run(self, process, rounds=1):
    composed = simulation.compose_with_client_data(
        process, self.task.train_data.preprocess(self.work.preprocess))
    state = composed.initialize()
    for _ in range(rounds):
      output = composed.next(state, CLIENTS)
      state = output.state
    return composed.get_model_weights(state), output.metrics

  @parameterized.parameters(*algorithms.ALGORITHMS)
  def test_a_round_lowers_the_loss(self, name):
    process = algorithms.build_process(name, self.task.model_fn(), 0.1,
                                       SERVER_LR.get(name, 1.0))
    before = self._loss(process.get_model_weights(process.initialize()))
    weights, metrics = self._run(process)
    after = self._loss(weights)
    self.assertAlmostEqual(before, np.log(10), places=5)  # zero-initialized model
    self.assertLess(after, before - 0.05, name)
    self.assertIn('loss', metrics['client_work']['train'])

  def test_qffl_with_q_zero_is_uniformly_weighted_fedavg(self):
    weights, _ = self._run(qffl.build_qffl(self.task.model_fn(), 0.1, 1.0, q=0.0))
    fedavg = tff.learning.algorithms.build_weighted_fed_avg(
        self.task.model_fn(),
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0),
        client_weighting=tff.learning.ClientWeighting.UNIFORM)
    expected, _ = self._run(fedavg)
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        weights.trainable, expected.trainable)

  def test_qffl_update_by_hand(self):
    """One client: the server step is Delta / h = F^q dw / (q F^(q-1) |dw|^2 + L F^q)."""
    q, lr = 2.0, 0.1
    weights, _ = self._run_one_client(qffl.build_qffl(self.task.model_fn(), lr, 1.0, q=q))
    model = self.task.keras_model_fn()
    dataset = _first_50(self.task.train_data.create_tf_dataset_for_client('3'))
    loss_fn = self.task.loss_fn()
    losses, count = 0.0, 0
    for x, y in dataset:
      losses += float(loss_fn(y, model(x))) * len(y)
      count += len(y)
    f = losses / count + 1e-10
    for x, y in dataset:
      with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x))
      for v, g in zip(model.trainable_variables,
                      tape.gradient(loss, model.trainable_variables)):
        v.assign_sub(lr * g)
    dw = [-v.numpy() / lr for v in model.trainable_variables]  # L (w0 - w), w0 = 0
    norm_sq = sum(float(np.sum(d ** 2)) for d in dw)
    h = q * f ** (q - 1) * norm_sq + (1 / lr) * f ** q
    expected = [-(f ** q) * d / h for d in dw]
    for got, want in zip(weights.trainable, expected):
      np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)

  def _run_one_client(self, process):
    composed = simulation.compose_with_client_data(
        process, self.task.train_data.preprocess(_first_50))
    output = composed.next(composed.initialize(), ['3'])
    return composed.get_model_weights(output.state), output.metrics

  def test_user_process_passes_through(self):
    process = tff.learning.algorithms.build_weighted_fed_avg(
        self.task.model_fn(), client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1))
    self.assertIs(algorithms.build_process(process, self.task.model_fn(), 1, 1), process)

  def test_payload_bytes(self):
    model_fn = self.task.model_fn()
    weights = tff.learning.models.ModelWeights.from_model(model_fn())
    down = payload.serialized_nbytes(weights)
    up = payload.serialized_nbytes(weights.trainable) + payload.serialized_nbytes(0.0)
    self.assertEqual(algorithms.payload_bytes('fedavg', model_fn), (down, up))
    trainable = payload.serialized_nbytes(weights.trainable)
    self.assertEqual(algorithms.payload_bytes('mime-lite', model_fn),
                     (down + trainable, 2 * up))

  def test_client_momentum_and_weight_decay(self):
    # FedScale's client optimizer (torch SGD, momentum 0.9, weight decay 5e-4);
    # its steps are checked by hand in optimizers_test.
    process = algorithms.build_process('fedavg', self.task.model_fn(), 0.1, 1.0,
                                       client_momentum=0.9, client_weight_decay=5e-4)
    self.assertIn('momentum', process.get_hparams(process.initialize())['client_work'])
    weights, _ = self._run(process)
    self.assertLess(self._loss(weights), np.log(10) - 0.05)
    with self.assertRaisesRegex(ValueError, 'mime-lite has its own client optimizer'):
      algorithms.build_process('mime-lite', self.task.model_fn(), 0.1, 1.0,
                               client_momentum=0.9)

  def test_rejects_unknown_and_bad_rates(self):
    with self.assertRaisesRegex(ValueError, "Unknown algorithm 'sgd'"):
      algorithms.build_process('sgd', self.task.model_fn(), 0.1, 1.0)
    with self.assertRaisesRegex(ValueError, 'server_lr must be positive'):
      algorithms.build_process('fedavg', self.task.model_fn(), 0.1, 0.0)
    with self.assertRaisesRegex(ValueError, 'q must be >= 0'):
      qffl.build_qffl(self.task.model_fn(), 0.1, q=-1.0)


class ServerOptimizerTest(absltest.TestCase):

  def _steps(self, optimizer, grads):
    weights = tf.constant([1.0, -2.0])
    state = optimizer.initialize(tf.TensorSpec([2], tf.float32))
    out = []
    for g in grads:
      state, weights = optimizer.next(state, weights, tf.constant(g))
      out.append(weights.numpy())
    return out

  def test_fedscale_yogi_tau(self):
    # FedScale's yogi.py, by hand (tau 1e-8 for v_0 and the denominator,
    # beta 0.9 / 0.99, eta 3e-3): v_1 = tau - 0.01 g^2 sign(tau - g^2),
    # w_1 = w_0 - eta (0.1 g) / (sqrt(v_1) + tau).
    tau, eta, g = 1e-8, 3e-3, np.array([0.5, -0.2])
    v1 = tau - 0.01 * g ** 2 * np.sign(tau - g ** 2)
    fedscale_w1 = np.array([1.0, -2.0]) - eta * 0.1 * g / (np.sqrt(v1) + tau)
    opt = algorithms.server_optimizer('fedyogi', eta, algorithms.FEDSCALE_YOGI_TAU,
                                      algorithms.FEDSCALE_YOGI_TAU)
    (w1,) = self._steps(opt, [g.astype(np.float32)])
    # TFF's bias correction sqrt(1 - 0.99^t) / (1 - 0.9^t) is exactly 1 at t = 1.
    np.testing.assert_allclose(w1, fedscale_w1, rtol=1e-5)

  def test_fedscale_yogi_has_one_tau(self):
    self.assertIsInstance(algorithms.server_optimizer('fedscale-yogi', 3e-3, 1e-8),
                          optimizers.FedScaleYogi)
    with self.assertRaisesRegex(ValueError, 'one tau'):
      algorithms.server_optimizer('fedscale-yogi', 3e-3, 1e-8, 1e-16)

  def test_reddi_tau_is_the_default(self):
    # Reddi et al.: tau 1e-3, accumulator tau^2: v_1 = 1e-6 + 0.01 g^2.
    g = np.array([0.5, -0.2])
    v1 = 1e-6 + 0.01 * g ** 2
    want = np.array([1.0, -2.0]) - 0.01 * 0.1 * g / (np.sqrt(v1) + 1e-3)
    (w1,) = self._steps(algorithms.server_optimizer('fedyogi', 0.01),
                        [g.astype(np.float32)])
    np.testing.assert_allclose(w1, want, rtol=1e-5)


if __name__ == '__main__':
  absltest.main()
