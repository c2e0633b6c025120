"""`--execution=remote:...` over `python -m tf_fedscale.engine.worker` on loopback ports."""

import os
import subprocess
import sys
import time
import uuid

from absl.testing import absltest
import numpy as np
import portpicker
import tensorflow_federated as tff

from tests import cases
from tf_fedscale.engine import runtime
from tf_fedscale.engine import worker_pool
from tf_fedscale import local_work
from tf_fedscale import simulation
from tf_fedscale.tasks import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = synthetic.build(num_clients=30, max_examples=200)
WORK = local_work.LocalWork(batch_size=10, local_steps=3)
COHORT = [str(i) for i in range(10)]


def _process():
  process = tff.learning.algorithms.build_weighted_fed_avg(
      TASK.model_fn(),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.05),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
  return simulation.compose_with_client_data(
      process, TASK.train_data.preprocess(WORK.preprocess))


def _weights(process, state):
  return [np.asarray(w) for w in process.get_model_weights(state).trainable]


class RemoteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.marker = f'tf_fedscale_test_{uuid.uuid4().hex}'
    self.env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
                    **{cases.MARKER_ENV: self.marker})
    self.env['PYTHONPATH'] = ROOT + os.pathsep + self.env.get('PYTHONPATH', '')
    self.servers = []

  def tearDown(self):
    for server in self.servers:
      if server.poll() is None:
        server.kill()
      server.wait()
    self.assertEmpty(cases.worker_pids_with_env(self.marker),
                     'a worker outlived its test')
    super().tearDown()

  def _start_worker(self, *flags, stderr=subprocess.DEVNULL):
    port = portpicker.pick_unused_port()
    server = subprocess.Popen(
        [sys.executable, '-m', 'tf_fedscale.engine.worker', f'--port={port}', *flags],
        cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr,
        preexec_fn=runtime._die_with_parent)  # pylint: disable=protected-access
    self.servers.append(server)
    return server, f'localhost:{port}'

  def _wait_serving(self, address):
    deadline = time.monotonic() + 60
    while not runtime.probe(address, 1.0):
      self.assertLess(time.monotonic(), deadline, f'{address} never served')

  def test_remote_workers_match_local_and_survive_a_dead_worker(self):
    core = min(os.sched_getaffinity(0))
    (first, a), (second, b) = (self._start_worker(f'--device=CPU:{core}'),
                               self._start_worker())
    for address in (a, b):
      self._wait_serving(address)
    # The module execs TFF's worker binary, pinned as asked.
    with open(f'/proc/{first.pid}/cmdline', 'rb') as f:
      self.assertIn(b'worker_binary', f.read())
    with open(f'/proc/{first.pid}/status') as f:
      self.assertIn(f'Cpus_allowed_list:\t{core}\n', f.read())

    process = _process()
    with worker_pool.WorkerPool('local'):
      state = process.initialize()
      local = process.next(state, COHORT).state
      local_weights = _weights(process, local)

    with worker_pool.WorkerPool(f'remote:{a},{b}', health_timeout_s=2.0) as pool:
      self.assertEqual(pool.workers, [])  # nothing started locally
      remote = pool.call(process.next, state, COHORT).state
      for x, y in zip(local_weights, _weights(process, remote)):
        np.testing.assert_allclose(x, y, atol=1e-5)

      first.kill()
      first.wait()
      with self.assertLogs(level='WARNING') as logs:
        again = pool.call(process.next, state, COHORT, description='round 1').state
      self.assertEqual(pool.pool, [b])
      self.assertIn(f'remote worker {a} is unreachable; dropped it', '\n'.join(
          logs.output))
      for x, y in zip(local_weights, _weights(process, again)):
        np.testing.assert_allclose(x, y, atol=1e-5)

      second.kill()
      second.wait()
      with self.assertRaisesRegex(RuntimeError, 'every remote worker failed'):
        pool.call(process.next, state, COHORT)

  def test_worker_flags_are_checked(self):
    server, _ = self._start_worker('--device=TPU:0', stderr=subprocess.PIPE)
    _, stderr = server.communicate(timeout=60)
    self.assertEqual(server.returncode, 2)
    self.assertIn('error: --device:', stderr.decode())


if __name__ == '__main__':
  absltest.main()
