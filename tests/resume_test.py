"""Runs survive SIGKILL and replay exactly: resume, same-seed equality, refusals."""

import csv
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--rounds=6', '--clients_per_round=5', '--eval_every=2', '--eval_clients=10',
         '--checkpoint_every=2']
DETERMINED = ('metrics.csv', 'clients.csv', 'client_accuracy.csv')


def _env() -> dict[str, str]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.run', *args], cwd=ROOT,
                        env=_env(), capture_output=True, text=True, timeout=600)


def _run_until(line_start: str, signum: int, *args: str,
               then: Callable[[], None] = lambda: None) -> tuple[int, str]:
  """Starts a run; when it prints a line starting with `line_start`, calls
  `then` and sends `signum` (if any); returns (exit status, stderr)."""
  proc = subprocess.Popen(
      [sys.executable, '-m', 'tf_fedscale.experiments.run', *args], cwd=ROOT, env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  stderr = []
  reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
  reader.start()
  try:
    for line in proc.stdout:
      if line.startswith(line_start):
        then()
        if signum:
          proc.send_signal(signum)
        break
    proc.stdout.read()
    proc.wait(timeout=300)
  finally:
    proc.kill()
    proc.wait()
    reader.join()
    proc.stdout.close()
  return proc.returncode, stderr[0]


def _error_lines(stderr: str) -> list[str]:
  return [l for l in stderr.splitlines() if l.startswith('error:')]


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.reference = os.path.join(cls.tmp, 'reference')
    result = _run(f'--output_dir={cls.reference}', *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  def _assert_same_results(self, run_dir):
    for name in DETERMINED:
      self.assertTrue(
          filecmp.cmp(os.path.join(self.reference, name), os.path.join(run_dir, name),
                      shallow=False), f'{name} differs from the uninterrupted run')

  def test_same_seed_same_results_other_seed_differs(self):
    again = os.path.join(self.tmp, 'again')
    self.assertEqual(_run(f'--output_dir={again}', *SMALL).returncode, 0)
    self._assert_same_results(again)
    other = os.path.join(self.tmp, 'other_seed')
    self.assertEqual(_run(f'--output_dir={other}', '--seed=1', *SMALL).returncode, 0)
    self.assertFalse(filecmp.cmp(os.path.join(self.reference, 'clients.csv'),
                                 os.path.join(other, 'clients.csv'), shallow=False))

  def test_sigkill_mid_run_then_resume_gives_the_same_results(self):
    run_dir = os.path.join(self.tmp, 'killed')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tf_fedscale.experiments.run', f'--output_dir={run_dir}', *SMALL],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
      for line in proc.stdout:
        if line.startswith('round    3/'):  # a checkpoint exists (round 2), round 4 is running
          proc.send_signal(signal.SIGKILL)
          break
      proc.wait(timeout=60)
    finally:
      proc.kill()
      proc.wait()
    self.assertEqual(proc.returncode, -signal.SIGKILL)
    self.assertIn('round_2', os.listdir(os.path.join(run_dir, 'checkpoints')))
    result = _run(f'--output_dir={run_dir}', '--resume', *SMALL)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self._assert_same_results(run_dir)

  def test_ctrl_c_before_the_first_checkpoint_then_resume_gives_the_same_results(self):
    run_dir = os.path.join(self.tmp, 'interrupted')
    flags = [*SMALL[:-1], '--checkpoint_every=10']
    status, stderr = _run_until('round    1/', signal.SIGINT, f'--output_dir={run_dir}',
                                *flags)
    self.assertEqual(status, 130, stderr[-3000:])
    self.assertLen(_error_lines(stderr), 1, stderr[-3000:])
    self.assertIn('interrupted (Ctrl-C); continue with --resume', stderr)
    self.assertNotIn('Traceback', stderr)
    self.assertFalse(os.path.exists(os.path.join(run_dir, 'run.lock')))
    result = _run(f'--output_dir={run_dir}', '--resume', *flags)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self._assert_same_results(run_dir)

  def test_sigkill_before_the_first_checkpoint_then_resume_gives_the_same_results(self):
    # The client rows of the rounds run before the kill are not counted twice.
    run_dir = os.path.join(self.tmp, 'killed_early')
    flags = [*SMALL[:-1], '--checkpoint_every=10']
    status, _ = _run_until('round    2/', signal.SIGKILL, f'--output_dir={run_dir}', *flags)
    self.assertEqual(status, -signal.SIGKILL)
    self.assertFalse(os.path.exists(os.path.join(run_dir, 'checkpoints', 'round_2')))
    result = _run(f'--output_dir={run_dir}', '--resume', *flags)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('took over', result.stderr)
    self._assert_same_results(run_dir)

  def test_output_dir_removed_mid_run_is_one_error_line(self):
    run_dir = os.path.join(self.tmp, 'vanishing')
    status, stderr = _run_until('round    1/', 0, f'--output_dir={run_dir}', *SMALL,
                                then=lambda: shutil.rmtree(run_dir))
    self.assertEqual(status, 2, stderr[-3000:])
    errors = _error_lines(stderr)
    self.assertLen(errors, 1, stderr[-3000:])
    self.assertIn('No such file or directory', errors[0])
    self.assertIn('run again', errors[0])   # nothing is left to resume
    self.assertNotIn('Traceback', stderr)

  def test_immutable_metrics_csv_is_one_error_line_and_leaves_no_temporary_file(self):
    run_dir = os.path.join(self.tmp, 'immutable')
    shutil.copytree(self.reference, run_dir)
    metrics = os.path.join(run_dir, 'metrics.csv')
    if subprocess.run(['chattr', '+i', metrics], capture_output=True).returncode:
      self.skipTest('chattr +i is not permitted here')
    try:
      result = _run(f'--output_dir={run_dir}', '--resume', '--rounds=7', *SMALL[1:])
    finally:
      subprocess.run(['chattr', '-i', metrics], check=True)
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    errors = _error_lines(result.stderr)
    self.assertLen(errors, 1, result.stderr[-3000:])
    self.assertIn(f'cannot write {metrics} (Operation not permitted)', errors[0])
    self.assertNotIn('Traceback', result.stderr)
    self.assertEqual([n for n in os.listdir(run_dir) if n.endswith('.tmp')], [])
    self.assertTrue(filecmp.cmp(metrics, os.path.join(self.reference, 'metrics.csv'),
                                shallow=False))

  def test_full_disk_is_one_error_line_and_resume_then_finishes(self):
    # 100 kB hold two checkpoints of this model: the third one fills the disk.
    disk = os.path.join(self.tmp, 'small_disk')
    os.makedirs(disk)
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=100k', 'tmpfs', disk],
                      capture_output=True).returncode:
      self.skipTest('mounting a tmpfs is not permitted here')
    try:
      run_dir = os.path.join(disk, 'run')
      result = _run(f'--output_dir={run_dir}', *SMALL)
      self.assertEqual(result.returncode, 2, result.stderr[-3000:])
      errors = _error_lines(result.stderr)
      self.assertLen(errors, 1, result.stderr[-3000:])
      self.assertIn('No space left on device', errors[0])
      self.assertIn('--resume', errors[0])
      self.assertNotIn('Traceback', result.stderr)
      self.assertEqual(sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))),
                       ['round_2', 'round_4'])
      moved = os.path.join(self.tmp, 'full_disk_moved')
      shutil.copytree(run_dir, moved, symlinks=True)
    finally:
      subprocess.run(['umount', disk], check=True)
    result = _run(f'--output_dir={moved}', '--resume', *SMALL)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self._assert_same_results(moved)

  def test_damaged_rows_move_the_resume_before_them_and_line_endings_are_kept(self):
    # metrics.csv cut inside round 4's row (the newest checkpoint is round 6),
    # a blank line and a bad round in clients.csv, CRLF line endings in clients.csv.
    run_dir = os.path.join(self.tmp, 'damaged')
    shutil.copytree(self.reference, run_dir)
    def edit(name, change):
      path = os.path.join(run_dir, name)
      with open(path, 'rb') as f:
        data = change(f.read())
      with open(path, 'wb') as f:
        f.write(data)
    edit('metrics.csv', lambda b: b[:b.index(b'\r\n4,') + 12])
    edit('clients.csv', lambda b: b.replace(b'\n', b'\r\n'))
    for damage in (b'\r\n', b'x,1,completed,0,0,0,0,0,0,0,0\r\n'):
      edit('clients.csv',
           lambda b, damage=damage: b.replace(b'\r\n5,', b'\r\n' + damage + b'5,', 1))
      result = _run(f'--output_dir={run_dir}', '--resume', *SMALL)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      self.assertIn('from the checkpoint of round', result.stderr)
      self.assertTrue(filecmp.cmp(os.path.join(self.reference, 'metrics.csv'),
                                  os.path.join(run_dir, 'metrics.csv'), shallow=False))
      with open(os.path.join(run_dir, 'clients.csv'), 'rb') as f:
        crlf = f.read()
      with open(os.path.join(self.reference, 'clients.csv'), 'rb') as f:
        self.assertEqual(crlf, f.read().replace(b'\n', b'\r\n'))

  def test_resume_with_other_flags_is_refused_and_checkpoint_untouched(self):
    run_dir = os.path.join(self.tmp, 'refused')
    shutil.copytree(self.reference, run_dir)
    before = sorted(os.listdir(os.path.join(run_dir, 'checkpoints')))
    result = _run(f'--output_dir={run_dir}', '--resume', '--seed=7', '--client_lr=0.5',
                  *SMALL)
    self.assertEqual(result.returncode, 2)
    self.assertIn('--resume: flags differ', result.stderr)
    self.assertIn('--client_lr', result.stderr)
    self.assertIn('--seed', result.stderr)
    self.assertEqual(sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))), before)
    self._assert_same_results(run_dir)

  def test_corrupt_checkpoint_names_the_previous_one(self):
    run_dir = os.path.join(self.tmp, 'corrupt')
    shutil.copytree(self.reference, run_dir)
    newest = os.path.join(run_dir, 'checkpoints', 'round_6')
    for root, _, files in os.walk(newest):
      for name in files:
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'garbage')
    result = _run(f'--output_dir={run_dir}', '--resume', '--rounds=8', *SMALL[1:])
    self.assertEqual(result.returncode, 2)
    error = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    self.assertLen(error, 1, result.stderr[-2000:])
    self.assertIn('checkpoint of round 6 cannot be read', error[0])
    self.assertIn('aside and resume again: it continues from round 4', error[0])

  def test_async_run_continued_with_resume_equals_the_longer_run(self):
    run_async = ['--mode=async', '--max_concurrency=6', '--buffer_size=3', *SMALL[1:]]
    longer = os.path.join(self.tmp, 'async_longer')
    self.assertEqual(_run(f'--output_dir={longer}', '--rounds=6', *run_async).returncode, 0)
    continued = os.path.join(self.tmp, 'async_continued')
    self.assertEqual(_run(f'--output_dir={continued}', '--rounds=4', *run_async).returncode, 0)
    result = _run(f'--output_dir={continued}', '--resume', '--rounds=6', *run_async)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    for name in ('metrics.csv', 'async_updates.csv', 'client_accuracy.csv'):
      self.assertTrue(filecmp.cmp(os.path.join(longer, name),
                                  os.path.join(continued, name), shallow=False), name)

  def test_dp_resume_composes_the_epsilon_from_the_checkpoint(self):
    # The privacy report's state is in the checkpoint: metrics.csv is not read
    # back (its DP columns are blanked before the resume) and the epsilon of
    # rounds 5-6 equals the uninterrupted run's.
    run_dp = ['--aggregator=dp', '--noise_multiplier=0.5', *SMALL[1:]]
    longer = os.path.join(self.tmp, 'dp_longer')
    self.assertEqual(_run(f'--output_dir={longer}', '--rounds=6', *run_dp).returncode, 0)
    continued = os.path.join(self.tmp, 'dp_continued')
    self.assertEqual(_run(f'--output_dir={continued}', '--rounds=4', *run_dp).returncode, 0)
    metrics = os.path.join(continued, 'metrics.csv')
    with open(metrics, newline='') as f:
      rows = list(csv.DictReader(f))
    for row in rows:
      row['dp_population'] = row['dp_sample_size'] = row['epsilon'] = ''
    with open(metrics, 'w', newline='') as f:
      writer = csv.DictWriter(f, list(rows[0]), lineterminator='\n')
      writer.writeheader()
      writer.writerows(rows)
    result = _run(f'--output_dir={continued}', '--resume', '--rounds=6', *run_dp)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    def epsilon(run_dir):
      with open(os.path.join(run_dir, 'metrics.csv'), newline='') as f:
        return {int(r['round']): r['epsilon'] for r in csv.DictReader(f)}
    expected, resumed = epsilon(longer), epsilon(continued)
    self.assertGreater(float(expected[6]), float(expected[4]))
    self.assertEqual([resumed[r] for r in (5, 6)], [expected[r] for r in (5, 6)])

  def test_report_files_are_written(self):
    report = os.path.join(self.reference, 'report')
    for name in ('summary.md', 'accuracy_loss.png', 'system_cost.png',
                 'client_accuracy.png', 'accuracy_spread.png'):
      self.assertGreater(os.path.getsize(os.path.join(report, name)), 100, name)
    self.assertTrue(any(n.startswith('timeline_round_') for n in os.listdir(report)))
    result = subprocess.run(
        [sys.executable, '-m', 'tf_fedscale.experiments.report', f'--run_dir={self.reference}',
         '--target_accuracy=0.05', '--timeline_round=1'],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn('time to accuracy 0.05', result.stdout)
    self.assertTrue(os.path.exists(os.path.join(report, 'timeline_round_1.png')))


if __name__ == '__main__':
  absltest.main()
