"""Tests for tf_fedscale.engine.memory_recycling: baselines and growth."""

import os
from unittest import mock

from absl.testing import absltest

from tf_fedscale.engine import memory_recycling


class GrowthWatchTest(absltest.TestCase):

  def test_rss_of_this_process(self):
    self.assertGreater(memory_recycling.rss_bytes(os.getpid()), 1 << 20)
    self.assertIsNone(memory_recycling.rss_bytes(None))
    self.assertGreaterEqual(memory_recycling.rss_bytes(os.getpid(), 'VmHWM'),
                            memory_recycling.rss_bytes(os.getpid()) - (1 << 20))
    self.assertGreater(memory_recycling.cpu_seconds(os.getpid()), 0)
    self.assertIsNone(memory_recycling.cpu_seconds(None))
    retired = memory_recycling.retire(os.getpid())
    self.assertEqual(retired.pid, os.getpid())
    self.assertGreater(retired.peak_rss_bytes, 1 << 20)

  def test_growth_past_the_baseline(self):
    rss = {1: iter([100, 110, 120, 130, 140]), 2: iter([100, 100, 100, 100, 100])}
    with mock.patch.object(memory_recycling, 'RECYCLE_WINDOW', 2), mock.patch.object(
        memory_recycling, 'rss_bytes', lambda pid: next(rss[pid])):
      watch = memory_recycling.GrowthWatch(0.15)
      self.assertEqual(watch.look([1, 2]), [])  # baselines 100, 100
      self.assertEqual(watch.look([1, 2]), [])  # baselines 110, 100
      self.assertEqual(watch.look([1, 2]), [])  # 120 is 9 % over 110
      self.assertEqual(watch.look([1, 2]),
                       [memory_recycling.Grown(1, 130, 110)])
      watch.forget(1)
      self.assertEqual(watch.look([1, 2]), [])  # 140 starts a new baseline

  def test_off(self):
    self.assertEqual(memory_recycling.GrowthWatch(0).look([os.getpid()] * 20), [])
    with self.assertRaisesRegex(ValueError, '-0.1'):
      memory_recycling.GrowthWatch(-0.1)


if __name__ == '__main__':
  absltest.main()
