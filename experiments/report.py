r"""Writes the report of a run directory: PNG figures and summary.md.

  python -m tf_fedscale.experiments.report --run_dir=runs/demo --target_accuracy=0.2
"""

import os
from collections.abc import Sequence

from absl import flags

from tf_fedscale import cli
from tf_fedscale.experiments import reporting

_RUN_DIR = flags.DEFINE_string('run_dir', None,
                                'A directory written by tf_fedscale.experiments.run.')
_TARGET = flags.DEFINE_float('target_accuracy', None,
                             'Also report when test accuracy first reached this.')
_TIMELINE_ROUND = flags.DEFINE_integer(
    'timeline_round', None, 'Round of the participant timeline (default: the '
    'latest round with a drop-out).')


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  run_dir, target = _RUN_DIR.value, _TARGET.value
  if not run_dir or not os.path.isfile(os.path.join(run_dir, 'metrics.csv')):
    cli.fail(f'--run_dir: {run_dir!r} holds no metrics.csv; pass the '
             '--output_dir of a run.')
  if target is not None and not 0 <= target <= 1:
    cli.fail(f'--target_accuracy: must be in [0, 1], got {target}.')
  try:
    path = reporting.write_report(run_dir, target, _TIMELINE_ROUND.value)
  except reporting.RunFilesError as e:
    message = str(e)
    cli.fail(message if message.startswith('--') else f'--run_dir: {message}')
  print(reporting.format_table(reporting.run_summary(run_dir, _TARGET.value)))
  print(f'report: {path}')


if __name__ == '__main__':
  cli.run(main)
