"""Runs survive SIGKILL and replay exactly: resume, same-seed equality, refusals."""

import csv
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import tempfile

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
    self.assertIn('[2, 4]', error[0])

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
