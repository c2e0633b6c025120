"""femnist on LEAF fixture files: clients, specs, size filters, the CNN and
ResNet-18 variants, and one federated round (datasets built in the TFF worker
from client ids) lowering the loss."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tests import cases
from tests import fixtures


class FemnistRoundTest(cases.TaskRoundTestCase):

  def test_femnist_leaf_cnn(self):
    data = os.path.join(self.root, 'femnist')
    writers = fixtures.write_leaf_femnist(data)
    task = self.build('femnist', data)
    self.assertEqual(task.train_data.client_ids, writers)
    self.assertEqual(task.train_data.element_type_structure,
                     (tf.TensorSpec((28, 28, 1), tf.float32), tf.TensorSpec((), tf.int32)))
    np.testing.assert_array_equal(task.num_train_examples, [12, 9, 15, 7])
    self.assertEqual(task.keras_model_fn().count_params(), 1_206_590)
    self.assertEqual(self.build('femnist', data, min_samples=9, max_samples=12)
                     .train_data.client_ids, writers[:2])
    self.assert_round_lowers_loss(task)

  def test_femnist_resnet18_variant(self):
    data = os.path.join(self.root, 'femnist')
    fixtures.write_leaf_femnist(data)
    model = self.build('femnist', data, model='resnet18').keras_model_fn()
    self.assertEqual(model.output_shape, (None, 62))
    self.assertFalse([l for l in model.layers
                      if isinstance(l, tf.keras.layers.BatchNormalization)])


if __name__ == '__main__':
  absltest.main()
