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

  def test_a_long_error_keeps_its_start_and_end_within_the_limit(self):
    stderr = io.StringIO()
    value = list(range(1_000_000))
    with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit):
      cli.fail(f'--device_trace: x.pkl: client {cli.shorten("k" * 5000)}: computation is '
               f'{value!r}, not a number; pass a FedScale trace.')
    line = stderr.getvalue()
    self.assertEqual(line.count('\n'), 1)
    self.assertLess(len(line), cli.MAX_ERROR_CHARS + 20)
    self.assertTrue(line.startswith("error: --device_trace: x.pkl: client 'kkkk"))
    self.assertIn('...(4922 characters)...', line)
    self.assertTrue(line.endswith('not a number; pass a FedScale trace.\n'))
    self.assertEqual(cli.shorten([1, 2]), '[1, 2]')

  def test_ctrl_c_is_one_error_line_and_status_130(self):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as raised:
      cli.interrupted('continue with --resume.')
    self.assertEqual(raised.exception.code, 130)
    self.assertEqual(stderr.getvalue(),
                     'error: interrupted (Ctrl-C); continue with --resume.\n')

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
