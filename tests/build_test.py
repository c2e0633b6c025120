"""Every BUILD file is what tests/gen_build.py makes of the code (so every test
module has its py_test and every library its real dependencies)."""

import glob
import os
import re

from absl.testing import absltest

from tests import gen_build

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildTest(absltest.TestCase):

  def test_every_test_module_has_a_py_test(self):
    with open(os.path.join(HERE, 'BUILD')) as f:
      targets = set(re.findall(r'srcs = \["(\w+_test)\.py"\]', f.read()))
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, '*_test.py'))}
    self.assertEqual(modules - targets, set(),
                     'run `python tests/gen_build.py` to add the missing targets')

  def test_build_files_are_up_to_date(self):
    self.assertEqual(gen_build.main(['gen_build', '--check']), 0,
                     'run `python tests/gen_build.py`')

  def test_dependencies_come_from_imports(self):
    builds = gen_build.generate()
    accounting = builds['tf_fedscale/BUILD'].split('name = "accounting"', 1)[1]
    self.assertIn('":population"', accounting.split(')', 1)[0])
    run = builds['experiments/BUILD'].split('name = "run"', 1)[1].split(')', 1)[0]
    self.assertIn('main = "run.py"', run)
    run_test = builds['tests/BUILD'].split('name = "run_test"', 1)[1].split(')', 1)[0]
    self.assertIn('"//experiments:run"', run_test)  # a program it starts is data


if __name__ == '__main__':
  absltest.main()
