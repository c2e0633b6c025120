"""Tests for experiments.output_dir: the result-file list, the lock, resume."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import ml_collections

from tests import fixtures
from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import output_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = 'round,virtual_time_s,train_loss\n'




class OutputDirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def test_overwrite_removes_every_result_file_and_keeps_the_users(self):
    for name in output_dir.RESULT_FILES:
      fixtures.write_text(os.path.join(self.dir, name, 'x') if '.' not in name
             else os.path.join(self.dir, name), 'old\n')
    fixtures.write_text(os.path.join(self.dir, 'notes.txt'), 'mine\n')
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

  def test_a_lock_that_is_not_a_regular_file_is_refused_and_not_followed(self):
    target = os.path.join(self.dir, 'elsewhere.txt')
    fixtures.write_text(target, 'keep me\n')
    lock_path = os.path.join(self.dir, output_dir.LOCK_FILE)
    dangling = os.path.join(self.dir, 'nothing_here')
    for make in (lambda: os.symlink(target, lock_path),
                 lambda: os.symlink(dangling, lock_path),
                 lambda: os.mkfifo(lock_path), lambda: os.mkdir(lock_path)):
      make()
      with self.assertRaisesRegex(output_dir.NotALockError, 'not a regular file'):
        output_dir.Lock(self.dir).acquire()
      (os.rmdir if os.path.isdir(lock_path) and not os.path.islink(lock_path)
       else os.remove)(lock_path)
    self.assertEqual(fixtures.read_text(target), 'keep me\n')
    self.assertFalse(os.path.lexists(dangling))

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
    self.assertEqual(fixtures.read_text(lock.path), f'{os.getpid()}\n')
    lock.release()

  def _clients(self, text: str) -> None:
    fixtures.write_text(os.path.join(self.dir, 'clients.csv'),
           ','.join(output_dir.metrics.TIMELINE_COLUMNS) + '\n' + text)

  def test_resume_cuts_every_csv_to_the_checkpoint(self):
    rows = ''.join(f'{r},{10 * r},0.5\n' for r in range(6))
    fixtures.write_text(os.path.join(self.dir, 'metrics.csv'), HEADER + rows + '6,60')
    fixtures.write_text(os.path.join(self.dir, 'wall_clock.csv'),
           'round,wall_clock_s\n' + ''.join(f'{r},{r}\n' for r in range(7)))
    self._clients(''.join(f'{r},c{r},completed,0,1,1,1,3,10,5,5\n' for r in range(1, 7)))
    fixtures.write_text(os.path.join(self.dir, 'client_accuracy.csv'), 'client_id\n')
    fixtures.write_text(os.path.join(self.dir, 'metrics.csv.abc12345.tmp'), 'left by a kill')
    self.assertEqual(output_dir.last_intact_round(self.dir)[0], 5)
    self.assertEqual(output_dir.resume_round(self.dir, [2, 4, 6]), 4)
    output_dir.cut_after(self.dir, 4)
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'metrics.csv')),
                     HEADER + ''.join(f'{r},{10 * r},0.5\n' for r in range(5)))
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'wall_clock.csv')),
                     'round,wall_clock_s\n' + ''.join(f'{r},{r}\n' for r in range(5)))
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'clients.csv')).count('completed'), 4)
    self.assertEqual(sorted(os.listdir(self.dir)),
                     ['clients.csv', 'metrics.csv', 'wall_clock.csv'])

  def test_a_row_cut_mid_line_moves_the_resume_before_it(self):
    # round 4's row is cut: resuming from the checkpoint of round 6 would lose it.
    rows = ''.join(f'{r},{10 * r},0.5\r\n' for r in range(4))
    fixtures.write_text(os.path.join(self.dir, 'metrics.csv'),
           HEADER.replace('\n', '\r\n') + rows + '4,4')
    self.assertEqual(output_dir.last_intact_round(self.dir)[0], -1)  # wall_clock.csv missing
    fixtures.write_text(os.path.join(self.dir, 'wall_clock.csv'),
           'round,wall_clock_s\n' + ''.join(f'{r},{r}\n' for r in range(7)))
    with self.assertLogs(level='WARNING') as logs:
      self.assertEqual(output_dir.resume_round(self.dir, [2, 4, 6]), 2)
    self.assertIn('whole through round 3', logs.output[0])
    self.assertIn('metrics.csv: line 6 is cut short', logs.output[0])
    output_dir.cut_after(self.dir, 2)
    with open(os.path.join(self.dir, 'metrics.csv'), 'rb') as f:   # CRLF kept
      self.assertEqual(f.read(), (HEADER + ''.join(
          f'{r},{10 * r},0.5\n' for r in range(3))).replace('\n', '\r\n').encode())

  def test_damaged_client_rows_move_the_resume_before_their_round(self):
    fixtures.write_text(os.path.join(self.dir, 'metrics.csv'),
           HEADER + ''.join(f'{r},{10 * r},0.5\n' for r in range(7)))
    fixtures.write_text(os.path.join(self.dir, 'wall_clock.csv'),
           'round,wall_clock_s\n' + ''.join(f'{r},{r}\n' for r in range(7)))
    row = '{},c,completed,0,1,1,1,3,10,5,5\n'
    for damage, intact in (('\n', 4), ('x' + row[2:], 4), (row.format(3), 4),
                           (row.format(5)[:9], 4), ('\0' + row.format(6), 4),
                           (row.format(6), 6)):
      with self.subTest(damage=damage):
        self._clients(''.join(row.format(r) for r in range(1, 6)) + damage)
        self.assertEqual(output_dir.last_intact_round(self.dir)[0], intact)
    self._clients(row.format(1) + '\n' + row.format(2))
    self.assertIsNone(output_dir.resume_round(self.dir, [2]))
    output_dir.cut_after(self.dir, None)
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'clients.csv')).count('\n'), 1)
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'metrics.csv')), HEADER)

  def test_resume_refuses_damaged_files_before_touching_them(self):
    fixtures.write_text(os.path.join(self.dir, 'config.json'), '{"seed": 0}')
    fixtures.write_text(os.path.join(self.dir, 'clients.csv'), 'round,cli')
    with self.assertRaisesRegex(config_util.UsageError, 'clients.csv is cut'):
      output_dir.check_resumable(self.dir, ml_collections.ConfigDict({'seed': 0}))
    fixtures.write_text(os.path.join(self.dir, 'config.json'), '{"seed": ')
    with self.assertRaisesRegex(config_util.UsageError, 'config.json is damaged'):
      output_dir.check_resumable(self.dir, ml_collections.ConfigDict({'seed': 0}))
    self.assertEqual(fixtures.read_text(os.path.join(self.dir, 'clients.csv')), 'round,cli')


if __name__ == '__main__':
  absltest.main()
