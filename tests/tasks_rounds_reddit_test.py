"""reddit in both FedScale layouts (JSON, per-user text files): clients, counts,
vocabulary, and one federated round lowering the loss."""

import os
import pickle

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import reddit
from tests import cases
from tests import fixtures


class RedditTest(cases.TaskRoundTestCase):

  def test_json_layout_round(self):
    data = os.path.join(self.root, 'json')
    ids = fixtures.write_reddit_json(data, {'train': [5, 4, 6], 'test': [2, 2]})
    task = self.build('reddit', data)
    self.assertEqual(task.train_data.client_ids, ids['train'])
    np.testing.assert_array_equal(task.num_train_examples, [5, 4, 6])
    spec = tf.TensorSpec((20,), tf.int32)
    self.assertEqual(task.train_data.element_type_structure, (spec, spec))
    self.assert_round_lowers_loss(task)

  def test_text_files_and_pickled_vocabulary(self):
    data = os.path.join(self.root, 'text')
    ids = fixtures.write_reddit_text(data, {'train': [100, 80, 130], 'test': [50]})
    task = self.build('reddit', data, options='seq_len=9')
    self.assertEqual(task.train_data.client_ids, ids['train'])
    np.testing.assert_array_equal(task.num_train_examples, [10, 8, 13])   # n // 10
    x, _ = next(iter(task.train_data.create_tf_dataset_for_client(ids['train'][0])))
    self.assertNotIn(0, x.numpy().tolist())   # full windows, no padding
    with open(os.path.join(data, 'reddit_vocab.pkl'), 'wb') as f:
      pickle.dump(['the', 'cat', 'sat'], f)
    task = self.build('reddit', data, options='seq_len=9')
    x, _ = next(iter(task.train_data.create_tf_dataset_for_client(ids['train'][0])))
    self.assertEqual(x.numpy()[:3].tolist(), [1, 2, 3])   # the cat sat
    self.assertEqual(task.keras_model_fn().output_shape, (None, None, 7))
    with open(os.path.join(data, 'reddit_vocab.pkl'), 'wb') as f:
      pickle.dump(np.array([1]), f)
    with self.assertRaises(pickle.UnpicklingError):
      reddit.read_vocab_pickle(os.path.join(data, 'reddit_vocab.pkl'), 10)


if __name__ == '__main__':
  absltest.main()
