r"""Reproduces FedScale's findings as relative results, each as a CSV and a PNG.

  python -m tf_fedscale.experiments.reproduce --experiment=all --output_dir=runs/reproduce
  python -m tf_fedscale.experiments.reproduce --experiment=d --rounds=120 --task=femnist \
      --data_dir=../shared/data/femnist

Experiments (variants differ only where named; everything else is the
task's published settings (tasks/registry.py: FedScale's configuration for
its datasets, e.g. 50 clients per round, 5 steps of batch 20, lr 0.05
decaying x0.98 every 10 rounds for femnist), else the experiment's base
settings and the default config, plus --set overrides; an experiment's
evaluation period and the round count stay the experiment's):
  a  system traces vs none: the default device/availability traces, the
     trace devices always online, and identical devices (the population's
     median speeds) always online; test accuracy over *virtual time*, which
     stragglers, slow devices and drop-outs stretch.
  b  participants per round: 10 vs 100 clients per round; accuracy over rounds.
  c  algorithms: FedAvg vs FedProx vs FedYogi; accuracy over rounds.
  d  selection: Oort vs uniform; accuracy over virtual time, and time to a
     target accuracy.
  e  synchronous FedAvg (20 per round, over-commit 1.3) vs asynchronous
     FedBuff (20 training at once, a server step every 10 updates, so twice
     the server steps for the same number of client updates); accuracy over
     virtual time.

Writes <output_dir>/<experiment>.csv (one row per variant and evaluated
round), <experiment>.png, <experiment>_summary.txt, and each variant's full
run (metrics.csv, clients.csv) under <output_dir>/<experiment>/<variant>/.

Committed figures replay from a spec directory (experiments/replay.py):
  python -m tf_fedscale.experiments.reproduce --check=benchmarks/reproductions/smoke
  python -m tf_fedscale.experiments.reproduce --regenerate=benchmarks/reproductions/smoke
--check reruns the spec's runs and exits 0 when they equal the committed
outputs, 1 (listing the differences) when not; --regenerate replaces them and
records the producing commit.
"""

import csv
import dataclasses
import io
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence

from absl import flags
import numpy as np

from tf_fedscale import availability
from tf_fedscale import cli
from tf_fedscale.engine import runtime
from tf_fedscale.experiments import config_util
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale.experiments import replay
from tf_fedscale.experiments import setup
from tf_fedscale import output_files
from tf_fedscale import population as population_lib

_EXPERIMENT = flags.DEFINE_enum('experiment', 'all', ['a', 'b', 'c', 'd', 'e', 'all'],
                                'Which finding to reproduce.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/reproduce', 'Where results go.')
_ROUNDS = flags.DEFINE_integer('rounds', 0, 'Rounds per variant (0: the experiment\'s '
                               'default).')
_TASK = flags.DEFINE_string('task', 'synthetic', 'Task (tasks/registry.py).')
_DATA_DIR = flags.DEFINE_string('data_dir', '', 'The task\'s data directory.')
_SEED = flags.DEFINE_integer('seed', 0, 'First run seed (selection, model init).')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Seeds per variant (seed, seed+1, ...); '
                              'curves and summaries average over them.')
_SET = flags.DEFINE_multi_string(
    'set', [], 'Config overrides for every variant, e.g. --set=local_steps=10.')
_CHECK = flags.DEFINE_string(
    'check', None, 'Spec directory: rerun its runs and compare them with its committed '
    'outputs (exit 0 equal, 1 different).')
_REGENERATE = flags.DEFINE_string(
    'regenerate', None, 'Spec directory: rerun its runs and replace its committed '
    'outputs, recording the producing commit.')
_DATASETS_DIR = flags.DEFINE_string(
    'datasets_dir', None, 'With --check/--regenerate: what {datasets} in a spec stands for '
    '(default: $TF_FEDSCALE_DATASETS, else ../shared/datasets beside the checkout).')
_EXPERIMENT_FLAGS = ('experiment', 'output_dir', 'rounds', 'task', 'data_dir', 'seed',
                     'seeds', 'set')

COLUMNS = ('variant', 'seed', 'round', 'virtual_time_s', 'eval_accuracy', 'eval_loss',
           'train_loss', 'completed', 'dropped', 'stragglers', 'round_duration_s')


@dataclasses.dataclass
class Experiment:
  title: str
  x_axis: str  # 'round' or 'virtual_time_s'
  rounds: int  # of the first variant; a variant may set `rounds_factor`
  variants: dict[str, dict]  # name -> config overrides
  base: dict = dataclasses.field(default_factory=dict)
  # Variant -> how its population departs from the traces ('ideal' or 'always_online').
  population: dict = dataclasses.field(default_factory=dict)


EXPERIMENTS = {
    'a': Experiment(
        'With system traces vs without', 'virtual_time_s', 60,
        {'with traces': {}, 'device speeds only (always online)': {},
         'without traces': {}},
        base=dict(clients_per_round=20, eval_every=3),
        population={'device speeds only (always online)': 'always_online',
                    'without traces': 'ideal'}),
    'b': Experiment(
        'Participants per round', 'round', 60,
        {'10 per round': dict(clients_per_round=10),
         '100 per round': dict(clients_per_round=100)},
        base=dict(eval_every=3)),
    'c': Experiment(
        'FedAvg vs FedProx vs FedYogi', 'round', 60,
        {'FedAvg': dict(algorithm='fedavg'),
         'FedProx (mu=1)': dict(algorithm='fedprox', proximal_strength=1.0),
         'FedYogi (server lr 0.01)': dict(algorithm='fedyogi', server_lr=0.01)},
        base=dict(clients_per_round=20, eval_every=3)),
    'd': Experiment(
        'Oort vs uniform selection', 'virtual_time_s', 60,
        {'uniform': dict(selector='uniform'), 'Oort': dict(selector='oort')},
        base=dict(clients_per_round=20, eval_every=3)),
    'e': Experiment(
        'Synchronous FedAvg vs asynchronous FedBuff', 'virtual_time_s', 60,
        {'sync FedAvg': dict(mode='sync'),
         'async FedBuff (K=10, staleness weight 1/sqrt(1+s))': dict(
             mode='async', max_concurrency=20, buffer_size=10, rounds_factor=2,
             eval_every=6)},
        base=dict(clients_per_round=20, eval_every=3)),
}


def modified_population(pop: population_lib.Population,
                        kind: str) -> population_lib.Population:
  """'always_online': the trace devices, always online. 'ideal': also identical
  devices at the population's median speeds."""
  n = pop.num_clients
  devices, device_row = pop.devices, pop.device_row
  if kind == 'ideal':
    median = lambda a: float(np.median(a(np.arange(n))))
    devices = population_lib.DeviceProfiles.uniform(
        n, median(pop.compute_ms_per_sample), median(pop.download_kbps),
        median(pop.upload_kbps))
    device_row = np.arange(n, dtype=np.int32)
  return population_lib.Population(
      client_ids=pop.client_ids, num_examples=pop.num_examples, devices=devices,
      availability=availability.AvailabilityTrace.always(n), device_row=device_row,
      availability_row=np.arange(n, dtype=np.int32))


def _parse_set(items: Sequence[str]) -> dict:
  overrides = {}
  for item in items:
    if '=' not in item:
      raise config_util.UsageError(f'--set: expected key=value, got {item!r}.')
    key, value = item.split('=', 1)
    overrides[key] = value
  return overrides


def variant_config(exp: Experiment, overrides: dict, user: dict, seed: int = 0):
  config = default_config.get_config()
  overrides = dict(overrides)
  rounds = (_ROUNDS.value or exp.rounds) * overrides.pop('rounds_factor', 1)
  base = dict(task=_TASK.value, data_dir=_DATA_DIR.value, seed=seed, rounds=rounds,
              **exp.base)
  config = config_util.apply_overrides(config, base)
  config = config_util.apply_overrides(config, overrides)
  for key, value in user.items():  # strings from the command line
    if key not in config:
      raise config_util.UsageError(f'--set: {key!r} is not a config key.')
    config = config_util.apply_overrides(config, {key: _convert(config[key], value)})
  return setup.apply_task_defaults(
      config, set(overrides) | set(user) | {'task', 'data_dir', 'seed', 'rounds',
                                            'eval_every'})


def _convert(current, value: str):
  if isinstance(current, bool):
    return value.lower() in ('1', 'true', 'yes')
  return type(current)(value)


def run_experiment(name: str, output_dir: str, user: dict) -> list[dict]:
  exp = EXPERIMENTS[name]
  rows = []
  for variant, overrides in exp.variants.items():
    for seed in range(_SEED.value, _SEED.value + _SEEDS.value):
      config = variant_config(exp, overrides, user, seed)
      experiment = setup.build_experiment(config)
      if variant in exp.population:
        experiment = dataclasses.replace(experiment, population=modified_population(
            experiment.population, exp.population[variant]), start_time_s=0.0)
      run_dir = os.path.join(output_dir, name,
                             variant.split(' (')[0].replace(' ', '_'), f'seed_{seed}')
      shutil.rmtree(run_dir, ignore_errors=True)  # this script's own directory
      os.makedirs(run_dir)
      start = time.perf_counter()
      records = []
      experiment.run(run_dir, records.append)
      print(f'[{name}] {variant}, seed {seed}: {config.rounds} rounds in '
            f'{time.perf_counter() - start:.0f} s wall, final accuracy '
            f'{_last_accuracy(records):.3f}', flush=True)
      for r in records:
        if not math.isnan(r['eval_accuracy']):
          rows.append({'variant': variant, 'seed': seed, **{c: r[c] for c in COLUMNS[2:]}})
  return rows


def mean_curve(rows: list[dict], variant: str) -> list[dict]:
  """Per evaluated round, the mean over seeds of every numeric column."""
  mine = [r for r in rows if r['variant'] == variant]
  rounds = sorted({r['round'] for r in mine})
  curve = []
  for rnd in rounds:
    at = [r for r in mine if r['round'] == rnd]
    curve.append({'round': rnd, **{c: float(np.mean([r[c] for r in at]))
                                   for c in COLUMNS[3:]}})
  return curve


def _last_accuracy(records) -> float:
  evaluated = [r['eval_accuracy'] for r in records if not math.isnan(r['eval_accuracy'])]
  return evaluated[-1] if evaluated else float('nan')


def smoothed(values: np.ndarray, window: int = 3) -> np.ndarray:
  """Trailing mean over `window` evaluations (evaluation on 200 clients is noisy)."""
  values = np.asarray(values, np.float64)
  return np.array([values[max(0, i - window + 1):i + 1].mean()
                   for i in range(len(values))])


def summarize(name: str, rows: list[dict]) -> list[str]:
  """Relative results: final and best accuracy, when each reaches a common target."""
  exp = EXPERIMENTS[name]
  by_variant = {v: mean_curve(rows, v) for v in exp.variants}
  finals = {v: float(np.mean([r['eval_accuracy'] for r in rs[-3:]]))
            for v, rs in by_variant.items()}
  # Target: 90% of the lowest of the variants' best smoothed accuracy, so all reach it.
  best = {v: float(smoothed([r['eval_accuracy'] for r in rs]).max())
          for v, rs in by_variant.items()}
  target = 0.9 * min(best.values())
  lines = [f'{exp.title} ({_TASK.value}; x axis: {exp.x_axis}; '
           f'{_SEEDS.value} seed(s), means over seeds)',
           f'target accuracy (0.9 x the lowest best smoothed accuracy): {target:.3f}']
  width = max(len(v) for v in by_variant)
  for v, rs in by_variant.items():
    acc = smoothed([r['eval_accuracy'] for r in rs])
    hit = np.flatnonzero(acc >= target)
    reach = (f'round {rs[hit[0]]["round"]}, virtual {rs[hit[0]]["virtual_time_s"] / 3600:.2f} h'
             if len(hit) else 'never')
    lines.append(
        f'  {v:<{width}} final acc (mean of last 3 evals) {finals[v]:.3f}  best {best[v]:.3f}  '
        f'reaches target at {reach}  total virtual {rs[-1]["virtual_time_s"] / 3600:.2f} h')
  # Mean accuracy over the common x range (area under the raw curve / range):
  # robust to evaluation noise.
  horizon = min(rs[-1][exp.x_axis] for rs in by_variant.values())
  grid = np.linspace(0.0, horizon, 200)
  parts, at_end = [], []
  for v, rs in by_variant.items():
    x = np.array([r[exp.x_axis] for r in rs], np.float64)
    acc = np.array([r['eval_accuracy'] for r in rs])
    parts.append(f'{v} {np.interp(grid, x, acc).mean():.3f}')
    at_end.append(f'{v} {smoothed(acc)[x <= horizon][-1]:.3f}')
  unit = (f'{horizon / 3600:.2f} virtual h' if exp.x_axis == 'virtual_time_s'
          else f'{horizon:.0f} rounds')
  lines.append(f'  mean accuracy over the first {unit}: ' + ', '.join(parts))
  lines.append(f'  smoothed accuracy at {unit}: ' + ', '.join(at_end))
  return lines


def write_outputs(name: str, rows: list[dict], output_dir: str) -> None:
  exp = EXPERIMENTS[name]
  table = io.StringIO()
  writer = csv.DictWriter(table, COLUMNS, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  output_files.write_text(os.path.join(output_dir, f'{name}.csv'), table.getvalue())
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for variant in exp.variants:
    rs = mean_curve(rows, variant)
    x = np.array([r[exp.x_axis] for r in rs], np.float64)
    if exp.x_axis == 'virtual_time_s':
      x = x / 3600
    acc = [r['eval_accuracy'] for r in rs]
    (line,) = ax.plot(x, smoothed(acc), label=variant)
    ax.plot(x, acc, color=line.get_color(), alpha=0.25, linewidth=0.8)
  ax.set_xlabel('virtual time (hours)' if exp.x_axis == 'virtual_time_s' else 'round')
  ax.set_ylabel('test accuracy (trailing mean of 3 evals; raw faint)')
  ax.set_title(f'{exp.title} ({_TASK.value})')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  output_files.save_figure(fig, os.path.join(output_dir, f'{name}.png'))
  plt.close(fig)
  lines = summarize(name, rows)
  output_files.write_text(os.path.join(output_dir, f'{name}_summary.txt'),
                          '\n'.join(lines) + '\n')
  print('\n'.join(lines), flush=True)


def _log(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def replay_main() -> None:
  """--check or --regenerate: exits 0 (equal, or regenerated), 1 (different)
  or 2 (bad input)."""
  if _CHECK.value is not None and _REGENERATE.value is not None:
    cli.fail('--check and --regenerate: pass one of them.')
  mode = 'check' if _CHECK.value is not None else 'regenerate'
  given = [f'--{k}' for k in _EXPERIMENT_FLAGS if flags.FLAGS[k].present]
  if given:
    cli.fail(f'--{mode} takes no {", ".join(given)}: the spec names its runs; drop them.')
  datasets_dir = os.path.abspath(_DATASETS_DIR.value or replay.default_datasets_dir())
  try:
    spec = replay.load_spec(_CHECK.value or _REGENERATE.value)
    if mode == 'regenerate':
      produced = replay.regenerate(spec, datasets_dir, _log)
      print(f'regenerated {spec.directory} at commit {produced["commit"]}'
            f'{" (dirty tree)" if produced["dirty"] else ""}')
      return
    differences, rerun = replay.check(spec, datasets_dir, _log)
  except replay.SpecError as e:
    cli.fail(str(e))
  if not differences:
    print(f'{spec.directory}: {len(spec.runs())} runs replay (virtual times exact, '
          f'other numbers to {replay.TOLERANCE:g})')
    return
  print(f'{spec.directory}: the rerun differs from the committed outputs '
        f'({len(differences)} lines; rerun kept in {rerun}):')
  print('\n'.join(f'  {line}' for line in differences))
  print('If the change is meant to move these results, rerun with --regenerate and '
        'commit the outputs.')
  sys.exit(1)


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  runtime.install_exit_hooks()  # stop TFF workers on exit and SIGTERM
  if _CHECK.value is not None or _REGENERATE.value is not None:
    replay_main()
    return
  if _DATASETS_DIR.value is not None:
    cli.fail('--datasets_dir: only with --check or --regenerate; drop it.')
  names = sorted(EXPERIMENTS) if _EXPERIMENT.value == 'all' else [_EXPERIMENT.value]
  output_dir = _OUTPUT_DIR.value
  try:
    if _ROUNDS.value < 0:
      raise config_util.UsageError(f'--rounds: must be >= 0, got {_ROUNDS.value}.')
    if _SEEDS.value < 1:
      raise config_util.UsageError(f'--seeds: must be >= 1, got {_SEEDS.value}.')
    user = _parse_set(_SET.value)
    for name in names:  # validate every variant before running anything
      for overrides in EXPERIMENTS[name].variants.values():
        config_util.validate(variant_config(EXPERIMENTS[name], overrides, user),
                             setup.choices())
  except (config_util.UsageError, ValueError) as e:
    cli.fail(str(e))
  os.makedirs(output_dir, exist_ok=True)
  for name in names:
    try:
      rows = run_experiment(name, output_dir, user)
    except config_util.UsageError as e:
      cli.fail(str(e))
    write_outputs(name, rows, output_dir)


if __name__ == '__main__':
  cli.run(main)
