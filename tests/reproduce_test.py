"""End-to-end test of `python -m tf_fedscale.experiments.reproduce` (sync vs async, tiny)."""

import csv
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reproduce(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.reproduce', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=900)


class ReproduceTest(absltest.TestCase):

  def test_sync_vs_async_writes_csv_png_and_summary(self):
    out = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'out')
    result = _reproduce('--experiment=e', '--rounds=2', f'--output_dir={out}',
                        '--set=clients_per_round=4', '--set=eval_clients=10',
                        '--set=local_steps=2', '--set=eval_every=1')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, 'e.csv')) as f:
      rows = list(csv.DictReader(f))
    variants = {r['variant'] for r in rows}
    self.assertLen(variants, 2)
    by_variant = {v: [int(r['round']) for r in rows if r['variant'] == v]
                  for v in variants}
    self.assertEqual(by_variant['sync FedAvg'], [0, 1, 2])
    # The async variant takes twice the server steps (same client updates).
    (async_variant,) = variants - {'sync FedAvg'}
    self.assertEqual(by_variant[async_variant], [0, 1, 2, 3, 4])
    self.assertGreater(os.path.getsize(os.path.join(out, 'e.png')), 1000)
    with open(os.path.join(out, 'e_summary.txt')) as f:
      summary = f.read()
    self.assertIn('Synchronous FedAvg vs asynchronous FedBuff', summary)
    self.assertIn('reaches target at', summary)

  def test_bad_override_is_one_line_and_exit_2(self):
    out = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'out')
    result = _reproduce('--experiment=e', f'--output_dir={out}', '--set=no_such_key=1')
    self.assertEqual(result.returncode, 2)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    self.assertEqual(error_lines, ["error: --set: 'no_such_key' is not a config key."])
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(out))


if __name__ == '__main__':
  absltest.main()
