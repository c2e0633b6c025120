r"""How well --compute_model=flops predicts measured on-device training times.

  python -m tf_fedscale.traces.validate_compute [--shared_dir=../shared]

Leave one phone out: the cost coefficients of `tf_fedscale.model_cost` are
fitted to FLASH's grids of two phones (traces/flash_grids.py) and predict every
grid point of the third from its SoC's CPU-F score alone; each phone in turn.
Prints one JSON line per phone and one for all 180,000 points together, with
the absolute percentage errors |predicted / measured - 1| x 100 (median and 90th
percentile, also per layer). `compute_model` is `flops` (tf_fedscale.model_cost)
or `fedscale` (FedScale's rule for comparison: time = c x samples / speed, one
constant c fitted the same way, whatever the layer). `speed` says where the
held-out phone's speed comes from: `cpu_f_score` (the prediction the simulator
makes) or `fitted_to_phone` (its one speed factor fitted to its own grid by
least squares of the relative error, an oracle that leaves only the error of
the cost's shape).
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
# (compute_model, speed) pairs reported, in order.
VARIANTS = (('flops', 'cpu_f_score'), ('flops', 'fitted_to_phone'),
            ('fedscale', 'cpu_f_score'))


def _errors_pct(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
  return np.abs(predicted / measured - 1.0) * 100.0


def _summary(errors: np.ndarray) -> dict:
  return dict(points=int(len(errors)),
              median_abs_pct_error=round(float(np.median(errors)), 2),
              p90_abs_pct_error=round(float(np.quantile(errors, 0.9)), 2))


def _scale_to(ratio: np.ndarray) -> float:
  """The factor k minimising sum((k x ratio - 1)^2), ratio = predicted / measured."""
  return float(ratio.sum() / (ratio * ratio).sum())


def _predictions(grids: dict, speeds: dict,
                 phone: str) -> dict[tuple[str, str], np.ndarray]:
  """Predicted seconds of `phone`'s grid for every VARIANTS entry, fitted on
  the other phones."""
  others = [g for p, g in grids.items() if p != phone]
  grid, speed = grids[phone], speeds[phone]
  flops = flash_grids.predict_s(flash_grids.fit(others, speeds), grid, speed)
  per_sample = _scale_to(np.concatenate([g.batch_size / (speeds[g.phone] * g.seconds)
                                         for g in others]))
  return {('flops', 'cpu_f_score'): flops,
          ('flops', 'fitted_to_phone'): flops * _scale_to(flops / grid.seconds),
          ('fedscale', 'cpu_f_score'): per_sample * grid.batch_size / speed}


def leave_one_phone_out(shared_dir: str) -> list[dict]:
  """One record per held-out phone and VARIANTS entry, then one per entry over
  all phones."""
  speeds = flash_grids.phone_speeds(shared_dir)
  grids = {phone: flash_grids.read_grid(shared_dir, phone) for phone in speeds}
  records, pooled = [], {variant: [] for variant in VARIANTS}
  for phone, grid in grids.items():
    for (model, speed), predicted in _predictions(grids, speeds, phone).items():
      errors = _errors_pct(predicted, grid.seconds)
      pooled[model, speed].append(errors)
      records.append(dict(
          phone=phone, compute_model=model, speed=speed,
          trained_on=sorted(p for p in grids if p != phone),
          cpu_f_score=round(speeds[phone], 2), **_summary(errors),
          per_layer={layer: _summary(errors[grid.layer == layer])
                     for layer in flash_grids.LAYERS}))
  records += [dict(phone='all', compute_model=model, speed=speed,
                   **_summary(np.concatenate(pooled[model, speed])))
              for model, speed in VARIANTS]
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
