"""Tests for tf_fedscale.experiments.dataset_stats."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
from scipy.spatial import distance
import tensorflow as tf

from tf_fedscale.experiments import dataset_stats
from tf_fedscale.tasks import registry
from tests import fixtures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DatasetStatsTest(absltest.TestCase):

  def test_js_distance(self):
    hists = [np.array([4.0, 0.0]), np.array([1.0, 1.0]), np.array([0.0, 2.0, 0.0]),
             np.array([2.0, 0.0])]
    got = dataset_stats.pairwise_js_distance(hists)
    expected = [distance.jensenshannon(np.pad(a, (0, 3 - len(a))) / a.sum(),
                                       np.pad(b, (0, 3 - len(b))) / b.sum(), base=2)
                for i, a in enumerate(hists) for b in hists[i + 1:]]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    self.assertAlmostEqual(got[1], 1.0)   # disjoint supports
    self.assertAlmostEqual(got[2], 0.0)   # same distribution

  def test_label_histograms(self):
    scalar = tf.data.Dataset.from_tensor_slices((tf.zeros([4, 2]), [0, 2, 2, 5]))
    np.testing.assert_array_equal(dataset_stats.label_histogram(scalar), [1, 0, 2, 0, 0, 1])
    tokens = tf.data.Dataset.from_tensor_slices((tf.zeros([2, 3]), [[3, 1, 0], [1, 0, 0]]))
    np.testing.assert_array_equal(dataset_stats.label_histogram(tokens), [0, 2, 0, 1])
    tags = tf.data.Dataset.from_tensor_slices((tf.zeros([2, 1]), [[1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_array_equal(dataset_stats.label_histogram(tags), [2, 1])

  def test_compute_and_plots(self):
    root = self.enterContext(tempfile.TemporaryDirectory())
    fixtures.write_leaf_femnist(root, train_counts=(6, 3, 9, 4))
    task = registry.build_task('femnist', root, 0, cache_dir=os.path.join(root, 'c'))
    stats = dataset_stats.compute(task, max_clients=3, seed=0)
    self.assertEqual((stats['train_clients'], stats['train_samples']), (4, 22))
    self.assertEqual(stats['samples_per_client']['p50'], 5.0)
    self.assertEqual(stats['label_clients_compared'], 3)
    self.assertLen(stats['_distances'], 3)
    written = dataset_stats.plot_cdfs(stats, root)
    self.assertEqual([os.path.basename(p) for p in written],
                     ['sample_counts_cdf.png', 'label_jsd_cdf.png'])
    self.assertIn('4 training clients', dataset_stats.format_stats(stats))

  def test_command_line(self):
    root = self.enterContext(tempfile.TemporaryDirectory())
    data = os.path.join(root, 'data')
    fixtures.write_leaf_shakespeare(data)
    out = os.path.join(root, 'out')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    command = [sys.executable, '-m', 'tf_fedscale.experiments.dataset_stats', '--task=shakespeare',
               f'--cache_dir={root}', f'--output_dir={out}']
    result = subprocess.run(command + [f'--data_dir={data}'], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('3 training clients', result.stdout)
    self.assertIn('pairwise label JS distance', result.stdout)
    with open(os.path.join(out, 'stats.json')) as f:
      self.assertEqual(json.load(f)['train_samples'], 62)
    self.assertTrue(os.path.isfile(os.path.join(out, 'label_jsd_cdf.png')))


if __name__ == '__main__':
  absltest.main()
