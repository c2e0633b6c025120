"""Every bad input of tests/bad_input_cases.py: exit status 2, exactly one
`error:` line, no traceback, and the case directory byte-identical.

Each program plays its cases in one process (they run in parallel), so the
table costs one TensorFlow import per program, not per case.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests import bad_input_cases

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BadInputTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    runs = {}
    for program in bad_input_cases.PROGRAMS:
      root = os.path.join(cls._tmp.name, program)
      os.makedirs(root)
      results = os.path.join(root, '_results.json')
      runs[program] = (results, subprocess.Popen(
          [sys.executable, '-m', 'tests.bad_input_cases', program, root, results],
          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # A program that succeeds must exit quietly too (no ServiceManager noise).
    cls.stats_run = subprocess.Popen(
        [sys.executable, '-m', 'tf_fedscale.experiments.dataset_stats', '--task=synthetic',
         '--max_clients=20', f'--output_dir={os.path.join(cls._tmp.name, "stats")}'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cls.results, cls.process_stderr = {}, {}
    for program, (results, process) in runs.items():
      _, cls.process_stderr[program] = process.communicate(timeout=900)
      if os.path.exists(results):
        with open(results) as f:
          cls.results.update(json.load(f))
    _, cls.stats_stderr = cls.stats_run.communicate(timeout=900)

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_every_case_is_one_error_line_exit_2_and_touches_nothing(self):
    for case in bad_input_cases.CASES:
      with self.subTest(case.name):
        self.assertIn(case.name, self.results,
                      self.process_stderr.get(case.program, '')[-3000:])
        outcome = self.results[case.name]
        stderr = outcome['stderr']
        errors = [l for l in stderr.splitlines() if l.startswith('error:')]
        self.assertEqual(outcome['status'], 2, stderr)
        self.assertLen(errors, 1, stderr)
        self.assertNotIn('Traceback', stderr)
        self.assertIn(case.expect, errors[0])
        self.assertEqual(outcome['changed'], [], errors[0])

  def test_programs_exit_without_noise(self):
    for program, stderr in self.process_stderr.items():
      with self.subTest(program):
        self.assertNotIn('Exception ignored', stderr)
        self.assertNotIn('Traceback', stderr)

  def test_dataset_stats_exits_without_noise(self):
    self.assertEqual(self.stats_run.returncode, 0, self.stats_stderr[-3000:])
    self.assertNotIn('Exception ignored', self.stats_stderr)


if __name__ == '__main__':
  absltest.main()
