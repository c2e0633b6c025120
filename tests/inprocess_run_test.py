"""`experiments.run --execution=inprocess`: the binary end to end, with Oort's
loss feedback, checkpoints and --resume, against the same run on a TFF worker."""

import csv
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = ['--rounds=4', '--clients_per_round=5', '--eval_every=2', '--eval_clients=10',
       '--checkpoint_every=2', '--selector=oort']


def _run(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.run', *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=900)


def _rows(run_dir: str, name: str) -> list[dict[str, str]]:
  with open(os.path.join(run_dir, name), newline='') as f:
    return list(csv.DictReader(f))


class InProcessRunTest(absltest.TestCase):

  def test_resumed_inprocess_run_equals_the_worker_run(self):
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    local, inprocess = os.path.join(tmp, 'local'), os.path.join(tmp, 'inprocess')
    result = _run(f'--output_dir={local}', '--execution=local', *RUN)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    half = [a if not a.startswith('--rounds=') else '--rounds=2' for a in RUN]
    result = _run(f'--output_dir={inprocess}', '--execution=inprocess:2',
                  '--data_cache_mb=64', *half)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    result = _run(f'--output_dir={inprocess}', '--execution=inprocess:2',
                  '--data_cache_mb=64', '--resume', *RUN)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    # Oort chose the same clients from the same losses; the model agrees to float rounding.
    self.assertEqual(_rows(local, 'clients.csv'), _rows(inprocess, 'clients.csv'))
    expected, got = _rows(local, 'metrics.csv'), _rows(inprocess, 'metrics.csv')
    self.assertEqual([r['round'] for r in expected], [r['round'] for r in got])
    for a, b in zip(expected, got):
      self.assertEqual(a['completed'], b['completed'])
      for key in ('train_loss', 'eval_loss', 'eval_accuracy'):
        if a[key] != 'nan':
          self.assertAlmostEqual(float(a[key]), float(b[key]), places=4, msg=key)

  def test_flags_the_engine_does_not_use_are_refused(self):
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    for args, flag in ((['--execution=inprocess', '--clients_per_subround=4'],
                        '--clients_per_subround'),
                       (['--execution=local', '--data_cache_mb=10'], '--data_cache_mb'),
                       (['--execution=inprocess:0'], '--execution')):
      result = _run(f'--output_dir={os.path.join(tmp, "x")}', '--rounds=1', *args)
      self.assertEqual(result.returncode, 2, result.stderr[-2000:])
      errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
      self.assertLen(errors, 1, result.stderr[-2000:])
      self.assertTrue(errors[0].startswith(f'error: {flag}:'), errors[0])
      self.assertFalse(os.path.exists(os.path.join(tmp, 'x')))


if __name__ == '__main__':
  absltest.main()
