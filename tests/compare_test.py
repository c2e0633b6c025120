"""Tests for experiments.compare on hand-made run directories whose answers are
worked out here by hand (the t quantile is a table value, not scipy's)."""

import json
import math
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tf_fedscale.experiments import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T_975_2DF = 4.302652729911275   # Student's t, 97.5th percentile, 2 degrees of freedom
START_S = 43200.0               # runs start at noon: times count from round 0


def write_run(directory: str, seed: int, evaluations: list[tuple[int, float, float]],
              selector: str = 'uniform') -> None:
  """A run whose metrics.csv has round 0 at START_S, the given (round,
  seconds since the start, accuracy) evaluations, and an unevaluated round
  between them (accuracy nan)."""
  os.makedirs(directory)
  rows = ['round,virtual_time_s,eval_accuracy,train_loss', f'0,{START_S},0.05,nan']
  for round_num, time_s, accuracy in evaluations:
    rows.append(f'{round_num - 1},{START_S + time_s - 1.0},nan,0.5')
    rows.append(f'{round_num},{START_S + time_s},{accuracy},0.5')
  with open(os.path.join(directory, 'metrics.csv'), 'w') as f:
    f.write('\n'.join(rows) + '\n')
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    json.dump({'seed': seed, 'selector': selector, 'rounds': 6}, f)


class CompareTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())
    # Target 0.5. A reaches it after 100, 200, 300 s (and falls below it later);
    # B after 50, 150, 200 s, having been just below it before.
    self.a = os.path.join(self.dir, 'a')
    self.b = os.path.join(self.dir, 'b')
    for seed, (ta, tb) in enumerate([(100, 50), (200, 150), (300, 200)]):
      write_run(os.path.join(self.a, f'seed_{seed}'), seed,
                [(2, ta / 2, 0.3), (4, ta, 0.5), (6, ta + 40, 0.45)])
      write_run(os.path.join(self.b, 'nested', f's{seed}'), seed,
                [(2, tb / 2, 0.49), (4, tb, 0.6), (6, tb + 40, 0.7)], selector='oort')

  def test_time_to_accuracy_counts_from_round_0_and_the_first_evaluation_at_target(self):
    run = os.path.join(self.a, 'seed_1')
    self.assertEqual(compare.time_to_accuracy(run, 0.5), 200.0)
    self.assertEqual(compare.rounds_to_accuracy(run, 0.5), 4.0)
    self.assertEqual(compare.time_to_accuracy(run, 0.3), 100.0)
    self.assertEqual(compare.time_to_accuracy(run, 0.51), math.inf)
    self.assertEqual(compare.final_accuracy(run), 0.45)

  def test_paired_difference_and_ratio_with_their_intervals(self):
    records = compare.compare(self.a, self.b, 'time_to_accuracy', 0.5)
    pairs, summary = records[:-1], records[-1]
    self.assertEqual([(p['seed'], p['a'], p['b'], p['difference']) for p in pairs],
                     [(0, 100.0, 50.0, -50.0), (1, 200.0, 150.0, -50.0),
                      (2, 300.0, 200.0, -100.0)])
    self.assertEqual([p['ratio'] for p in pairs], [0.5, 0.75, 200 / 300])
    # Differences -50, -50, -100: mean -200/3, sample sd sqrt(2500/3), se sd/sqrt(3).
    half = T_975_2DF * math.sqrt(2500 / 3) / math.sqrt(3)
    self.assertEqual(summary['n'], 3)
    self.assertEqual(summary['config_differences'], ['selector'])
    self.assertAlmostEqual(summary['mean_a'], 200.0)
    self.assertAlmostEqual(summary['mean_b'], 400 / 3)
    self.assertAlmostEqual(summary['mean_difference'], -200 / 3)
    self.assertAlmostEqual(summary['difference_ci95'][0], -200 / 3 - half, places=9)
    self.assertAlmostEqual(summary['difference_ci95'][1], -200 / 3 + half, places=9)
    # Ratios 1/2, 3/4, 2/3: geometric mean (1/4)^(1/3).
    self.assertAlmostEqual(summary['geomean_ratio'], 0.25 ** (1 / 3))
    logs = [math.log(0.5), math.log(0.75), math.log(2 / 3)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    self.assertAlmostEqual(summary['ratio_ci95'][0], math.exp(mean - T_975_2DF * sd / 3 ** 0.5))
    self.assertAlmostEqual(summary['ratio_ci95'][1], math.exp(mean + T_975_2DF * sd / 3 ** 0.5))

  def test_a_run_that_never_reaches_the_target_leaves_the_statistics_null(self):
    records = compare.compare(self.a, self.b, 'time_to_accuracy', 0.55)
    summary = records[-1]
    self.assertEqual(summary['not_reached_a'], [0, 1, 2])
    self.assertEqual(summary['not_reached_b'], [])
    self.assertIsNone(summary['mean_difference'])
    self.assertIsNone(summary['difference_ci95'])
    self.assertEqual([p['b'] for p in records[:-1]], [50.0, 150.0, 200.0])
    self.assertIn('never reached in A: seeds [0, 1, 2]', compare.format_table(records))

  def test_final_accuracy_needs_no_target(self):
    summary = compare.compare(self.a, self.b, 'final_accuracy', None)[-1]
    self.assertAlmostEqual(summary['mean_difference'], 0.7 - 0.45)
    self.assertIsNone(summary['target'])

  def test_sets_with_different_or_repeated_seeds_are_refused(self):
    write_run(os.path.join(self.b, 'seed_9'), 9, [(2, 10, 0.9)])
    with self.assertRaisesRegex(compare.CompareError, 'different seeds'):
      compare.compare(self.a, self.b, 'time_to_accuracy', 0.5)
    write_run(os.path.join(self.a, 'again'), 1, [(2, 10, 0.9)])
    with self.assertRaisesRegex(compare.CompareError, 'seed 1 twice'):
      compare.runs_by_seed(self.a)

  def test_command_line_prints_json_lines_and_a_table_and_refuses_bad_input(self):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    command = [sys.executable, '-m', 'tf_fedscale.experiments.compare']
    result = subprocess.run([*command, self.a, self.b, '--target=0.5'], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    self.assertEqual(result.returncode, 0, result.stderr)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    self.assertEqual([r['kind'] for r in records], ['pair'] * 3 + ['summary'])
    self.assertAlmostEqual(records[-1]['mean_difference'], -200 / 3)
    self.assertIn('B - A -66.67', result.stderr)
    for args, message in [([self.a, self.b], '--target'),
                          ([self.a, os.path.join(self.dir, 'none'), '--target=0.5'],
                           'is not a directory'),
                          ([self.a], 'expected two run directories')]:
      result = subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
      self.assertEqual(result.returncode, 2, result.stderr)
      (line,) = [l for l in result.stderr.splitlines() if l.startswith('error:')]
      self.assertIn(message, line)


if __name__ == '__main__':
  absltest.main()
