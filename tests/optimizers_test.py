"""Tests for tf_fedscale.optimizers against hand-computed steps of torch's SGD
and FedScale's yogi.py."""

import math

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import optimizers


def _run(optimizer, weights, gradients):
  """Applies `gradients` (a list of steps) from `weights`; every weight after."""
  weights = [tf.constant(weights, tf.float32)]
  state = optimizer.initialize([tf.TensorSpec(weights[0].shape, tf.float32)])
  path = []
  for g in gradients:
    state, weights = optimizer.next(state, weights, [tf.constant(g, tf.float32)])
    path.append(weights[0].numpy())
  return state, path


class ClientSgdTest(absltest.TestCase):

  def test_matches_torch_sgd_by_hand(self):
    # torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), from w = [1, -2]:
    # step 1: d = [0.5, 0.1] + 0.01 w = [0.51, 0.08]; b = d;
    #         w = w - 0.1 b = [0.949, -2.008]
    # step 2: d = [-0.2, 0.3] + 0.01 w = [-0.19051, 0.27992];
    #         b = 0.9 [0.51, 0.08] + d = [0.26849, 0.35192];
    #         w = w - 0.1 b = [0.922151, -2.043192]
    _, path = _run(optimizers.client_sgd(0.1, momentum=0.9, weight_decay=0.01),
                   [1.0, -2.0], [[0.5, 0.1], [-0.2, 0.3]])
    np.testing.assert_allclose(path[0], [0.949, -2.008], rtol=1e-6)
    np.testing.assert_allclose(path[1], [0.922151, -2.043192], rtol=1e-6)

  def test_weight_decay_without_momentum(self):
    # w = 2 - 0.5 (1 + 0.1 x 2) = 1.4
    _, path = _run(optimizers.client_sgd(0.5, weight_decay=0.1), [2.0], [[1.0]])
    np.testing.assert_allclose(path[0], [1.4], rtol=1e-6)

  def test_defaults_are_plain_sgd(self):
    optimizer = optimizers.client_sgd(0.1)
    state, path = _run(optimizer, [1.0], [[1.0], [1.0]])
    np.testing.assert_allclose(path, [[0.9], [0.8]], rtol=1e-6)
    self.assertEqual(list(state), ['learning_rate'])  # no momentum buffer

  def test_learning_rate_is_a_hparam(self):
    # The client lr decay sets it through get_hparams/set_hparams.
    optimizer = optimizers.client_sgd(0.1, momentum=0.9, weight_decay=0.01)
    state = optimizer.initialize([tf.TensorSpec([1], tf.float32)])
    hparams = optimizer.get_hparams(state)
    self.assertAlmostEqual(float(hparams['learning_rate']), 0.1)
    hparams['learning_rate'] = 0.5
    state = optimizer.set_hparams(state, hparams)
    _, weights = optimizer.next(state, [tf.constant([1.0])], [tf.constant([0.0])])
    np.testing.assert_allclose(weights[0].numpy(), [1.0 - 0.5 * 0.01], rtol=1e-6)

  def test_rejects_bad_values(self):
    with self.assertRaisesRegex(ValueError, 'momentum'):
      optimizers.client_sgd(0.1, momentum=1.0)
    with self.assertRaisesRegex(ValueError, 'weight_decay'):
      optimizers.client_sgd(0.1, weight_decay=-1.0)


class FedScaleYogiTest(absltest.TestCase):

  def test_two_steps_by_hand(self):
    # yogi.py with eta 3e-3, tau 1e-8; the server "gradient" is minus the
    # update d. Step 1, d = 0.2: m = 0.1 x 0.2 = 0.02; v = 1e-8 - 0.01 x 0.04
    # x sign(1e-8 - 0.04) = 0.00040001; w = 1 + 3e-3 x m / (sqrt(v) + 1e-8).
    # Step 2, d = -0.1: m = 0.9 x 0.02 - 0.01 = 0.008; v = 0.00040001 + 0.01 x
    # 0.01 = 0.00050001.
    _, path = _run(optimizers.FedScaleYogi(3e-3, tau=1e-8), [1.0], [[-0.2], [0.1]])
    w1 = 1.0 + 3e-3 * 0.02 / (math.sqrt(0.00040001) + 1e-8)
    w2 = w1 + 3e-3 * 0.008 / (math.sqrt(0.00050001) + 1e-8)
    np.testing.assert_allclose(path[0], [w1], rtol=1e-6)
    np.testing.assert_allclose(path[1], [w2], rtol=1e-6)

  def test_tff_yogi_differs_by_its_bias_correction(self):
    # Same moments; TFF scales the step by sqrt(1 - 0.99^t) / (1 - 0.9^t).
    grads = [[-0.2], [0.1], [-0.3]]
    _, ours = _run(optimizers.FedScaleYogi(3e-3, tau=1e-3), [1.0], grads)
    _, tff_path = _run(tff.learning.optimizers.build_yogi(
        3e-3, beta_2=0.99, epsilon=1e-3, initial_preconditioner_value=1e-3),
                       [1.0], grads)
    for t in (2, 3):
      ratio = ((tff_path[t - 1] - tff_path[t - 2]) / (ours[t - 1] - ours[t - 2]))[0]
      self.assertAlmostEqual(ratio, math.sqrt(1 - 0.99 ** t) / (1 - 0.9 ** t), places=3)

  def test_learning_rate_is_a_hparam(self):
    optimizer = optimizers.FedScaleYogi(3e-3, tau=1e-8)
    state = optimizer.initialize([tf.TensorSpec([1], tf.float32)])
    state = optimizer.set_hparams(state, {'learning_rate': 1e-2})
    self.assertAlmostEqual(float(optimizer.get_hparams(state)['learning_rate']), 1e-2)

  def test_rejects_bad_values(self):
    with self.assertRaisesRegex(ValueError, 'tau'):
      optimizers.FedScaleYogi(3e-3, tau=0.0)
    with self.assertRaisesRegex(ValueError, 'beta_1'):
      optimizers.FedScaleYogi(3e-3, tau=1e-8, beta_1=1.0)


if __name__ == '__main__':
  absltest.main()
