"""End-to-end test of `python -m tf_fedscale.experiments.reproduce` (sync vs async, tiny)."""

import csv
import json
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


# Each binary defines its flags at import, so `reproduce` and `run` cannot share a
# process: the configs are computed in a child process, as the binary would.
_VARIANT_CONFIGS = """
import json, sys
from absl import flags
from tf_fedscale.experiments import reproduce
configs = []
for experiment, variant, *args in json.loads(sys.argv[1]):
  flags.FLAGS(['reproduce', '--task=femnist', *args])
  exp = reproduce.EXPERIMENTS[experiment]
  configs.append(reproduce.variant_config(exp, exp.variants[variant],
                                          reproduce._parse_set(flags.FLAGS.set)).to_dict())
  flags.FLAGS.unparse_flags()
print(json.dumps(configs))
"""


class VariantConfigTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    requests = [['d', 'Oort'], ['b', '10 per round'],
                ['d', 'Oort', '--set=clients_per_round=20'], ['c', 'FedProx (mu=1)']]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    result = subprocess.run([sys.executable, '-c', _VARIANT_CONFIGS, json.dumps(requests)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode:
      raise RuntimeError(result.stderr[-3000:])
    cls._configs = {tuple(r): c for r, c in zip(
        requests, json.loads(result.stdout.strip().splitlines()[-1]))}

  def _config(self, experiment, variant, *args):
    return self._configs[(experiment, variant, *args)]

  def test_variants_keep_the_tasks_published_settings(self):
    config = self._config('d', 'Oort')
    # FedScale's femnist: 50 per round, 5 steps of 20, lr 0.05 decaying, >= 21.
    self.assertEqual(tuple(config[k] for k in (
        'clients_per_round', 'local_steps', 'batch_size', 'client_lr', 'client_lr_decay',
        'min_samples')), (50, 5, 20, 0.05, 0.98, 21))
    self.assertEqual((config['selector'], config['eval_every'], config['rounds']),
                     ('oort', 3, 60))
    # A variant's own setting wins, and --set wins over everything.
    self.assertEqual(self._config('b', '10 per round')['clients_per_round'], 10)
    self.assertEqual(
        self._config('d', 'Oort', '--set=clients_per_round=20')['clients_per_round'], 20)
    # FedBuff and FedProx train at a constant client rate.
    self.assertEqual(self._config('c', 'FedProx (mu=1)')['client_lr_decay'], 1.0)


if __name__ == '__main__':
  absltest.main()
