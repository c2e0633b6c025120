"""Tests for tf_fedscale.seeding."""

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import random_seed  # pylint: disable=g-direct-tensorflow-import

from absl.testing import absltest

from tf_fedscale import seeding


def _model() -> tf.keras.Model:
  return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])


class SeedingTest(absltest.TestCase):

  def test_same_seed_same_weights_other_seed_differs(self):
    a = seeding.initial_model_weights(_model, 1)
    b = seeding.initial_model_weights(_model, 1)
    c = seeding.initial_model_weights(_model, 2)
    np.testing.assert_array_equal(a.trainable[0], b.trainable[0])
    self.assertFalse(np.array_equal(a.trainable[0], c.trainable[0]))
    self.assertIsInstance(a.trainable[0], np.ndarray)

  def test_leaves_no_global_seed(self):
    seeding.initial_model_weights(_model, 3)
    self.assertEqual(random_seed.get_seed(5)[0], random_seed.DEFAULT_GRAPH_SEED)


if __name__ == '__main__':
  absltest.main()
