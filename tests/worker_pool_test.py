"""Tests for tf_fedscale.engine.worker_pool: pinning, lifecycle, what is retried."""

import os

from absl.testing import absltest
import tensorflow as tf
import tensorflow_federated as tff

from tests import cases
from tf_fedscale.engine import placement
from tf_fedscale.engine import worker_pool


def _environ(pid):
  with open(f'/proc/{pid}/environ', 'rb') as f:
    return dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)


def _allowed_cpus(pid):
  with open(f'/proc/{pid}/status') as f:
    for line in f:
      if line.startswith('Cpus_allowed_list:'):
        return line.split(':', 1)[1].strip()
  return None


class WorkerPoolTest(cases.NoWorkerLeftTestCase):

  def test_workers_pinned_to_devices(self):
    # The pip worker is CPU-only: CUDA_VISIBLE_DEVICES naming absent GPUs is
    # ignored, so GPU pinning is checked in the environment each worker got.
    with worker_pool.WorkerPool('workers:2', worker_devices='GPU:0,GPU:1') as pool:
      envs = [_environ(w.pid) for w in pool.workers]
      self.assertEqual([e.get(b'CUDA_VISIBLE_DEVICES') for e in envs],
                       [b'0', b'1'])
      self.assertEqual([e.get(cases.MARKER_ENV.encode()) for e in envs],
                       [self.marker.encode()] * 2)

      @tff.tensorflow.computation(tf.int32)
      def add_one(x):
        return x + 1

      self.assertEqual(add_one(1), 2)
    cpus = sorted(os.sched_getaffinity(0))
    with worker_pool.WorkerPool('workers:2') as pool:
      allowed = [_allowed_cpus(w.pid) for w in pool.workers]
      expected = [p.cpus for p in placement.plan_placements(2, (), cpus)]
      self.assertEqual(
          allowed, [f'{c[0]}' if len(c) == 1 else f'{c[0]}-{c[-1]}' for c in expected])
      if 'MALLOC_ARENA_MAX' not in os.environ:  # one arena per core of the share
        self.assertEqual(
            [_environ(w.pid).get(b'MALLOC_ARENA_MAX') for w in pool.workers],
            [str(max(2, len(c))).encode() for c in expected])

  def test_non_worker_errors_are_not_retried(self):
    with worker_pool.WorkerPool('local') as pool:
      calls = []

      def fail():
        calls.append(1)
        raise ValueError('a bug, not a worker')

      with self.assertRaisesRegex(ValueError, 'a bug'):
        pool.call(fail)
      self.assertLen(calls, 1)
      self.assertEmpty(pool.events)

    @tff.tensorflow.computation(tf.int32)
    def add_one(x):
      return x + 1

    with self.assertRaisesRegex(RuntimeError, 'No tf_fedscale engine serves'):
      add_one(1)

if __name__ == '__main__':
  absltest.main()
