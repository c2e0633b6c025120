"""What every command-line entry point shares: bad input is one `error:` line
on stderr and exit status 2 (Ctrl-C: one line and status 130); absl logs only
warnings unless --verbosity is set.

Imports no TensorFlow, so entry points that exec other programs stay light.
"""

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Optional

from absl import app
from absl import flags
from absl import logging


MAX_ERROR_CHARS = 600
INTERRUPTED_STATUS = 130   # 128 + SIGINT, as a shell reports it


def shorten(value: Any, max_chars: int = 80) -> str:
  """`repr(value)`, cut in the middle to at most about `max_chars` characters
  (a value quoted in an error line may be a whole file)."""
  text = repr(value)
  if len(text) <= max_chars:
    return text
  half = max_chars // 2
  return f'{text[:half]}...({len(text) - 2 * half} characters)...{text[-half:]}'


def _print_error(message: str) -> None:
  line = ' '.join(message.split())
  if len(line) > MAX_ERROR_CHARS:   # keep the start (what) and the end (what to do)
    line = f'{line[:MAX_ERROR_CHARS * 2 // 3]} ... {line[-MAX_ERROR_CHARS // 3:]}'
  print(f'error: {line}', file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` (one line naming the flag or file) and exits 2."""
  _print_error(message)
  sys.exit(2)


def interrupted(advice: str = '') -> NoReturn:
  """Ctrl-C: one `error:` line (with `advice`, if any) and exit status 130."""
  _print_error(f'interrupted (Ctrl-C){"; " + advice if advice else "."}')
  sys.exit(INTERRUPTED_STATUS)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses `argv` into absl's FLAGS; a flag that does not parse (unknown,
  missing value, `--rounds=1e9`) is one error line and exit 2, not absl's
  usage dump."""
  try:
    return flags.FLAGS(list(argv))
  except flags.Error as e:
    fail(f'{e}; see --helpfull for the flags and their types.')


def run(main: Callable[[Sequence[str]], Any]) -> None:
  """`absl.app.run(main)` with `parse_flags` as the flag parser; Ctrl-C is
  `interrupted()`, not a traceback."""

  def main_or_interrupted(argv: Sequence[str]) -> Any:
    try:
      return main(argv)
    except KeyboardInterrupt:
      interrupted()

  app.run(main_or_interrupted, flags_parser=parse_flags)


def start(argv: Sequence[str]) -> None:
  """Rejects positional arguments and quiets absl logging to warnings."""
  if len(argv) > 1:
    fail(f'unexpected arguments {list(argv[1:])}; all options are --flags.')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def output_dir_problem(output_dir: str) -> Optional[str]:
  """What keeps `output_dir` from receiving results (empty, a file or under
  one, not writable), or None; checked before any work so nothing fails late."""
  if not output_dir:
    return 'empty; name a directory for the results.'
  path = os.path.abspath(output_dir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    where = 'is' if path == os.path.abspath(output_dir) else 'lies under'
    return f'{output_dir!r} {where} a file ({path}); name a directory.'
  if not os.access(path, os.W_OK | os.X_OK):
    return f'cannot write into {path} (permission denied); choose another directory.'
  return None
