"""stackoverflow_nwp, stackoverflow_tag (TFF SQLite + count files) and amazon
(FedScale layout, inline text): elements, and one federated round lowering the
loss."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tests import cases
from tests import fixtures


class TextRoundTest(cases.TaskRoundTestCase):

  def test_stackoverflow_nwp(self):
    data = os.path.join(self.root, 'so')
    users = fixtures.write_tff_stackoverflow(data)
    task = self.build('stackoverflow_nwp', data, options='vocab_size=8,max_elements=7')
    self.assertEqual(task.train_data.client_ids, users)
    np.testing.assert_array_equal(task.num_train_examples, [6, 7, 7])
    self.assertLen(list(task.train_data.create_tf_dataset_for_client(users[2])), 7)
    x, y = next(iter(task.train_data.create_tf_dataset_for_client(users[0])))
    # [bos] how to sort a list in python [eos]: 'in' is word 7; 'python' 2.
    self.assertEqual(x.numpy()[:3].tolist(), [10, 5, 6])
    self.assertEqual(y.numpy()[:8].tolist(), [5, 6, 1, 3, 4, 7, 2, 11])
    self.assertEqual(task.keras_model_fn().output_shape, (None, None, 12))
    self.assert_round_lowers_loss(task)

  def test_stackoverflow_tag(self):
    data = os.path.join(self.root, 'so')
    users = fixtures.write_tff_stackoverflow(data)
    task = self.build('stackoverflow_tag', data, options='vocab_size=11,num_tags=5')
    x, y = next(iter(task.train_data.create_tf_dataset_for_client(users[0])))
    self.assertAlmostEqual(float(tf.reduce_sum(x)), 1.0, places=5)
    self.assertEqual(y.numpy().tolist(), [1.0, 0.0, 1.0, 0.0, 0.0])   # python|list
    self.assert_round_lowers_loss(task, client_lr=1.0)
    with self.assertRaisesRegex(FileNotFoundError, 'stackoverflow.tag_count'):
      os.remove(os.path.join(data, 'stackoverflow.tag_count'))
      self.build('stackoverflow_tag', data)

  def test_amazon(self):
    data = os.path.join(self.root, 'amazon')
    ids = fixtures.write_fedscale_amazon(data, {'train': [6, 5, 7], 'test': [2, 2]})
    task = self.build('amazon', data, options='seq_len=16')
    self.assertEqual(task.train_data.client_ids, ids['train'])
    self.assertEqual(task.train_data.element_type_structure,
                     (tf.TensorSpec((16,), tf.int32), tf.TensorSpec((), tf.int32)))
    self.assert_round_lowers_loss(task, client_lr=0.5)


if __name__ == '__main__':
  absltest.main()
