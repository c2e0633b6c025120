"""emnist (digits) and cifar100 on TFF SQLite fixture files: the model builds,
and one federated round (datasets built in the TFF worker from client ids)
lowers the loss."""

import os

from absl.testing import absltest
import tensorflow as tf

from tests import cases
from tests import fixtures


class VisionRoundTest(cases.TaskRoundTestCase):

  def test_emnist_digits_from_tff_sqlite(self):
    data = os.path.join(self.root, 'tff')
    writers = fixtures.write_tff_emnist(data)
    task = self.build('emnist', data)
    self.assertEqual(task.train_data.client_ids, writers)
    labels = [int(y) for _, y in task.train_data.create_tf_dataset_for_client(writers[0])]
    self.assertTrue(all(0 <= y <= 9 for y in labels))
    self.assertEqual(task.keras_model_fn().output_shape, (None, 10))
    self.assert_round_lowers_loss(task)

  def test_cifar100_from_tff_sqlite(self):
    data = os.path.join(self.root, 'cifar')
    fixtures.write_tff_cifar100(data)
    task = self.build('cifar100', data, model='cnn')
    x_spec, _ = task.train_data.element_type_structure
    self.assertEqual(x_spec, tf.TensorSpec((24, 24, 3), tf.float32))
    self.assert_round_lowers_loss(task, client_lr=0.02)
    full = self.build('cifar100', data, options='crop=32')
    self.assertEqual(full.train_data.element_type_structure[0].shape, (32, 32, 3))


if __name__ == '__main__':
  absltest.main()
