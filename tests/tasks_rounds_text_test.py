"""stackoverflow_nwp, stackoverflow_tag (TFF SQLite + count files) and amazon
(FedScale layout, inline text): elements, and one federated round lowering the
loss; and every text task's targets inside its model's outputs."""

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

  def test_token_id_targets_lie_inside_the_models_outputs(self):
    """Text targets are ids from the task's own vocabulary (pad, words, oov,
    bos, eos), so no input can put one outside the model's outputs: checked
    over every training example, with vocabularies small enough for oov."""
    def write(writer, name, *args):
      data = os.path.join(self.root, name)
      getattr(fixtures, writer)(data, *args)
      return data
    for name, data, options in (
        ('stackoverflow_nwp', write('write_tff_stackoverflow', 'so'), 'vocab_size=3'),
        ('shakespeare', write('write_leaf_shakespeare', 'leaf_sh'), 'seq_len=20'),
        ('shakespeare', write('write_tff_shakespeare', 'tff_sh'), 'seq_len=20'),
        ('reddit', write('write_reddit_json', 'rj', {'train': [3, 2], 'test': [1]}),
         'vocab_size=4'),
        ('reddit', write('write_reddit_text', 'rt', {'train': [40, 30], 'test': [25]}),
         'vocab_size=4,seq_len=5'),
        ('amazon', write('write_fedscale_amazon', 'am', {'train': [4, 3], 'test': [2]}),
         'vocab_size=3,num_classes=5')):
      with self.subTest(f'{name} {os.path.basename(data)}'):
        task = self.build(name, data, options=options)
        outputs = task.keras_model_fn().output_shape[-1]
        targets = np.concatenate([
            np.reshape(y, -1) for c in task.train_data.client_ids
            for _, y in task.train_data.create_tf_dataset_for_client(c).as_numpy_iterator()])
        self.assertGreaterEqual(targets.min(), 0)
        self.assertLess(targets.max(), outputs)


if __name__ == '__main__':
  absltest.main()
