"""Tests for tf_fedscale.runtime: managed workers serve TFF and always stop."""

import os
import subprocess
import sys
import textwrap
import time
import uuid

from absl.testing import absltest
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RuntimeTest(absltest.TestCase):

  def test_context_runs_computations_and_stops_its_worker(self):

    @tff.tensorflow.computation(tf.int32)
    def add_one(x):
      return x + 1

    with runtime.local_context() as worker:
      self.assertTrue(worker.is_alive())
      self.assertEqual(add_one(41), 42)
    self.assertFalse(worker.is_alive())

  def test_worker_dies_when_python_is_killed(self):
    marker = f'tf_fedscale_test_{uuid.uuid4().hex}'
    script = textwrap.dedent("""
        import os, signal
        from tf_fedscale import runtime
        runtime.install_local_context()
        print('ready', flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    env = dict(os.environ, TF_FEDSCALE_TEST_MARKER=marker,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-c', script], env=env,
                            capture_output=True, text=True, timeout=300)
    self.assertIn('ready', result.stdout, result.stderr[-2000:])
    deadline = time.monotonic() + 10
    while runtime.worker_pids_with_env(marker) and time.monotonic() < deadline:
      time.sleep(0.1)
    self.assertEmpty(runtime.worker_pids_with_env(marker))

  def test_rejects_zero_workers(self):
    with self.assertRaisesRegex(ValueError, 'num_workers must be >= 1, got 0'):
      runtime.start_local_workers(0)


if __name__ == '__main__':
  absltest.main()
