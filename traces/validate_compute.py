r"""How well --compute_model=flops predicts measured on-device training times.

  python -m tf_fedscale.traces.validate_compute [--shared_dir=../shared]

Leave one phone out: the cost coefficients of `tf_fedscale.model_cost` are
fitted to FLASH's grids of two phones (traces/flash_grids.py) and predict every
grid point of the third from its SoC's CPU-F score alone; each phone in turn.
Prints one JSON line per phone and one for all 60,000 points together, with the
absolute percentage errors |predicted / measured - 1| x 100 (median and 90th
percentile, also per layer). `speed` says where the held-out phone's speed
comes from: `cpu_f_score` (the prediction the simulator makes) or
`fitted_to_phone` (its one speed factor fitted to its own grid, an oracle that
leaves only the error of the cost's shape).
"""

import json
import os
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
import numpy as np

from tf_fedscale.traces import flash_grids

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SHARED_DIR = os.path.join(REPO_ROOT, '..', 'shared')
SPEEDS = ('cpu_f_score', 'fitted_to_phone')


def _errors_pct(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
  return np.abs(predicted / measured - 1.0) * 100.0


def _summary(errors: np.ndarray) -> dict:
  return dict(points=int(len(errors)),
              median_abs_pct_error=round(float(np.median(errors)), 2),
              p90_abs_pct_error=round(float(np.quantile(errors, 0.9)), 2))


def leave_one_phone_out(shared_dir: str) -> list[dict]:
  """One record per (speed, held-out phone), then one per speed over all phones."""
  speeds = flash_grids.phone_speeds(shared_dir)
  grids = {phone: flash_grids.read_grid(shared_dir, phone) for phone in speeds}
  records, pooled = [], {speed: [] for speed in SPEEDS}
  for phone, grid in grids.items():
    coefficients = flash_grids.fit([g for p, g in grids.items() if p != phone], speeds)
    predicted = flash_grids.predict_s(coefficients, grid, speeds[phone])
    ratio = predicted / grid.seconds
    # The speed factor minimising the squared relative error on this phone.
    oracle = float(ratio.sum() / (ratio * ratio).sum())
    for speed, prediction in (('cpu_f_score', predicted),
                              ('fitted_to_phone', predicted * oracle)):
      errors = _errors_pct(prediction, grid.seconds)
      pooled[speed].append(errors)
      records.append(dict(
          phone=phone, speed=speed, trained_on=sorted(p for p in grids if p != phone),
          cpu_f_score=round(speeds[phone], 2), **_summary(errors),
          per_layer={layer: _summary(errors[grid.layer == layer])
                     for layer in flash_grids.LAYERS}))
  records += [dict(phone='all', speed=speed, **_summary(np.concatenate(pooled[speed])))
              for speed in SPEEDS]
  return records


def define_flags() -> None:
  """The CLI's flags (defined only when run, so importing this module is free)."""
  flags.DEFINE_string('shared_dir', DEFAULT_SHARED_DIR,
                      'Directory holding datasets/flash_*.')


def main(argv: Sequence[str]) -> None:
  del argv
  shared_dir = flags.FLAGS.shared_dir
  for part in (flash_grids.FLASH, flash_grids.SOC_TABLE):
    if not os.path.exists(os.path.join(shared_dir, part)):
      print(f'error: --shared_dir: {shared_dir!r} holds no {part}; point it at the '
            'directory holding datasets/flash_*.', file=sys.stderr)
      sys.exit(2)
  for record in leave_one_phone_out(shared_dir):
    print(json.dumps(record))


if __name__ == '__main__':
  define_flags()
  app.run(main)
