r"""Runs one trace-driven federated simulation.

  python -m experiments.run --output_dir=runs/demo
  python -m experiments.run --config=experiments/configs/default.py \
      --algorithm=fedyogi --clients_per_round=100 --output_dir=runs/yogi

Every key of the config is also a flag; flags given on the command line win.
Writes <output_dir>/metrics.csv (one row per round), clients.csv (each invited
client's timeline) and config.json (the resolved configuration).
"""

import json
import math
import os
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections

from experiments import config_util
from experiments.configs import default as default_config

_DEFAULTS = default_config.get_config()
_HELP = {
    'task': 'Dataset task name (tasks/registry.py).',
    'data_dir': 'Directory holding the task\'s files (unused by synthetic).',
    'algorithm': 'fedavg, fedprox, fedadam, fedyogi, fedadagrad or fedsgd.',
    'selector': 'Participant selector name.',
    'rounds': 'Number of rounds.',
    'clients_per_round': 'Updates aggregated per round.',
    'overcommit': 'Invite ceil(overcommit x clients_per_round) clients.',
    'deadline_s': 'Round deadline in virtual seconds (0: none).',
    'eval_every': 'Evaluate every k rounds.',
    'eval_clients': 'Test clients evaluated (0: all).',
    'local_steps': 'Local SGD steps per client (0: use local_epochs).',
    'local_epochs': 'Local epochs per client (0: use local_steps).',
    'batch_size': 'Client batch size.',
    'client_lr': 'Client learning rate.',
    'server_lr': 'Server learning rate.',
    'proximal_strength': 'FedProx mu.',
    'backward_factor': 'Training cost / inference cost per sample.',
    'client_mapping': 'Clients to trace rows: random (seeded) or modulo (FedScale).',
    'trace_seed': 'Seed of the default trace generator.',
    'seed': 'Seed of selection and everything else random.',
    'max_concurrent_clients': 'Bound on concurrent client computations (-1: none).',
    'tensorboard': 'Also write TensorBoard scalars.',
}
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}
for _key, _value in _DEFAULTS.items():
  _DEFINE[type(_value)](_key, None, f'{_HELP[_key]} Default: {_value!r}.')

_CONFIG = flags.DEFINE_string('config', None, 'ml_collections config file (Python).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/latest', 'Where results go.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace results already in --output_dir.')

RESULT_FILES = ('metrics.csv', 'clients.csv', 'config.json')


def resolve_config() -> ml_collections.ConfigDict:
  """The config file (or the default) with command-line flags applied."""
  base = (config_util.load_config_file(_CONFIG.value) if _CONFIG.value
          else _DEFAULTS)
  overrides = {k: flags.FLAGS[k].value for k in _DEFAULTS if flags.FLAGS[k].present}
  return config_util.apply_overrides(base, overrides)


def check_output_dir(output_dir: str, overwrite: bool) -> None:
  """Refuses to touch a directory holding earlier results unless told to."""
  existing = [f for f in RESULT_FILES if os.path.exists(os.path.join(output_dir, f))]
  if existing and not overwrite:
    raise config_util.UsageError(
        f'--output_dir: {output_dir!r} already holds results ({", ".join(existing)}); '
        'pass --overwrite to replace them or choose another directory.')
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise config_util.UsageError(f'--output_dir: {output_dir!r} is not a directory.')


def _format_time(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


def print_progress(record: dict, rounds: int) -> None:
  evaluated = '' if math.isnan(record['eval_accuracy']) else (
      f'  eval_acc {record["eval_accuracy"]:.3f}')
  print(f'round {record["round"]:>4}/{rounds}  virtual {_format_time(record["virtual_time_s"])}'
        f'  done {record["completed"]:>3}/{record["selected"]:<3} dropped {record["dropped"]:>3}'
        f'  train_loss {record["train_loss"]:.4f}{evaluated}'
        f'  ({record["wall_clock_s"]:.1f} s)', flush=True)


def print_summary(records: Sequence[dict]) -> None:
  evaluated = [r for r in records if not math.isnan(r['eval_accuracy'])]
  first_acc = evaluated[0]['eval_accuracy'] if evaluated else float('nan')
  last = records[-1]
  rows = [
      ('rounds', f'{last["round"]}'),
      ('eval accuracy (first -> final)',
       f'{first_acc:.3f} -> {evaluated[-1]["eval_accuracy"]:.3f}' if evaluated else 'n/a'),
      ('virtual time', f'{_format_time(last["virtual_time_s"])} ({last["virtual_time_s"]:.0f} s)'),
      ('clients completed', f'{sum(r["completed"] for r in records)}'),
      ('clients dropped (offline)', f'{sum(r["dropped"] for r in records)}'),
      ('stragglers cut', f'{sum(r["stragglers"] + r["missed_deadline"] for r in records)}'),
      ('bytes moved (down + up)',
       f'{sum(r["bytes_down"] + r["bytes_up"] for r in records) / 1e6:.1f} MB'),
  ]
  width = max(len(k) for k, _ in rows)
  print('\n'.join(f'{k:<{width}}  {v}' for k, v in rows))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    print(f'error: unexpected arguments {argv[1:]}; all options are --flags.',
          file=sys.stderr)
    sys.exit(2)
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    config = resolve_config()
    check_output_dir(_OUTPUT_DIR.value, _OVERWRITE.value)
    # Heavy imports only after the cheap checks.
    from experiments import setup  # pylint: disable=g-import-not-at-top
    experiment = setup.build_experiment(config)
  except config_util.UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)

  output_dir = _OUTPUT_DIR.value
  os.makedirs(output_dir, exist_ok=True)
  for name in RESULT_FILES:
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))
  with open(os.path.join(output_dir, 'config.json'), 'w') as f:
    json.dump(config.to_dict(), f, indent=2, sort_keys=True)

  records = []

  def on_round(record):
    records.append(record)
    print_progress(record, config.rounds)

  experiment.run(output_dir, on_round)
  print_summary(records)
  print(f'results in {output_dir}/ (metrics.csv, clients.csv)')


if __name__ == '__main__':
  app.run(main)
