"""Figures that replay: a spec directory names the runs behind a figure and
keeps their outputs; rerunning it says whether this code still produces them.

A spec directory holds:
  spec.json       what to run (below)
  outputs/<variant>/seed_<s>/{metrics.csv, clients.csv, config.json}
                  the committed outputs of every run
  PRODUCED.json   the commit that produced them (and whether its tree was
                  dirty), when, on what machine, and each run's wall seconds
  comparisons.jsonl, comparisons.txt
                  the spec's paired comparisons (experiments.compare) of the
                  committed runs: the figure itself

spec.json:
  {"description": "what the figure shows",
   "args": ["--task=synthetic", ...],        # flags of experiments.run for every run
   "variants": {"uniform": ["--selector=uniform"], "oort": ["--selector=oort"]},
   "seeds": [0, 1],
   "comparisons": [{"a": "uniform", "b": "oort", "metric": "time_to_accuracy",
                    "target": 0.3}]}          # optional
Each run is `python -m tf_fedscale.experiments.run <args> <variant args>
--seed=<s> --output_dir=...` from the repository root (relative trace paths
resolve there); `{datasets}` in an argument stands for the shared datasets
directory, and config.json is kept with `{datasets}` in its place, so specs and
outputs do not depend on where the data sit.

Compared per file: the same columns and rows; virtual times (columns ending in
`_s`) and every non-numeric value exactly, other numbers (accuracies, losses)
to 1e-6; config.json key by key.
"""

import csv
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tf_fedscale.experiments import compare as compare_lib

SPEC_FILE = 'spec.json'
PROVENANCE_FILE = 'PRODUCED.json'
RUNS_DIR = 'outputs'
COMPARISONS_JSONL = 'comparisons.jsonl'
COMPARISONS_TXT = 'comparisons.txt'
CONFIG_FILE = 'config.json'
CSV_FILES = ('metrics.csv', 'clients.csv')
DATASETS = '{datasets}'
TOLERANCE = 1e-6   # accuracies, losses: any number that is not a virtual time
EXAMPLES_PER_FILE = 8   # differing cells shown per file
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC_KEYS = {'description', 'args', 'variants', 'seeds', 'comparisons'}
_SET_PER_RUN = ('--seed', '--output_dir', '--overwrite', '--resume')
_NAME = re.compile(r'^[A-Za-z0-9_.-]+$')


class SpecError(Exception):
  """Bad input (a spec, its directory, the datasets): one line, exit status 2."""


@dataclasses.dataclass(frozen=True)
class Spec:
  directory: str
  description: str
  args: tuple[str, ...]
  variants: Mapping[str, tuple[str, ...]]
  seeds: tuple[int, ...]
  comparisons: tuple[Mapping[str, Any], ...]

  def runs(self) -> list[tuple[str, list[str]]]:
    """(run directory relative to outputs/, experiments.run flags) of every run."""
    return [(os.path.join(variant, f'seed_{seed}'),
             [*self.args, *args, f'--seed={seed}'])
            for variant, args in self.variants.items() for seed in self.seeds]

  @property
  def uses_datasets(self) -> bool:
    return any(DATASETS in a for a in self.args) or any(
        DATASETS in a for args in self.variants.values() for a in args)


def _strings(value: Any, where: str) -> tuple[str, ...]:
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise SpecError(f'{where}: expected a list of strings, got {value!r}.')
  for arg in value:
    if not arg.startswith('--'):
      raise SpecError(f'{where}: {arg!r} is not a --flag of experiments.run.')
    if arg.split('=', 1)[0] in _SET_PER_RUN:
      raise SpecError(f'{where}: {arg!r} is set per run by the spec (seeds, outputs/); '
                      'remove it.')
  return tuple(value)


def load_spec(directory: str) -> Spec:
  """The spec in `directory`, checked before anything runs."""
  path = os.path.join(directory, SPEC_FILE)
  try:
    with open(path) as f:
      raw = json.load(f)
  except OSError as e:
    raise SpecError(f'{path}: cannot read it ({e.strerror or e}); pass a spec directory '
                    f'holding {SPEC_FILE}.') from e
  except ValueError as e:
    raise SpecError(f'{path}: not JSON ({e}).') from e
  if not isinstance(raw, dict):
    raise SpecError(f'{path}: expected a JSON object, got {type(raw).__name__}.')
  unknown, missing = set(raw) - _SPEC_KEYS, {'args', 'variants', 'seeds'} - set(raw)
  if unknown or missing:
    raise SpecError(f'{path}: unknown keys {sorted(unknown)}, missing keys '
                    f'{sorted(missing)}; the keys are {sorted(_SPEC_KEYS)}.')
  variants = raw['variants']
  if not isinstance(variants, dict) or not variants:
    raise SpecError(f'{path}: "variants" must map names to flag lists, got {variants!r}.')
  for name in variants:
    if not _NAME.match(name):
      raise SpecError(f'{path}: variant name {name!r} must be letters, digits, _ . -.')
  seeds = raw['seeds']
  if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds) or
      not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
    raise SpecError(f'{path}: "seeds" must be distinct integers >= 0, got {seeds!r}.')
  comparisons = raw.get('comparisons', [])
  for c in comparisons:
    if (not isinstance(c, dict) or c.get('a') not in variants or c.get('b') not in variants
        or c.get('metric') not in compare_lib.METRICS or set(c) - {'a', 'b', 'metric', 'target'}):
      raise SpecError(f'{path}: comparison {c!r} needs "a" and "b" (variants), "metric" '
                      f'(one of {sorted(compare_lib.METRICS)}) and, for a *_to_accuracy '
                      'metric, "target".')
  return Spec(directory=directory, description=str(raw.get('description', '')),
              args=_strings(raw['args'], f'{path}: "args"'),
              variants={k: _strings(v, f'{path}: variant {k!r}') for k, v in variants.items()},
              seeds=tuple(seeds), comparisons=tuple(comparisons))


def default_datasets_dir() -> str:
  """$TF_FEDSCALE_DATASETS, else ../shared/datasets beside the checkout."""
  return os.environ.get('TF_FEDSCALE_DATASETS') or os.path.join(
      os.path.dirname(REPO_ROOT), 'shared', 'datasets')


def check_datasets(spec: Spec, datasets_dir: str) -> None:
  if spec.uses_datasets and not os.path.isdir(datasets_dir):
    raise SpecError(f'--datasets_dir: {datasets_dir!r} is not a directory, and the spec '
                    f'reads {DATASETS}; pass the shared datasets directory.')


def run_one(args: Sequence[str], datasets_dir: str, output_dir: str) -> float:
  """Runs experiments.run in a child process (each binary owns its flags);
  returns its wall seconds. A run refused as bad input is a SpecError."""
  argv = [a.replace(DATASETS, datasets_dir) for a in args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
  start = time.perf_counter()
  result = subprocess.run(
      [sys.executable, '-m', 'tf_fedscale.experiments.run', *argv,
       f'--output_dir={output_dir}'], cwd=REPO_ROOT, env=env, capture_output=True,
      text=True, check=False)
  if result.returncode == 2:
    errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    raise SpecError(f'experiments.run {" ".join(args)} refused its flags: '
                    f'{errors[-1] if errors else result.stderr[-500:]}')
  if result.returncode != 0:
    raise RuntimeError(f'experiments.run {" ".join(args)} failed (exit '
                       f'{result.returncode}):\n{result.stderr[-3000:]}')
  return time.perf_counter() - start


def _keep_outputs(run_dir: str, into: str, datasets_dir: str) -> None:
  """Copies the compared files of a finished run; config.json with {datasets}."""
  os.makedirs(into, exist_ok=True)
  for name in CSV_FILES:
    shutil.copyfile(os.path.join(run_dir, name), os.path.join(into, name))
  with open(os.path.join(run_dir, CONFIG_FILE)) as f:
    config = json.load(f)
  config = {k: v.replace(datasets_dir, DATASETS) if isinstance(v, str) else v
            for k, v in config.items()}
  with open(os.path.join(into, CONFIG_FILE), 'w') as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write('\n')


def run_spec(spec: Spec, datasets_dir: str, into: str,
             log: Callable[[str], None]) -> dict[str, float]:
  """Runs every run of `spec`, keeping its outputs under `into`/<run>/;
  returns each run's wall seconds."""
  wall_s = {}
  with tempfile.TemporaryDirectory(prefix='replay-run-') as scratch:
    for i, (name, args) in enumerate(spec.runs()):
      run_dir = os.path.join(scratch, name)
      wall_s[name] = run_one(args, datasets_dir, run_dir)
      _keep_outputs(run_dir, os.path.join(into, name), datasets_dir)
      log(f'[{i + 1}/{len(spec.runs())}] {name}: {wall_s[name]:.0f} s wall')
  return wall_s


# ---------------------------------------------------------------- comparing outputs


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _cells_equal(column: str, a: str, b: str) -> bool:
  """Virtual times (`*_s`) and non-numbers exactly; other numbers to TOLERANCE."""
  if a == b:
    return True
  if column.endswith('_s') or not (_is_number(a) and _is_number(b)):
    return False
  x, y = float(a), float(b)
  return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= TOLERANCE


def diff_csv(label: str, committed: str, rerun: str) -> list[str]:
  """Lines saying how the rerun CSV differs from the committed one (none: equal)."""
  with open(committed, newline='') as f:
    old = list(csv.reader(f))
  with open(rerun, newline='') as f:
    new = list(csv.reader(f))
  if not old or not new or old[0] != new[0]:
    return [f'{label}: columns differ: committed {old[0] if old else []}, '
            f'rerun {new[0] if new else []}']
  header, lines, shown = old[0], [], 0
  if len(old) != len(new):
    lines.append(f'{label}: {len(old) - 1} rows committed, {len(new) - 1} rerun')
  counts: dict[str, int] = {}
  for a_row, b_row in zip(old[1:], new[1:]):
    for column, a, b in zip(header, a_row, b_row):
      if _cells_equal(column, a, b):
        continue
      counts[column] = counts.get(column, 0) + 1
      if shown < EXAMPLES_PER_FILE:
        shown += 1
        lines.append(f'{label}: {header[0]} {a_row[0]}, {column}: committed {a}, rerun {b}')
  rows = min(len(old), len(new)) - 1
  lines += [f'{label}: {column}: {n} of {rows} rows differ' for column, n in counts.items()]
  return lines


def diff_config(label: str, committed: str, rerun: str) -> list[str]:
  with open(committed) as f:
    old = json.load(f)
  with open(rerun) as f:
    new = json.load(f)
  return [f'{label}: {key}: committed {old.get(key, "(absent)")!r}, rerun '
          f'{new.get(key, "(absent)")!r}'
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def diff_runs(spec: Spec, committed: str, rerun: str) -> list[str]:
  """Every difference between two outputs/ trees of `spec` (none: they replay)."""
  lines = []
  for name, _ in spec.runs():
    for file in (*CSV_FILES, CONFIG_FILE):
      old, new = os.path.join(committed, name, file), os.path.join(rerun, name, file)
      label = os.path.join(name, file)
      if not os.path.isfile(old):
        lines.append(f'{label}: not committed')
      else:
        lines += (diff_config if file == CONFIG_FILE else diff_csv)(label, old, new)
  return lines


def check_committed(spec: Spec) -> None:
  """Refuses to --check a spec whose outputs were never committed."""
  committed = os.path.join(spec.directory, RUNS_DIR)
  missing = [os.path.join(name, f) for name, _ in spec.runs()
             for f in (*CSV_FILES, CONFIG_FILE)
             if not os.path.isfile(os.path.join(committed, name, f))]
  if missing:
    raise SpecError(f'{spec.directory}: no committed outputs ({missing[0]} and '
                    f'{len(missing) - 1} more missing under {RUNS_DIR}/); produce them '
                    'with --regenerate.')


# ---------------------------------------------------------------- producing outputs


def _git(*args: str) -> str:
  try:
    return subprocess.run(['git', *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout
  except (OSError, subprocess.CalledProcessError) as e:
    raise SpecError(f'--regenerate: cannot ask git for the producing commit in {REPO_ROOT} '
                    f'({e}); regenerate from a git clone of the project.') from e


def provenance(spec_dir: str) -> dict[str, Any]:
  """The producing commit, whether its tree was dirty (outside the spec
  directory, whose outputs are being replaced), and the software and machine."""
  inside = os.path.relpath(os.path.abspath(spec_dir), REPO_ROOT) + os.sep
  dirty = [line[3:] for line in _git('status', '--porcelain', '--untracked-files=all').splitlines()
           if not line[3:].startswith(inside)]
  cpu = ''
  if os.path.isfile('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
  return {
      'commit': _git('rev-parse', 'HEAD').strip(), 'dirty': bool(dirty),
      'dirty_paths': dirty,
      'produced_utc': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
      'python': platform.python_version(),
      'packages': {p: importlib.metadata.version(p)
                   for p in ('tensorflow', 'tensorflow-federated', 'numpy')},
      'machine': {'cpu': cpu, 'cores': os.cpu_count(), 'system': platform.platform()},
  }


def write_comparisons(spec: Spec) -> None:
  """The spec's comparisons of its committed runs, as JSON lines and tables."""
  path_jsonl = os.path.join(spec.directory, COMPARISONS_JSONL)
  path_txt = os.path.join(spec.directory, COMPARISONS_TXT)
  if not spec.comparisons:
    for path in (path_jsonl, path_txt):
      if os.path.exists(path):
        os.remove(path)
    return
  runs = os.path.join(spec.directory, RUNS_DIR)
  lines, tables = [], []
  for c in spec.comparisons:
    records = compare_lib.compare(os.path.join(runs, c['a']), os.path.join(runs, c['b']),
                                  c['metric'], c.get('target'))
    for record in records:  # paths relative to the spec directory
      for key in ('run_a', 'run_b', 'runs_a', 'runs_b'):
        if key in record:
          record[key] = os.path.relpath(record[key], spec.directory)
    lines += [json.dumps(r) for r in records]
    tables.append(compare_lib.format_table(records))
  with open(path_jsonl, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(path_txt, 'w') as f:
    f.write('\n\n'.join(tables) + '\n')


def regenerate(spec: Spec, datasets_dir: str, log: Callable[[str], None]) -> dict[str, Any]:
  """Reruns the spec and replaces its committed outputs (only once every run
  finished), PRODUCED.json and comparisons; returns the provenance written."""
  check_datasets(spec, datasets_dir)
  produced = provenance(spec.directory)
  if produced['dirty']:
    log(f'warning: the tree is dirty ({len(produced["dirty_paths"])} paths outside '
        f'{spec.directory}); PRODUCED.json records it')
  fresh = tempfile.mkdtemp(prefix='.replay-new-', dir=spec.directory)
  try:
    wall_s = run_spec(spec, datasets_dir, fresh, log)
  except BaseException:
    shutil.rmtree(fresh, ignore_errors=True)
    raise
  runs = os.path.join(spec.directory, RUNS_DIR)
  shutil.rmtree(runs, ignore_errors=True)
  os.rename(fresh, runs)
  produced['wall_s'] = {k: round(v, 1) for k, v in wall_s.items()}
  with open(os.path.join(spec.directory, PROVENANCE_FILE), 'w') as f:
    json.dump(produced, f, indent=2)
    f.write('\n')
  write_comparisons(spec)
  return produced


def check(spec: Spec, datasets_dir: str, log: Callable[[str], None]) -> tuple[list[str], str]:
  """Reruns the spec; (differences from the committed outputs, the rerun's
  directory). The rerun is removed when there is no difference."""
  check_datasets(spec, datasets_dir)
  check_committed(spec)
  rerun = tempfile.mkdtemp(prefix='replay-check-')
  try:
    run_spec(spec, datasets_dir, rerun, log)
  except BaseException:
    shutil.rmtree(rerun, ignore_errors=True)
    raise
  differences = diff_runs(spec, os.path.join(spec.directory, RUNS_DIR), rerun)
  if not differences:
    shutil.rmtree(rerun)
  return differences, rerun
