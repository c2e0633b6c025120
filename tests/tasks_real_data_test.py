"""Loads the real federated files of ../shared/datasets through the matching
loaders and checks client and sample counts against each SOURCE.md.

Skips when ../shared is absent, and fails then where $TF_FEDSCALE_REQUIRE_SHARED_DATA
is set (CI); under bazel the datasets are this test's data (@shared, see WORKSPACE).
"""

import json
import os

from absl.testing import absltest
import numpy as np

from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import storage
from tests import cases



class RealDataTest(cases.SharedDataTestCase):
  def leaf_splits(self, name: str):
    return leaf.load(self.dataset(name), self.cache)

  def test_shakespeare_10_roles(self):
    splits = self.leaf_splits('shakespeare_leaf_niid0023_k64')
    self.assertLen(splits['train'], 10)
    self.assertLen(splits['test'], 10)
    self.assertEqual(splits['train'].total_examples, 41_990)
    self.assertEqual((splits['train'].num_examples.min(), splits['train'].num_examples.max()),
                     (823, 13_790))
    # SOURCE.md's 4,671 test samples is the files' declared num_samples; the
    # test user_data hold 3,881 windows (LEAF de-duplicates against train after
    # counting). The loader uses what is held and records the declared totals.
    meta = storage.read_meta(splits['test'].path)
    self.assertEqual(meta['declared_num_samples'], {'train': 41_990, 'test': 4_671})
    self.assertEqual(splits['test'].total_examples, 3_881)

  def test_sent140_test_split(self):
    splits = self.leaf_splits('sent140_leaf_k30_testonly')
    self.assertEqual(list(splits), ['test'])
    test = splits['test']
    self.assertLen(test, 2_875)
    self.assertEqual(test.total_examples, 16_025)
    self.assertEqual((test.num_examples.min(), test.num_examples.max()), (3, 55))
    element = next(test.client_data.create_tf_dataset_for_client(
        test.client_ids[0]).as_numpy_iterator())
    self.assertEqual(element['x'].shape, (6,))   # id, date, query, user, text, flag
    with open(os.path.join(self.dataset('sent140_leaf_k30_testonly'), 'test',
                           'all_data_niid_0_keep_30_test_9.json')) as f:
      raw = json.load(f)
    labels = [y for u in raw['users'] for y in raw['user_data'][u]['y']]
    self.assertEqual((labels.count(1), labels.count(0)), (9_717, 6_308))

  def test_celeba_metadata(self):
    splits = self.leaf_splits('celeba_leaf_metadata')
    self.assertEqual((len(splits['train']), len(splits['test'])), (515, 515))
    self.assertEqual(splits['train'].total_examples, 9_060)
    self.assertEqual(splits['test'].total_examples, 2_399)
    self.assertEqual((splits['train'].num_examples.min(), splits['train'].num_examples.max()),
                     (4, 24))
    self.assertEqual((splits['test'].num_examples.min(), splits['test'].num_examples.max()),
                     (1, 7))
    element = next(splits['train'].client_data.create_tf_dataset_for_client(
        '8909').as_numpy_iterator())
    self.assertEqual(element['x'], b'013006.jpg')

  def test_vehicle_sensor(self):
    train = self.leaf_splits('vehicle_sensor_trainonly')['train']
    self.assertLen(train, 23)
    self.assertEqual(train.total_examples, 1_860)
    self.assertEqual((train.num_examples.min(), train.num_examples.max()), (7, 534))
    labels = np.concatenate([
        [e['y'][0] for e in train.client_data.create_tf_dataset_for_client(c).as_numpy_iterator()]
        for c in train.client_ids])
    self.assertEqual((int(np.sum(labels == 1)), int(np.sum(labels == -1))), (1_023, 837))

  def test_speech_commands_partition(self):
    path = os.path.join(self.dataset('speech_commands_fedscale_partition'),
                        'client_data_mapping.csv')
    mapping = fedscale_csv.read_mapping(path)
    self.assertLen(mapping.client_ids, 2_187)
    self.assertEqual(mapping.num_rows, 103_171)
    counts = mapping.counts()
    self.assertEqual((counts.min(), counts.max()), (16, 316))
    self.assertLen(set(mapping.label_names), 35)
    from tf_fedscale.tasks import google_speech  # pylint: disable=g-import-not-at-top
    (ids,) = fedscale_csv.label_ids_from_names([mapping], google_speech.CLASSES)
    self.assertEqual(ids.max(), 34)


if __name__ == '__main__':
  absltest.main()
