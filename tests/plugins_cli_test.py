"""Tests for the plug-in flags: validation and one end-to-end run."""

import csv
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import setup
from tf_fedscale.experiments.configs import default as default_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  return config_util.apply_overrides(default_config.get_config(), overrides)


class ValidationTest(parameterized.TestCase):

  def test_defaults_are_valid(self):
    config_util.validate(_config(), setup.choices())
    config_util.validate(_config(mode='async', aggregator='secure', selector='oort',
                                 buffer_size=4, max_staleness=2), setup.choices())
    config_util.validate(_config(selector='tf_fedscale.oort:OortSelector'),
                         setup.choices())

  @parameterized.named_parameters(
      ('aggregator', dict(aggregator='median'), "--aggregator: unknown value 'median'"),
      ('selector', dict(selector='oracle'), "--selector: unknown value 'oracle'"),
      ('selector_path', dict(selector='tf_fedscale.oort:Nope'), '--selector: unknown'),
      ('algorithm', dict(algorithm='scaffold'), "--algorithm: unknown value 'scaffold'"),
      ('clip_norm', dict(clip_norm=0.0), '--clip_norm: must be a positive number'),
      ('clip_quantile', dict(clip_quantile=1.0), '--clip_quantile: must be in (0, 1)'),
      ('noise', dict(noise_multiplier=-1.0), '--noise_multiplier: must be >= 0'),
      ('delta', dict(dp_delta=1.0), '--dp_delta: must be < 1'),
      ('bits', dict(quantization_bits=0), '--quantization_bits: must be in [1, 16]'),
      ('topk', dict(sparsify_fraction=2.0), '--sparsify_fraction: must be in (0, 1]'),
      ('q', dict(qffl_q=-0.5), '--qffl_q: must be >= 0'),
      ('exploration', dict(oort_exploration=1.5), '--oort_exploration: must be in [0, 1]'),
      ('percentile', dict(oort_round_percentile=101.0), '--oort_round_percentile'),
      ('pacer', dict(oort_pacer_step=0), '--oort_pacer_step: must be a positive'),
      ('blacklist', dict(oort_blacklist_rounds=-2), '--oort_blacklist_rounds'),
      ('clip_bound', dict(oort_clip_bound=1.5), '--oort_clip_bound: must be in [0, 1]'),
      ('cut_off', dict(oort_cut_off_util=-0.1), '--oort_cut_off_util: must be in [0, 1]'),
      ('lr_decay', dict(client_lr_decay=1.5), '--client_lr_decay: must be in (0, 1]'),
      ('lr_decay_async', dict(client_lr_decay=0.98, mode='async'),
       '--client_lr_decay: --mode=async trains at a constant client learning rate'),
      ('lr_decay_fedprox', dict(client_lr_decay=0.98, algorithm='fedprox'),
       '--client_lr_decay: --algorithm=fedprox exposes no client learning rate'),
      ('decay_rounds', dict(client_lr_decay_rounds=0), '--client_lr_decay_rounds'),
      ('adaptive_epsilon', dict(adaptive_epsilon=0.0), '--adaptive_epsilon: must be'),
      ('dp_qffl', dict(aggregator='dp', algorithm='qffl'), '--aggregator: dp is not'),
      ('dp_async', dict(aggregator='dp', mode='async'),
       '--aggregator: dp is not supported with --mode=async'),
      ('dp_poisson', dict(aggregator='dp', dp_sampling='poisson'),
       "--dp_sampling: unknown value 'poisson'"),
      ('async_deadline', dict(mode='async', deadline_s=5.0),
       '--deadline_s: --mode=async has no rounds to cut'),
      ('async_algorithm', dict(mode='async', algorithm='fedprox'),
       '--algorithm: --mode=async takes one of'),
      ('sync_staleness', dict(max_staleness=2), '--max_staleness: only --mode=async'),
      ('sync_buffer', dict(buffer_size=4), '--buffer_size: only --mode=async'),
  )
  def test_bad_values_name_the_flag(self, overrides, message):
    with self.assertRaises(config_util.UsageError) as raised:
      config_util.validate(_config(**overrides), setup.choices())
    self.assertIn(message, str(raised.exception))


class EndToEndTest(absltest.TestCase):

  def test_dp_run_then_oort_with_dp_and_a_bad_flag_are_refused(self):
    output_dir = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'out')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    args = [sys.executable, '-m', 'tf_fedscale.experiments.run', f'--output_dir={output_dir}',
            '--rounds=2', '--clients_per_round=5', '--eval_every=2', '--eval_clients=10',
            '--local_steps=2', '--aggregator=dp', '--noise_multiplier=0.8']
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(output_dir, 'metrics.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r['completed'] for r in rows], ['0', '5', '5'])
    self.assertEqual([r['dp_sample_size'] for r in rows], ['0', '6', '6'])  # int(1.3 x 5)
    epsilons = [float(r['epsilon']) for r in rows]
    self.assertEqual(epsilons[0], 0.0)
    self.assertLess(epsilons[1], epsilons[2])
    with open(os.path.join(output_dir, 'config.json')) as f:
      self.assertIn('"dp_sampling": "fixed"', f.read())
    refused_dir = os.path.join(os.path.dirname(output_dir), 'oort')
    for extra, message in (
        (['--selector=oort'], 'error: --selector: oort with --aggregator=dp: OortSelector '
                              'chooses clients by their training losses'),
        (['--quantization_bits=40'], 'error: --quantization_bits: must be in [1, 16]')):
      bad = subprocess.run([*args[:3], f'--output_dir={refused_dir}', *args[4:], *extra],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
      self.assertEqual(bad.returncode, 2, bad.stderr[-2000:])
      errors = [l for l in bad.stderr.splitlines() if l.startswith('error:')]
      self.assertLen(errors, 1, bad.stderr[-2000:])
      self.assertTrue(errors[0].startswith(message), errors[0])
      self.assertFalse(os.path.exists(refused_dir))


if __name__ == '__main__':
  absltest.main()
