"""Runs the README's "Use as a library" program as a user would: from another
directory, and inside a running asyncio event loop as in a notebook."""

import os
import re
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import absltest

import tf_fedscale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The directory that holds the package under test (the checkout, or site-packages).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(tf_fedscale.__file__)))
ROUNDS = 3


def library_block() -> str:
  """The first python block of the README's "Use as a library" section."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  section = readme.split('\n## Use as a library\n', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.DOTALL).group(1)


class ReadmeTest(absltest.TestCase):

  def _run(self, program: str) -> str:
    with tempfile.TemporaryDirectory() as elsewhere:
      env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
      result = subprocess.run([sys.executable, '-c', program], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=900)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    rows = [line.split() for line in result.stdout.splitlines()]
    self.assertEqual([int(r[0]) for r in rows], list(range(ROUNDS + 1)), result.stdout)
    self.assertGreater(float(rows[-1][1]), 0.0)  # the virtual clock advanced
    self.assertEqual(int(rows[-1][3]), 20)  # completed clients per round
    return result.stdout

  def test_block_runs_from_another_directory(self):
    self._run(library_block())

  def test_block_runs_inside_a_running_event_loop(self):
    program = textwrap.dedent('''
        import asyncio
        async def notebook_cell(code):
          asyncio.get_running_loop()  # what Jupyter's kernel has
          exec(code, {'__name__': '__main__'})
        ''') + f'asyncio.run(notebook_cell({library_block()!r}))\n'
    self._run(program)


if __name__ == '__main__':
  absltest.main()
