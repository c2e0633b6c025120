"""`pip wheel` of the checkout: one top-level package, tf_fedscale, holding the
framework's four folders and no tests."""

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ('pyproject.toml', 'README.md', 'tf_fedscale', 'tasks', 'traces', 'experiments')


class PackagingTest(absltest.TestCase):

  def test_wheel_installs_only_tf_fedscale(self):
    with tempfile.TemporaryDirectory() as tmp:
      source = os.path.join(tmp, 'src')
      for name in SOURCES:  # a copy: the build writes build/ and *.egg-info beside it
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
          shutil.copytree(path, os.path.join(source, name),
                          ignore=shutil.ignore_patterns('__pycache__', 'BUILD'))
        else:
          os.makedirs(source, exist_ok=True)
          shutil.copy(path, source)
      result = subprocess.run(
          [sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
           '--no-build-isolation', '--wheel-dir', os.path.join(tmp, 'dist'), source],
          capture_output=True, text=True, timeout=600)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      (wheel,) = os.listdir(os.path.join(tmp, 'dist'))
      with zipfile.ZipFile(os.path.join(tmp, 'dist', wheel)) as archive:
        names = archive.namelist()
    top_level = {n.split('/')[0] for n in names if not n.split('/')[0].endswith('.dist-info')}
    self.assertEqual(top_level, {'tf_fedscale'})
    for module in ('tf_fedscale/__init__.py', 'tf_fedscale/simulation.py',
                   'tf_fedscale/tasks/synthetic.py', 'tf_fedscale/traces/default.py',
                   'tf_fedscale/experiments/run.py',
                   'tf_fedscale/experiments/configs/demo.py'):
      self.assertIn(module, names)
    self.assertNotIn('tf_fedscale/tasks/fixtures.py', names)  # test helpers stay in tests/


if __name__ == '__main__':
  absltest.main()
