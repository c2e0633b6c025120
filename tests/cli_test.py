"""Tests for tf_fedscale.cli."""

import contextlib
import io

from absl import flags
from absl import logging
from absl.testing import absltest

from tf_fedscale import cli


class CliTest(absltest.TestCase):

  def test_fail_prints_one_error_line_and_exits_2(self):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as raised:
      cli.fail('--rounds: must be positive, got 0.')
    self.assertEqual(raised.exception.code, 2)
    self.assertEqual(stderr.getvalue(), 'error: --rounds: must be positive, got 0.\n')

  def test_start_rejects_positional_arguments(self):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as raised:
      cli.start(['prog', 'stray'])
    self.assertEqual(raised.exception.code, 2)
    self.assertIn("unexpected arguments ['stray']", stderr.getvalue())

  def test_start_quiets_logging_unless_verbosity_is_given(self):
    self.assertFalse(flags.FLAGS['verbosity'].present)
    logging.set_verbosity(logging.INFO)
    cli.start(['prog'])
    self.assertEqual(logging.get_verbosity(), logging.WARNING)


if __name__ == '__main__':
  absltest.main()
