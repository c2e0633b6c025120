"""Loads LEAF FEMNIST from ../shared/datasets (105 writers and the 5-writer
fixture) through the LEAF loader and the femnist task, and checks the counts
against SOURCE.md (Shakespeare, Sent140, CelebA, Vehicle Sensor and Speech
Commands are in tasks_real_data_test.py).

Skips when ../shared is absent, and fails then where $TF_FEDSCALE_REQUIRE_SHARED_DATA
is set (CI); under bazel the datasets are this test's data (@shared, see WORKSPACE).
"""


from absl.testing import absltest
import numpy as np

from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import registry
from tests import cases



class RealFemnistTest(cases.SharedDataTestCase):
  def test_femnist_105_writers(self):
    splits = leaf.load(self.dataset('femnist_leaf_niid005'), self.cache)
    train, test = splits['train'], splits['test']
    self.assertLen(train, 105)
    self.assertLen(test, 105)
    self.assertEqual(set(train.client_ids), set(test.client_ids))
    self.assertEqual(train.total_examples, 14_708)
    self.assertEqual(test.total_examples, 1_685)
    self.assertEqual((train.num_examples.min(), int(np.median(train.num_examples)),
                      train.num_examples.max()), (4, 152, 165))

  def test_femnist_task_on_real_writers(self):
    task = registry.build_task('femnist', self.dataset('femnist_leaf_tiny_fedlab'), 0,
                               cache_dir=self.cache)
    self.assertEqual(task.train_data.client_ids,
                     ['f3797_07', 'f3793_06', 'f3728_28', 'f3687_48', 'f3785_26'])
    np.testing.assert_array_equal(task.num_train_examples, [11, 16, 17, 18, 16])
    test_counts = [sum(1 for _ in task.test_data.create_tf_dataset_for_client(c))
                   for c in task.test_data.client_ids]
    self.assertEqual(test_counts, [19, 17, 19, 18, 16])
    x, y = next(iter(task.train_data.create_tf_dataset_for_client('f3797_07')))
    self.assertEqual(x.shape, (28, 28, 1))
    self.assertAlmostEqual(float(np.max(x)), 1.0)   # white background
    self.assertBetween(int(y), 0, 61)


if __name__ == '__main__':
  absltest.main()
