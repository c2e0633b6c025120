"""tfds (a prepared TFDS data dir, Dirichlet partition) and synthetic: the
model builds, and one federated round lowers the loss."""

import os
import shutil

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import registry
from tests import cases
from tests import fixtures


class TfdsSyntheticRoundTest(cases.TaskRoundTestCase):

  def test_tfds_dirichlet(self):
    data = os.path.join(self.root, 'tfds')
    fixtures.write_tfds(data)
    task = self.build('tfds', data, options='name=toy_images,partition=dirichlet,'
                      'num_clients=6,alpha=0.5')
    self.assertLen(task.train_data.client_ids, 6)
    self.assertEqual(task.train_data.element_type_structure[0],
                     tf.TensorSpec((8, 8, 3), tf.float32))
    self.assert_round_lowers_loss(task)
    shutil.rmtree(data)

  def test_synthetic(self):
    task = registry.build_task('synthetic', '', 0, options='num_clients=12', min_samples=60)
    self.assertTrue(np.all(task.num_train_examples >= 60))
    self.assert_round_lowers_loss(task)


if __name__ == '__main__':
  absltest.main()
