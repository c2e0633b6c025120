"""Tests for experiments.output_dir: the result-file list, the lock, resume."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import ml_collections

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import output_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = 'round,virtual_time_s,train_loss\n'


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


class OutputDirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def test_overwrite_removes_every_result_file_and_keeps_the_users(self):
    for name in output_dir.RESULT_FILES:
      _write(os.path.join(self.dir, name, 'x') if '.' not in name
             else os.path.join(self.dir, name), 'old\n')
    _write(os.path.join(self.dir, 'notes.txt'), 'mine\n')
    self.assertIn('async_updates.csv', output_dir.existing_results(self.dir))
    self.assertIn('tensorboard', output_dir.existing_results(self.dir))
    with self.assertRaisesRegex(config_util.UsageError, 'pass --overwrite'):
      output_dir.check_new(self.dir, overwrite=False)
    output_dir.check_new(self.dir, overwrite=True)
    output_dir.prepare(self.dir, {'seed': 1})
    self.assertEqual(sorted(os.listdir(self.dir)), ['config.json', 'notes.txt'])

  def test_config_json_is_standard_json(self):
    with self.assertRaises(ValueError):
      output_dir.prepare(self.dir, {'target_accuracy': float('nan')})

  def test_lock_is_exclusive_and_released(self):
    first = output_dir.Lock(self.dir)
    self.assertIsNone(first.acquire())
    with self.assertRaises(output_dir.LockedError) as raised:
      output_dir.Lock(self.dir).acquire()
    self.assertEqual(raised.exception.pid, os.getpid())
    first.release()
    self.assertFalse(os.path.exists(os.path.join(self.dir, output_dir.LOCK_FILE)))
    second = output_dir.Lock(self.dir)
    self.assertIsNone(second.acquire())
    second.release()

  def test_a_killed_holders_lock_is_taken_over(self):
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from tf_fedscale.experiments import output_dir; '
         'output_dir.Lock(sys.argv[1]).acquire(); print("held", flush=True); '
         'time.sleep(600)', self.dir],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2'))
    try:
      self.assertEqual(holder.stdout.readline().strip(), 'held')
      with self.assertRaises(output_dir.LockedError) as raised:
        output_dir.Lock(self.dir).acquire()
      self.assertEqual(raised.exception.pid, holder.pid)
    finally:
      holder.kill()
      holder.wait()
      holder.stdout.close()
    lock = output_dir.Lock(self.dir)
    self.assertEqual(lock.acquire(), holder.pid)
    self.assertEqual(_read(lock.path), f'{os.getpid()}\n')
    lock.release()

  def test_resume_cuts_round_csvs_to_the_checkpoint(self):
    rows = ''.join(f'{r},{10 * r},0.5\n' for r in range(6))
    _write(os.path.join(self.dir, 'metrics.csv'), HEADER + rows + '6,60')
    _write(os.path.join(self.dir, 'wall_clock.csv'), 'round,wall_clock_s\n0,1\n1,2\n')
    output_dir.cut_to_checkpoint(self.dir, 4)
    self.assertEqual(_read(os.path.join(self.dir, 'metrics.csv')),
                     HEADER + ''.join(f'{r},{10 * r},0.5\n' for r in range(5)))
    self.assertEqual(_read(os.path.join(self.dir, 'wall_clock.csv')),
                     'round,wall_clock_s\n0,1\n1,2\n')

  def test_resume_drops_a_row_cut_mid_line_before_the_checkpoint(self):
    _write(os.path.join(self.dir, 'metrics.csv'), HEADER + '0,0,1.0\n1,10,0.9\n2,2')
    with self.assertLogs(level='WARNING') as logs:
      output_dir.cut_to_checkpoint(self.dir, 2)
    self.assertIn('lacks rounds [2]', logs.output[0])
    self.assertEqual(_read(os.path.join(self.dir, 'metrics.csv')),
                     HEADER + '0,0,1.0\n1,10,0.9\n')

  def test_resume_refuses_damaged_files_before_touching_them(self):
    _write(os.path.join(self.dir, 'config.json'), '{"seed": 0}')
    _write(os.path.join(self.dir, 'clients.csv'), 'round,cli')
    with self.assertRaisesRegex(config_util.UsageError, 'clients.csv is cut'):
      output_dir.check_resumable(self.dir, ml_collections.ConfigDict({'seed': 0}))
    _write(os.path.join(self.dir, 'config.json'), '{"seed": ')
    with self.assertRaisesRegex(config_util.UsageError, 'config.json is damaged'):
      output_dir.check_resumable(self.dir, ml_collections.ConfigDict({'seed': 0}))
    self.assertEqual(_read(os.path.join(self.dir, 'clients.csv')), 'round,cli')


if __name__ == '__main__':
  absltest.main()
