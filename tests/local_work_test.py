"""Tests for tf_fedscale.local_work."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale import local_work


class LocalWorkTest(absltest.TestCase):

  def test_steps_repeat_data_and_charge_steps_times_batch(self):
    work = local_work.LocalWork(batch_size=4, local_steps=5)
    batches = list(work.preprocess(tf.data.Dataset.range(6)))
    self.assertLen(batches, 5)
    self.assertEqual(sum(len(b) for b in batches), 20)
    np.testing.assert_array_equal(work.samples([6, 0, 100]), [20, 0, 20])

  def test_epochs_charge_every_example(self):
    work = local_work.LocalWork(batch_size=4, local_epochs=2)
    batches = list(work.preprocess(tf.data.Dataset.range(6)))
    self.assertEqual(sum(len(b) for b in batches), 12)
    np.testing.assert_array_equal(work.samples([6, 3]), [12, 6])

  def test_needs_exactly_one_of_steps_and_epochs(self):
    with self.assertRaisesRegex(ValueError, 'exactly one of local_steps and local_epochs'):
      local_work.LocalWork(batch_size=4)
    with self.assertRaisesRegex(ValueError, 'exactly one'):
      local_work.LocalWork(batch_size=4, local_steps=1, local_epochs=1)

  def test_rejects_non_positive_sizes(self):
    with self.assertRaisesRegex(ValueError, 'batch_size must be >= 1, got 0'):
      local_work.LocalWork(batch_size=0, local_steps=1)
    with self.assertRaisesRegex(ValueError, 'local_steps must be >= 1, got -2'):
      local_work.LocalWork(batch_size=1, local_steps=-2)


if __name__ == '__main__':
  absltest.main()
