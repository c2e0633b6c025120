"""Tests for tf_fedscale.lr_schedule (FedScale's client learning-rate decay)."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import algorithms
from tf_fedscale.engine import runtime
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import lr_schedule
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic

CLIENTS = ['0', '3', '5']


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


class DecayedLrTest(absltest.TestCase):

  def test_fedscale_schedule_by_hand(self):
    # FedScale: round r trains at max(0.05 x 0.98^floor(r / 10), 5e-5).
    lr = lambda r: lr_schedule.decayed_lr(r, 0.05, 0.98, 10, 5e-5)
    self.assertEqual([lr(r) for r in (1, 9)], [0.05, 0.05])
    self.assertAlmostEqual(lr(10), 0.049)
    self.assertAlmostEqual(lr(19), 0.049)
    self.assertAlmostEqual(lr(25), 0.04802)
    self.assertAlmostEqual(lr(100), 0.05 * 0.98 ** 10)
    # 0.05 x 0.98^k < 5e-5 once k > ln(1000) / -ln(0.98) = 341.9.
    self.assertGreater(lr(3410), 5e-5)
    self.assertEqual(lr(3420), 5e-5)

  def test_rate_below_the_floor_is_kept(self):
    self.assertEqual(lr_schedule.decayed_lr(50, 4e-5, 0.98, 10, 1e-4), 4e-5)

  def test_no_decay(self):
    self.assertEqual(lr_schedule.decayed_lr(1000, 0.1, 1.0, 10, 5e-5), 0.1)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'decay_rounds must be >= 1, got 0'):
      lr_schedule.decayed_lr(1, 0.1, 0.98, 0, 0.0)
    with self.assertRaisesRegex(ValueError, r'decay_factor must be in \(0, 1\], got 1.5'):
      lr_schedule.decayed_lr(1, 0.1, 1.5, 10, 0.0)


class ClientLrDecayTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.task = synthetic.build(num_clients=10, seed=3)
    cls.work = local_work_lib.LocalWork(batch_size=10, local_steps=3)

  def _trained(self, process, state):
    composed = simulation.compose_with_client_data(
        process, self.task.train_data.preprocess(self.work.preprocess))
    return composed.get_model_weights(composed.next(state, CLIENTS).state)

  def test_sets_the_rate_the_process_trains_at(self):
    process = algorithms.build_process('fedavg', self.task.model_fn(), 0.1, 1.0)
    hook = lr_schedule.ClientLrDecay(process, 0.1, 0.5, 2, 0.0)
    state = process.initialize()
    self.assertIsNone(hook.on_round_start(1, 0.0, state))  # round 1: 0.1 already
    state = hook.on_round_start(2, 0.0, state)  # 0.1 x 0.5
    self.assertAlmostEqual(
        float(process.get_hparams(state)['client_work']['learning_rate']), 0.05)
    # Training at the decayed rate is training a process built with it.
    reference = algorithms.build_process('fedavg', self.task.model_fn(), 0.05, 1.0)
    got = self._trained(process, state)
    want = self._trained(reference, reference.set_model_weights(
        reference.initialize(), process.get_model_weights(state)))
    for a, b in zip(got.trainable, want.trainable):
      np.testing.assert_allclose(a, b, rtol=1e-6)

  def test_which_algorithms_have_a_client_rate(self):
    supported = {name: lr_schedule.supports_client_lr(
        algorithms.build_process(name, self.task.model_fn(), 0.1, 1.0))
        for name in algorithms.ALGORITHMS}
    self.assertEqual(sorted(n for n, ok in supported.items() if ok),
                     sorted(lr_schedule.DECAYABLE_ALGORITHMS))


if __name__ == '__main__':
  absltest.main()
