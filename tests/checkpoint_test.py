"""Tests for tf_fedscale.checkpoint and the timeline's resume truncation."""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from tf_fedscale import checkpoint
from tf_fedscale import metrics


class CheckpointTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def test_round_trip_and_schedule(self):
    ckpt = checkpoint.Checkpointer(self.dir, every_rounds=3)
    self.assertEqual([r for r in range(1, 8) if ckpt.due(r, 7)], [3, 6, 7])
    state = {'w': np.arange(4, dtype=np.float32), 'round_num': np.int64(3),
             'clock': {'virtual_time_s': np.float64(12.5)}, 'scores': np.ones(5)}
    ckpt.save(3, state)
    loaded = ckpt.load_latest({'w': np.zeros(4, np.float32), 'round_num': np.int64(0),
                               'clock': {'virtual_time_s': np.float64(0)},
                               'scores': np.zeros(1)})
    self.assertEqual(int(loaded['round_num']), 3)
    self.assertEqual(float(loaded['clock']['virtual_time_s']), 12.5)
    np.testing.assert_array_equal(loaded['w'], state['w'])
    np.testing.assert_array_equal(loaded['scores'], np.ones(5))  # shapes come from the file

  def test_a_write_killed_midway_leaves_the_previous_checkpoint(self):
    ckpt = checkpoint.Checkpointer(self.dir, every_rounds=1)
    state = {'w': np.zeros(2, np.float32)}
    ckpt.save(1, {**state, 'round_num': np.int64(1)})
    # What a kill during TFF's write leaves: a temporary directory, never renamed.
    os.makedirs(os.path.join(self.dir, f'{checkpoint.PREFIX}2_temp1234'))
    self.assertEqual(ckpt.versions(), [1])
    loaded = ckpt.load_latest({**state, 'round_num': np.int64(0)})
    self.assertEqual(int(loaded['round_num']), 1)

  def test_nothing_saved(self):
    self.assertIsNone(checkpoint.Checkpointer(self.dir, 1).load_latest({}))

  def test_rejects_bad_interval(self):
    with self.assertRaisesRegex(ValueError, 'every_rounds must be >= 1, got 0'):
      checkpoint.Checkpointer(self.dir, 0)


class TimelineTruncateTest(absltest.TestCase):

  def test_drops_later_rounds_and_a_half_written_row(self):
    path = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'clients.csv')
    header = ','.join(metrics.TIMELINE_COLUMNS)
    with open(path, 'w') as f:
      f.write(f'{header}\n1,a,completed,0,1,2,3,6,10,5,5\n2,b,completed,6,1,2,3,6,10,5,5\n'
              '3,a,comp')
    metrics.ClientLog(path, metrics.TIMELINE_COLUMNS).truncate_after(1)
    with open(path) as f:
      self.assertEqual(f.read(), f'{header}\n1,a,completed,0,1,2,3,6,10,5,5\n')


if __name__ == '__main__':
  absltest.main()
