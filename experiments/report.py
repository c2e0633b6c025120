r"""Writes the report of a run directory: PNG figures and summary.md.

  python -m tf_fedscale.experiments.report --run_dir=runs/demo --target_accuracy=0.2
"""

import os
from collections.abc import Sequence

from absl import app
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
  del argv
  run_dir = _RUN_DIR.value
  if not run_dir or not os.path.isfile(os.path.join(run_dir, 'metrics.csv')):
    cli.fail(f'--run_dir: {run_dir!r} holds no metrics.csv; pass the '
             '--output_dir of a run.')
  path = reporting.write_report(run_dir, _TARGET.value, _TIMELINE_ROUND.value)
  print(reporting.format_table(reporting.run_summary(run_dir, _TARGET.value)))
  print(f'report: {path}')


if __name__ == '__main__':
  app.run(main)
