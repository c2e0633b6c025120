"""What every command-line entry point shares: bad input is one `error:` line
on stderr and exit status 2; absl logs only warnings unless --verbosity is set.

Imports no TensorFlow, so entry points that exec other programs stay light.
"""

import sys
from collections.abc import Sequence
from typing import NoReturn

from absl import flags
from absl import logging


def fail(message: str) -> NoReturn:
  """Prints `error: <message>` (one line naming the flag or file) and exits 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def start(argv: Sequence[str]) -> None:
  """Rejects positional arguments and quiets absl logging to warnings."""
  if len(argv) > 1:
    fail(f'unexpected arguments {list(argv[1:])}; all options are --flags.')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
