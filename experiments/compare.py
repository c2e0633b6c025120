r"""Paired comparison of two run sets, seed by seed.

  python -m tf_fedscale.experiments.compare RUNS_A RUNS_B --metric=time_to_accuracy --target=0.7

RUNS_A and RUNS_B are directories holding runs (any depth; a run is a directory
with metrics.csv and config.json, as `experiments.run` writes them). Runs pair
by their config's `seed`: runs that differ only in what is compared share their
seed's data order, traces and initial model, so a per-seed difference is free of
most seed noise. Each set must hold the same seeds, once each.

Metrics, per run:
  time_to_accuracy    virtual seconds from the run's start (round 0) to the
                      first evaluation with test accuracy >= --target
  rounds_to_accuracy  the round of that evaluation
  final_accuracy      the last evaluation's test accuracy

Prints JSON lines on stdout (one `pair` per seed, then the `summary`: the config
keys on which paired runs differ, means, the
mean paired difference B - A with a 95 % t-interval over the per-seed
differences, and the geometric mean of the ratios B / A with a 95 % t-interval
over their logarithms) and a short table on stderr. When a run never reaches
the target, its seed is listed and the statistics are null: a difference
cannot be taken against a time that did not happen.
"""

import csv
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from absl import flags
from absl import logging
import numpy as np
from scipy import stats

from tf_fedscale import cli

METRICS_FILE = 'metrics.csv'
CONFIG_FILE = 'config.json'
CONFIDENCE = 0.95

_METRIC = flags.DEFINE_enum(
    'metric', 'time_to_accuracy',
    ['time_to_accuracy', 'rounds_to_accuracy', 'final_accuracy'], 'What to compare.')
_TARGET = flags.DEFINE_float('target', None, 'Test accuracy to reach (the *_to_accuracy '
                             'metrics), in (0, 1].')


class CompareError(Exception):
  """Bad input: one line naming the directory or flag, exit status 2."""


def _evaluations(run_dir: str) -> list[tuple[int, float, float]]:
  """(round, virtual_time_s, eval_accuracy) of the run's evaluated rounds, round 0 first."""
  path = os.path.join(run_dir, METRICS_FILE)
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  missing = {'round', 'virtual_time_s', 'eval_accuracy'} - set(rows[0] if rows else {})
  if missing:
    raise CompareError(f'{path}: no column(s) {sorted(missing)} or no rows; '
                       'pass runs written by experiments.run.')
  if int(rows[0]['round']) != 0:
    raise CompareError(f'{path}: the first row is round {rows[0]["round"]}, not 0 '
                       '(the run\'s start); pass a complete run.')
  start_s = float(rows[0]['virtual_time_s'])
  return [(int(r['round']), float(r['virtual_time_s']) - start_s,
           float(r['eval_accuracy'])) for r in rows
          if not math.isnan(float(r['eval_accuracy']))]


def _first_reaching(run_dir: str, target: float) -> Optional[tuple[int, float]]:
  """(round, virtual seconds since the start) of the first evaluation >= target."""
  for round_num, time_s, accuracy in _evaluations(run_dir):
    if accuracy >= target:
      return round_num, time_s
  return None


def time_to_accuracy(run_dir: str, target: float) -> float:
  """Virtual seconds from round 0 to the first evaluation >= target (inf: never)."""
  hit = _first_reaching(run_dir, target)
  return hit[1] if hit else math.inf


def rounds_to_accuracy(run_dir: str, target: float) -> float:
  """The first evaluated round with accuracy >= target (inf: never)."""
  hit = _first_reaching(run_dir, target)
  return float(hit[0]) if hit else math.inf


def final_accuracy(run_dir: str, target: Optional[float] = None) -> float:
  """The last evaluation's test accuracy."""
  del target
  return _evaluations(run_dir)[-1][2]


METRICS: Mapping[str, Callable[[str, Optional[float]], float]] = {
    'time_to_accuracy': time_to_accuracy,
    'rounds_to_accuracy': rounds_to_accuracy,
    'final_accuracy': final_accuracy,
}
NEEDS_TARGET = ('time_to_accuracy', 'rounds_to_accuracy')


def runs_by_seed(runs_dir: str) -> dict[int, str]:
  """Seed -> run directory, for every run under `runs_dir`."""
  if not os.path.isdir(runs_dir):
    raise CompareError(f'{runs_dir!r} is not a directory; pass a directory of runs.')
  found: dict[int, str] = {}
  for parent, _, files in sorted(os.walk(runs_dir)):
    if METRICS_FILE not in files:
      continue
    config_path = os.path.join(parent, CONFIG_FILE)
    try:
      with open(config_path) as f:
        seed = int(json.load(f)['seed'])
    except (OSError, ValueError, KeyError) as e:
      raise CompareError(f'{config_path}: no readable seed ({e}); each run needs the '
                         'config.json experiments.run writes.') from e
    if seed in found:
      raise CompareError(f'{runs_dir!r}: seed {seed} twice ({found[seed]} and {parent}); '
                         'a run set holds each seed once.')
    found[seed] = parent
  if not found:
    raise CompareError(f'{runs_dir!r} holds no run (no {METRICS_FILE} below it).')
  return found


def _interval(values: np.ndarray) -> tuple[float, Optional[list[float]]]:
  """Mean and its two-sided t-interval (None for fewer than 2 values)."""
  mean = float(values.mean())
  if len(values) < 2:
    return mean, None
  half = (stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) *
          values.std(ddof=1) / math.sqrt(len(values)))
  return mean, [mean - float(half), mean + float(half)]


def paired_summary(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
  """Means, the mean paired difference B - A and the geometric-mean ratio B / A,
  each with a 95 % t-interval; null where a value is infinite or a ratio undefined."""
  seeds = sorted(a)
  va = np.array([a[s] for s in seeds], np.float64)
  vb = np.array([b[s] for s in seeds], np.float64)
  summary: dict[str, Any] = {
      'n': len(seeds), 'seeds': seeds,
      'not_reached_a': [s for s, v in zip(seeds, va) if math.isinf(v)],
      'not_reached_b': [s for s, v in zip(seeds, vb) if math.isinf(v)],
      'mean_a': None, 'mean_b': None, 'mean_difference': None, 'difference_ci95': None,
      'geomean_ratio': None, 'ratio_ci95': None}
  if not np.isfinite(va).all() or not np.isfinite(vb).all():
    return summary
  summary['mean_a'], summary['mean_b'] = float(va.mean()), float(vb.mean())
  summary['mean_difference'], summary['difference_ci95'] = _interval(vb - va)
  if (va > 0).all() and (vb > 0).all():
    log_mean, log_ci = _interval(np.log(vb / va))
    summary['geomean_ratio'] = math.exp(log_mean)
    summary['ratio_ci95'] = [math.exp(x) for x in log_ci] if log_ci else None
  return summary


def compare(runs_a: str, runs_b: str, metric: str,
            target: Optional[float]) -> list[dict[str, Any]]:
  """One `pair` record per seed, then the `summary` record."""
  if metric not in METRICS:
    raise CompareError(f'--metric: {metric!r} is not one of {sorted(METRICS)}.')
  if metric in NEEDS_TARGET and (target is None or not 0 < target <= 1):
    raise CompareError(f'--target: {metric} needs a test accuracy in (0, 1], got {target}.')
  dirs_a, dirs_b = runs_by_seed(runs_a), runs_by_seed(runs_b)
  if set(dirs_a) != set(dirs_b):
    raise CompareError(
        f'the run sets hold different seeds: {runs_a!r} {sorted(dirs_a)}, {runs_b!r} '
        f'{sorted(dirs_b)}; pair runs of the same seeds.')
  measure = METRICS[metric]
  a = {s: measure(d, target) for s, d in dirs_a.items()}
  b = {s: measure(d, target) for s, d in dirs_b.items()}
  common = {'metric': metric, 'target': target if metric in NEEDS_TARGET else None}
  records = []
  for seed in sorted(a):
    finite = math.isfinite(a[seed]) and math.isfinite(b[seed])
    records.append({'kind': 'pair', **common, 'seed': seed,
                    'a': a[seed] if math.isfinite(a[seed]) else None,
                    'b': b[seed] if math.isfinite(b[seed]) else None,
                    'difference': b[seed] - a[seed] if finite else None,
                    'ratio': b[seed] / a[seed] if finite and a[seed] > 0 else None,
                    'run_a': dirs_a[seed], 'run_b': dirs_b[seed]})
  records.append({'kind': 'summary', **common, 'runs_a': runs_a, 'runs_b': runs_b,
                  'config_differences': config_differences(dirs_a, dirs_b),
                  **paired_summary(a, b)})
  return records


def config_differences(dirs_a: Mapping[int, str], dirs_b: Mapping[int, str]) -> list[str]:
  """The config keys on which some pair of runs differs: what the comparison
  compares, and nothing else if the runs were made to be paired."""
  keys = set()
  for seed, dir_a in dirs_a.items():
    with open(os.path.join(dir_a, CONFIG_FILE)) as f:
      config_a = json.load(f)
    with open(os.path.join(dirs_b[seed], CONFIG_FILE)) as f:
      config_b = json.load(f)
    keys |= {k for k in set(config_a) | set(config_b) if config_a.get(k) != config_b.get(k)}
  return sorted(keys)


def _number(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:.4g}'


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
  """The per-seed values and the summary, as text."""
  summary = records[-1]
  target = f' >= {summary["target"]}' if summary['target'] is not None else ''
  lines = [f'{summary["metric"]}{target}: A = {summary["runs_a"]}, B = {summary["runs_b"]}',
           f'{"seed":>6}  {"A":>10}  {"B":>10}  {"B - A":>10}  {"B / A":>8}']
  for r in records[:-1]:
    lines.append(f'{r["seed"]:>6}  {_number(r["a"]):>10}  {_number(r["b"]):>10}  '
                 f'{_number(r["difference"]):>10}  {_number(r["ratio"]):>8}')
  ci = lambda pair: f'[{_number(pair[0])}, {_number(pair[1])}]' if pair else 'n/a'
  lines.append(f'A and B differ in: {", ".join(summary["config_differences"]) or "nothing"}')
  lines.append(f'mean A {_number(summary["mean_a"])}, mean B {_number(summary["mean_b"])}; '
               f'B - A {_number(summary["mean_difference"])} (95 % CI '
               f'{ci(summary["difference_ci95"])}); B / A {_number(summary["geomean_ratio"])} '
               f'(geometric mean, 95 % CI {ci(summary["ratio_ci95"])}), {summary["n"]} seeds')
  for side in ('a', 'b'):
    if summary[f'not_reached_{side}']:
      lines.append(f'never reached in {side.upper()}: seeds {summary[f"not_reached_{side}"]}')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) != 3:
    cli.fail(f'expected two run directories RUNS_A RUNS_B, got {list(argv[1:])}.')
  try:
    records = compare(argv[1], argv[2], _METRIC.value, _TARGET.value)
  except CompareError as e:
    cli.fail(str(e))
  for record in records:
    print(json.dumps(record))
  print(format_table(records), file=sys.stderr)


if __name__ == '__main__':
  cli.run(main)
