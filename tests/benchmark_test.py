"""`python -m tf_fedscale.experiments.benchmark` on tiny workloads: its JSON lines and exit."""

import json
import os
import subprocess
import sys
import uuid

from absl.testing import absltest

from tests import cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ('workload', 'what', 'clients_per_round', 'round', 'seconds')


def _benchmark(*args, marker='unused'):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_FEDSCALE_TEST_MARKER=marker)
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  result = subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.benchmark', *args],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
  lines = [json.loads(l) for l in result.stdout.splitlines() if l.startswith('{')]
  return result, lines


class BenchmarkTest(absltest.TestCase):

  def test_femnist_cnn_measures_all_four(self):
    marker = f'tf_fedscale_test_{uuid.uuid4().hex}'
    result, lines = _benchmark('--workload=femnist_cnn', '--clients_per_round=2',
                               '--rounds=1', '--num_clients=4', '--local_steps=1',
                               '--batch_size=4', '--execution=workers:2',
                               marker=marker)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    rounds = [l for l in lines if l['what'] != 'summary']
    self.assertEqual([(l['what'], l['round']) for l in rounds],
                     [(w, r) for r in (0, 1)
                      for w in ('sgd_bound', 'serial_tf', 'raw_tff', 'tf_fedscale')])
    for line in rounds:
      for key in KEYS + ('cpu_seconds', 'rss_bytes'):
        self.assertIn(key, line)
      self.assertEqual(line['workload'], 'femnist_cnn')
      self.assertEqual(line['clients_per_round'], 2)
      self.assertGreater(line['seconds'], 0)
      if line['what'] in ('raw_tff', 'tf_fedscale'):
        self.assertEqual(line['execution'], 'workers:2')
        self.assertEqual(line['subrounds'], 2)
    self.assertTrue(rounds[0]['warmup'])
    summary = lines[-1]
    self.assertEqual(summary['what'], 'summary')
    for key in ('tf_fedscale_over_sgd_bound', 'raw_tff_over_sgd_bound',
                'serial_tf_over_sgd_bound', 'tf_fedscale_over_raw_tff', 'rss_growth'):
      self.assertIn(key, summary)
    self.assertLess(summary['round1_max_weight_diff'], 1e-4)  # the same training
    self.assertEmpty(cases.worker_pids_with_env(marker))

  def test_inprocess_trains_what_the_bound_trains(self):
    result, lines = _benchmark('--workload=femnist_cnn', '--clients_per_round=3',
                               '--rounds=1', '--num_clients=6', '--local_steps=2',
                               '--batch_size=4', '--execution=inprocess:2',
                               '--bound_lanes=2',  # 2 + 1 clients: lanes combined
                               '--what=sgd_bound,tf_fedscale')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    summary = lines[-1]
    self.assertEqual(summary['execution'], 'inprocess:2')
    self.assertLess(summary['round1_max_weight_diff'], 1e-4)
    self.assertIn('tf_fedscale_over_sgd_bound', summary)

  def test_refuses_negative_bound_lanes(self):
    result, lines = _benchmark('--workload=femnist_cnn', '--bound_lanes=-1')
    self.assertEqual(result.returncode, 2)
    self.assertEqual(lines, [])
    self.assertIn('error: --bound_lanes: -1', result.stderr)

  def test_population(self):
    result, lines = _benchmark('--workload=population', '--population=20000',
                               '--clients_per_round=100', '--rounds=3')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    per_round = [l for l in lines if l['what'] == 'select_account']
    self.assertLen(per_round, 3)
    for line in per_round:
      for key in ('population', 'clients_per_round', 'seconds_per_round',
                  'population_bytes'):
        self.assertIn(key, line)
      self.assertEqual(line['population'], 20000)
      self.assertEqual(line['selected'], 130)
    self.assertEqual(lines[0]['what'], 'generate_population')
    self.assertEqual(lines[-1]['what'], 'summary')

  def test_bad_flags(self):
    result, _ = _benchmark('--execution=workers:zero', '--rounds=1')
    self.assertEqual(result.returncode, 2)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    self.assertLen(error_lines, 1, result.stderr)
    self.assertIn('--execution: workers:N needs a whole number', error_lines[0])


if __name__ == '__main__':
  absltest.main()
