"""shakespeare from LEAF JSON and from TFF's SQLite snippets: elements,
window counts, and one federated round lowering the loss."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import shakespeare
from tests import cases
from tests import fixtures


class ShakespeareRoundTest(cases.TaskRoundTestCase):

  def test_shakespeare_leaf(self):
    data = os.path.join(self.root, 'leaf')
    roles = fixtures.write_leaf_shakespeare(data)
    task = self.build('shakespeare', data)
    self.assertEqual(task.train_data.client_ids, roles)
    spec = tf.TensorSpec((80,), tf.int32)
    self.assertEqual(task.train_data.element_type_structure, (spec, spec))
    x, y = next(iter(task.train_data.create_tf_dataset_for_client(roles[0])))
    np.testing.assert_array_equal(x[1:], y[:-1])   # targets are inputs shifted by one
    self.assertEqual(int(x[0]), shakespeare.VOCAB.tokens.index('T') + 1)
    self.assert_round_lowers_loss(task, client_lr=0.5)

  def test_shakespeare_tff_snippets(self):
    data = os.path.join(self.root, 'tff')
    lengths = fixtures.write_tff_shakespeare(data)
    task = self.build('shakespeare', data)
    for role, count in zip(task.train_data.client_ids, task.num_train_examples):
      windows = list(task.train_data.create_tf_dataset_for_client(role))
      self.assertLen(windows, count)
      self.assertEqual(count, -(-sum(n + 2 for n in lengths[('train', role)]) // 81))
      self.assertEqual(int(windows[0][0][0]), shakespeare.VOCAB.bos)


if __name__ == '__main__':
  absltest.main()
