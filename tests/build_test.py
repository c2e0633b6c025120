"""Every test module has a py_test target in tests/BUILD."""

import glob
import os
import re

from absl.testing import absltest

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildTest(absltest.TestCase):

  def test_every_test_module_has_a_py_test(self):
    with open(os.path.join(HERE, 'BUILD')) as f:
      targets = set(re.findall(r'srcs = \["(\w+_test)\.py"\]', f.read()))
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, '*_test.py'))}
    self.assertEqual(modules - targets, set(),
                     'run `python tests/gen_build.py` to add the missing targets')


if __name__ == '__main__':
  absltest.main()
