"""Tests for experiments.replay and `reproduce --check/--regenerate`: a spec's
outputs compared with a rerun (virtual times exact, other numbers to 1e-6)."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests import fixtures
from tf_fedscale.experiments import replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ('round,virtual_time_s,eval_accuracy,selected\n'
           '0,43200.0,0.1,0\n'
           '1,43228.66783839858,0.25,13\n'
           '2,43257.335676797156,nan,13\n')
TINY_SPEC = {
    'description': 'two rounds of a tiny synthetic run',
    'args': ['--task=synthetic', '--task_options=shared_model=true,num_clients=60',
             '--rounds=2', '--clients_per_round=4', '--eval_every=1', '--eval_clients=10',
             '--local_steps=2', '--execution=inprocess'],
    'variants': {'uniform': []},
    'seeds': [3],
}




def _reproduce(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.experiments.reproduce', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _in_git_checkout() -> bool:
  return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                        check=False).returncode == 0


class DiffTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())
    self.old = os.path.join(self.dir, 'old.csv')
    fixtures.write_text(self.old, METRICS)

  def _diff(self, new_text: str) -> list[str]:
    new = os.path.join(self.dir, 'new.csv')
    fixtures.write_text(new, new_text)
    return replay.diff_csv('m.csv', self.old, new)

  def test_equal_files_and_accuracies_within_1e6_pass(self):
    self.assertEqual(self._diff(METRICS), [])
    self.assertEqual(self._diff(METRICS.replace('0.25', '0.2500009')), [])

  def test_an_accuracy_off_by_more_than_1e6_is_named(self):
    lines = self._diff(METRICS.replace('0.25', '0.2500011'))
    self.assertEqual(lines, ['m.csv: round 1, eval_accuracy: committed 0.25, rerun 0.2500011',
                             'm.csv: eval_accuracy: 1 of 3 rows differ'])

  def test_virtual_times_and_counts_must_be_exact(self):
    lines = self._diff(METRICS.replace('43228.66783839858', '43228.66783839859')
                       .replace(',13\n2', ',12\n2'))
    self.assertIn('m.csv: round 1, virtual_time_s: committed 43228.66783839858, '
                  'rerun 43228.66783839859', lines)
    self.assertIn('m.csv: selected: 1 of 3 rows differ', lines)

  def test_nan_equals_nan_but_not_a_number(self):
    self.assertEqual(self._diff(METRICS.replace('nan', 'NaN')), [])
    self.assertLen(self._diff(METRICS.replace('nan', '0.3')), 2)

  def test_changed_columns_and_rows_are_reported(self):
    self.assertIn('columns differ', self._diff(METRICS.replace('selected', 'invited'))[0])
    self.assertIn('3 rows committed, 2 rerun',
                  self._diff(METRICS.rsplit('2,', 1)[0])[0])

  def test_config_differences_name_the_key(self):
    old, new = os.path.join(self.dir, 'a.json'), os.path.join(self.dir, 'b.json')
    fixtures.write_text(old, json.dumps({'seed': 0, 'client_lr': 0.05}))
    fixtures.write_text(new, json.dumps({'seed': 0, 'client_lr': 0.1, 'client_momentum': 0.9}))
    self.assertEqual(replay.diff_config('c.json', old, new),
                     ["c.json: client_lr: committed 0.05, rerun 0.1",
                      "c.json: client_momentum: committed '(absent)', rerun 0.9"])


class SpecTest(absltest.TestCase):

  def _load(self, spec) -> replay.Spec:
    directory = self.enterContext(tempfile.TemporaryDirectory())
    fixtures.write_text(os.path.join(directory, replay.SPEC_FILE),
           spec if isinstance(spec, str) else json.dumps(spec))
    return replay.load_spec(directory)

  def test_runs_are_every_variant_at_every_seed(self):
    spec = self._load(dict(TINY_SPEC, variants={'a': ['--selector=oort'], 'b': []},
                           seeds=[0, 1]))
    self.assertEqual([name for name, _ in spec.runs()],
                     ['a/seed_0', 'a/seed_1', 'b/seed_0', 'b/seed_1'])
    self.assertEqual(spec.runs()[1][1][-2:], ['--selector=oort', '--seed=1'])
    self.assertFalse(spec.uses_datasets)

  def test_bad_specs_are_refused_with_the_reason(self):
    for spec, message in [
        ('{', 'not JSON'),
        (dict(TINY_SPEC, seeds=[]), '"seeds" must be distinct'),
        (dict(TINY_SPEC, seeds=[1, 1]), '"seeds" must be distinct'),
        (dict(TINY_SPEC, args=['--seed=1']), 'is set per run'),
        (dict(TINY_SPEC, args=['--output_dir=x']), 'is set per run'),
        (dict(TINY_SPEC, args=['rounds=2']), 'is not a --flag'),
        (dict(TINY_SPEC, variants={'a b': []}), 'variant name'),
        (dict(TINY_SPEC, extra=1), "unknown keys \\['extra'\\]"),
        (dict(TINY_SPEC, comparisons=[{'a': 'uniform', 'b': 'nope',
                                       'metric': 'final_accuracy'}]), 'comparison'),
    ]:
      with self.subTest(message):
        with self.assertRaisesRegex(replay.SpecError, message):
          self._load(spec)
    with self.assertRaisesRegex(replay.SpecError, 'cannot read'):
      replay.load_spec(self.enterContext(tempfile.TemporaryDirectory()))

  def test_every_committed_spec_loads(self):
    specs = os.path.join(ROOT, 'benchmarks', 'reproductions')
    if not os.path.isdir(specs):
      self.skipTest(f'{specs} is not part of this tree')
    names = sorted(os.listdir(specs))
    self.assertIn('smoke', names)
    for name in names:
      with self.subTest(name):
        spec = replay.load_spec(os.path.join(specs, name))
        self.assertNotEmpty(spec.description)
        self.assertIn('--execution=inprocess', spec.args)

  def test_datasets_placeholder_needs_the_directory(self):
    spec = self._load(dict(TINY_SPEC, args=['--data_dir={datasets}/femnist']))
    self.assertTrue(spec.uses_datasets)
    with self.assertRaisesRegex(replay.SpecError, '--datasets_dir'):
      replay.check_datasets(spec, os.path.join(spec.directory, 'absent'))


class CheckTest(absltest.TestCase):
  """One tiny spec, run for real: equal reruns pass, a changed value is caught."""

  def setUp(self):
    super().setUp()
    self.spec_dir = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), 'tiny')
    fixtures.write_text(os.path.join(self.spec_dir, replay.SPEC_FILE), json.dumps(TINY_SPEC))

  def test_check_passes_on_an_equal_rerun_and_names_a_changed_value(self):
    spec = replay.load_spec(self.spec_dir)
    replay.run_spec(spec, '/nowhere', os.path.join(self.spec_dir, replay.RUNS_DIR),
                    lambda line: None)
    result = _reproduce(f'--check={self.spec_dir}')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('1 runs replay', result.stdout)

    metrics = os.path.join(self.spec_dir, replay.RUNS_DIR, 'uniform', 'seed_3', 'metrics.csv')
    rows = fixtures.read_text(metrics).splitlines()
    header, row = rows[0].split(','), rows[2].split(',')
    column = header.index('eval_accuracy')
    committed = row[column]
    row[column] = repr(float(committed) + 1e-3)
    rows[2] = ','.join(row)
    fixtures.write_text(metrics, '\n'.join(rows) + '\n')
    result = _reproduce(f'--check={self.spec_dir}')
    self.assertEqual(result.returncode, 1, result.stderr[-3000:])
    self.assertIn(f'uniform/seed_3/metrics.csv: round 1, eval_accuracy: committed '
                  f'{row[column]}, rerun {committed}', result.stdout)
    self.assertIn('--regenerate', result.stdout)

  def test_regenerate_records_the_commit_and_the_outputs(self):
    if not _in_git_checkout():
      self.skipTest('not a git checkout: no commit to record')
    result = _reproduce(f'--regenerate={self.spec_dir}')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    produced = json.loads(fixtures.read_text(os.path.join(self.spec_dir, replay.PROVENANCE_FILE)))
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    self.assertEqual(produced['commit'], head)
    self.assertIsInstance(produced['dirty'], bool)
    self.assertEqual(list(produced['wall_s']), ['uniform/seed_3'])
    run = os.path.join(self.spec_dir, replay.RUNS_DIR, 'uniform', 'seed_3')
    self.assertEqual(sorted(os.listdir(run)), ['clients.csv', 'config.json', 'metrics.csv'])
    self.assertEqual(json.loads(fixtures.read_text(os.path.join(run, 'config.json')))['seed'], 3)

  def test_bad_input_is_one_line_and_exit_2_and_leaves_files_alone(self):
    for args, message in [
        ([f'--check={self.spec_dir}'], 'no committed outputs'),
        ([f'--check={self.spec_dir}', '--rounds=3'], '--check takes no --rounds'),
        ([f'--check={self.spec_dir}', f'--regenerate={self.spec_dir}'], 'pass one of them'),
        ([f'--check={os.path.join(self.spec_dir, "absent")}'], 'cannot read'),
        (['--datasets_dir=/x', '--experiment=e'], '--datasets_dir: only with'),
    ]:
      with self.subTest(message):
        result = _reproduce(*args)
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        (line,) = [l for l in result.stderr.splitlines() if l.startswith('error:')]
        self.assertIn(message, line)
    self.assertEqual(os.listdir(self.spec_dir), [replay.SPEC_FILE])


if __name__ == '__main__':
  absltest.main()
