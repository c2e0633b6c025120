"""Tests for tf_fedscale.engine.runtime: managed workers serve TFF and always stop."""

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from unittest import mock

from absl.testing import absltest
import tensorflow as tf
import tensorflow_federated as tff

from tests import cases
from tf_fedscale.engine import runtime

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
        from tf_fedscale.engine import runtime
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
    while cases.worker_pids_with_env(marker) and time.monotonic() < deadline:
      time.sleep(0.1)
    self.assertEmpty(cases.worker_pids_with_env(marker))

  def test_import_changes_no_process_wide_state(self):
    script = textwrap.dedent("""
        import atexit, importlib, pkgutil, signal, sys
        calls = []
        def recorder(real):
          def record(*args, **kwargs):
            calls.append(sys._getframe(1).f_globals.get('__name__', '?'))
            return real(*args, **kwargs)
          return record
        atexit.register = recorder(atexit.register)
        signal.signal = recorder(signal.signal)
        import tf_fedscale
        modules = [info.name for info in pkgutil.iter_modules(tf_fedscale.__path__[:1])]
        for name in modules:
          if name != 'worker':  # a binary: its flags are its own business
            importlib.import_module('tf_fedscale.' + name)
        print(len(modules), 'modules; handlers set by:',
              sorted({c for c in calls if c.startswith('tf_fedscale')}))
        """)
    result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    self.assertRegex(result.stdout, r'[1-9]\d modules; handlers set by: \[\]',
                     result.stderr[-2000:])

  def test_library_programs_exit_without_tffs_teardown_traceback(self):
    # TFF's import-time context prints "Exception ignored in
    # ServiceManager.__del__" at the exit of a program that never replaced it;
    # building a Simulation / Checkpointer arranges its release (and a
    # managed context releases it at once, removing that arrangement).
    program = textwrap.dedent("""
        import sys, tempfile
        import tensorflow_federated as tff
        import tf_fedscale
        from tf_fedscale.tasks import synthetic
        from tf_fedscale.traces import default as default_traces
        task = synthetic.build(num_clients=20)
        population = default_traces.population(task.train_data.client_ids,
                                               task.num_train_examples)
        tf_fedscale.Simulation(
            tff.learning.algorithms.build_weighted_fed_avg(
                task.model_fn(), client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1)),
            task.train_data, population, tf_fedscale.UniformSelector(2),
            tf_fedscale.LatencyAccountant(population, clients_per_round=2),
            tf_fedscale.LocalWork(batch_size=10, local_steps=1), seed=0)
        tf_fedscale.Checkpointer(tempfile.mkdtemp(), 1)
        if sys.argv[1] == 'context':
          with tf_fedscale.local_context():
            pass
        print('done', flush=True)
        """)
    for mode in ('no_context', 'context'):
      with self.subTest(mode):
        result = subprocess.run(
            [sys.executable, '-c', program, mode],
            cwd=self.enterContext(tempfile.TemporaryDirectory()),
            env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')),
            capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn('done', result.stdout)
        self.assertNotIn('Traceback', result.stderr)
        self.assertNotIn('Exception ignored', result.stderr)

  def test_exit_hooks_hold_only_while_entered(self):
    original = signal.getsignal(signal.SIGTERM)
    with mock.patch.object(atexit, 'register') as register, \
         mock.patch.object(atexit, 'unregister') as unregister:
      with runtime.exit_hooks():
        with runtime.exit_hooks():
          self.assertIsNot(signal.getsignal(signal.SIGTERM), original)
        self.assertIsNot(signal.getsignal(signal.SIGTERM), original)
        unregister.assert_not_called()
      self.assertIs(signal.getsignal(signal.SIGTERM), original)
    self.assertEqual(register.call_count, 1)
    self.assertEqual(unregister.call_args_list, [mock.call(register.call_args[0][0])])

  def test_exit_hooks_keep_a_handler_the_program_set(self):
    def handler(signum, frame):
      del signum, frame
    previous = signal.signal(signal.SIGTERM, handler)
    try:
      with runtime.exit_hooks():
        self.assertIs(signal.getsignal(signal.SIGTERM), handler)
      self.assertIs(signal.getsignal(signal.SIGTERM), handler)
    finally:
      signal.signal(signal.SIGTERM, previous)

  def test_local_context_restores_the_handlers(self):
    original = signal.getsignal(signal.SIGTERM)
    with runtime.local_context():
      self.assertIsNot(signal.getsignal(signal.SIGTERM), original)
    self.assertIs(signal.getsignal(signal.SIGTERM), original)

  def test_rejects_zero_workers(self):
    with self.assertRaisesRegex(ValueError, 'num_workers must be >= 1, got 0'):
      runtime.start_local_workers(0)


if __name__ == '__main__':
  absltest.main()
