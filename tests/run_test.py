"""End-to-end tests of `python -m tf_fedscale.experiments.run`: a run, bad input, signals."""

import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from absl.testing import absltest
from absl.testing import parameterized

from tests import cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--rounds=2', '--clients_per_round=5', '--eval_every=1',
         '--eval_clients=10', '--local_epochs=0', '--local_steps=2']


def _env(marker: str = 'unused') -> dict[str, str]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_FEDSCALE_TEST_MARKER=marker)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.run', *args],
                        cwd=ROOT, env=_env(), capture_output=True, text=True,
                        timeout=600)


class RunTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.output_dir = os.path.join(
        self.enterContext(tempfile.TemporaryDirectory()), 'out')

  def test_run_writes_metrics(self):
    result = _run(f'--output_dir={self.output_dir}', *SMALL)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(self.output_dir, 'metrics.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r['round'] for r in rows], ['0', '1', '2'])
    for column in ('virtual_time_s', 'round_duration_s', 'selected', 'completed',
                   'dropped', 'train_loss', 'eval_accuracy'):
      self.assertIn(column, rows[0])
    self.assertEqual(rows[2]['completed'], '5')
    self.assertGreater(float(rows[2]['virtual_time_s']), float(rows[1]['virtual_time_s']))
    self.assertIn('eval accuracy', result.stdout)

  @parameterized.named_parameters(
      ('unknown_task', ['--task=imagenet'], "--task: unknown value 'imagenet'"),
      ('unknown_algorithm', ['--algorithm=sgd'], "--algorithm: unknown value 'sgd'"),
      ('zero_rounds', ['--rounds=0'], '--rounds: must be a positive integer, got 0'),
      ('negative_lr', ['--client_lr=-1'], '--client_lr: must be a positive number'),
      ('too_many_clients', ['--clients_per_round=100000'],
       '--clients_per_round: 100000 exceeds the'),
      ('missing_config', ['--config=/nonexistent/cfg.py'], '--config:'),
      ('async_algorithm', ['--mode=async', '--algorithm=fedprox'],
       '--algorithm: --mode=async takes one of'),
      ('negative_recycle', ['--worker_recycle_growth=-1'],
       '--worker_recycle_growth: must be >= 0'),
      ('both_local_work', ['--local_steps=5', '--local_epochs=1'],
       'set exactly one of --local_steps and --local_epochs'),
  )
  def test_bad_input_exits_2_with_one_line(self, args, message):
    result = _run(f'--output_dir={self.output_dir}', *args)
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    error_lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    self.assertLen(error_lines, 1, result.stderr[-2000:])
    self.assertIn(message, error_lines[0])
    self.assertFalse(os.path.exists(self.output_dir))

  def test_unreadable_config_file(self):
    path = os.path.join(os.path.dirname(self.output_dir), 'bad_config.py')
    with open(path, 'w') as f:
      f.write('def get_config(:\n')
    result = _run(f'--config={path}', f'--output_dir={self.output_dir}')
    self.assertEqual(result.returncode, 2)
    self.assertIn('--config: cannot load', result.stderr)

  def test_existing_results_are_not_overwritten(self):
    os.makedirs(self.output_dir)
    metrics = os.path.join(self.output_dir, 'metrics.csv')
    with open(metrics, 'w') as f:
      f.write('precious\n')
    result = _run(f'--output_dir={self.output_dir}', '--rounds=0')
    self.assertEqual(result.returncode, 2)
    result = _run(f'--output_dir={self.output_dir}', *SMALL)
    self.assertEqual(result.returncode, 2)
    self.assertIn('--output_dir', result.stderr)
    self.assertIn('--overwrite', result.stderr)
    with open(metrics) as f:
      self.assertEqual(f.read(), 'precious\n')

  @parameterized.named_parameters(
      ('sigint', signal.SIGINT), ('sigterm', signal.SIGTERM), ('sigkill', signal.SIGKILL))
  def test_no_worker_survives_a_signal(self, signum):
    marker = f'tf_fedscale_test_{uuid.uuid4().hex}'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tf_fedscale.experiments.run', f'--output_dir={self.output_dir}',
         '--rounds=1000', '--clients_per_round=5', '--eval_clients=10',
         '--execution=local'],  # the default (auto) trains in this process
        cwd=ROOT, env=_env(marker), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
      for line in proc.stdout:
        if line.startswith('round    1/'):
          break
      self.assertTrue(cases.worker_pids_with_env(marker), 'no worker started')
      proc.send_signal(signum)
      proc.wait(timeout=60)
    finally:
      proc.kill()
      proc.wait()
    deadline = time.monotonic() + 10
    while cases.worker_pids_with_env(marker) and time.monotonic() < deadline:
      time.sleep(0.1)
    self.assertEmpty(cases.worker_pids_with_env(marker))


if __name__ == '__main__':
  absltest.main()
