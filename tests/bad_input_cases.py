r"""Bad inputs and faults of the command-line programs, one row each, and the
runner that plays them in-process (one process per program, see
bad_input_test.py).

Every row must end in exit status 2, exactly one `error:` line on stderr, no
traceback, and its case directory byte-identical to what its setup made
(inputs and a pre-existing --output_dir holding a user's file).

  python -m tests.bad_input_cases tf_fedscale.experiments.run ROOT RESULTS.json
"""

import contextlib
import dataclasses
import hashlib
import io
import importlib
import json
import os
import pickle
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Optional

RUN = 'tf_fedscale.experiments.run'
REPORT = 'tf_fedscale.experiments.report'
STATS = 'tf_fedscale.experiments.dataset_stats'
INSPECT = 'tf_fedscale.traces.inspect'
CONVERT = 'tf_fedscale.traces.convert'
PROGRAMS = (RUN, REPORT, STATS, INSPECT, CONVERT)
USER_FILE = 'notes.txt'   # a file the user keeps in --output_dir
# A directory nobody can write into, root included (CI runs as root, for whom
# permission bits do not bind, so a chmod'ed directory would be writable and a
# read-only bind mount needs privileges CI lacks): /proc refuses new entries
# to everyone. As a user, `cli.output_dir_problem` refuses it (permission
# denied); as root, os.access says yes and creating the directory fails
# (`claim_output_dir`), still before anything is written.
UNWRITABLE = '/proc/tf_fedscale_cannot_write_here'
SMALL = ('--rounds=2', '--clients_per_round=5', '--eval_every=1', '--eval_clients=10',
         '--local_epochs=0', '--local_steps=2')


@dataclasses.dataclass(frozen=True)
class Case:
  """`args` may hold {dir} (the case directory) and {cache} (a shared cache);
  `setup(case_dir)` writes the inputs; `expect` is a piece of the error line."""

  name: str
  program: str
  args: Sequence[str]
  expect: str
  setup: Optional[Callable[[str], None]] = None


def _write(path: str, text: str, mode: str = 'w') -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, mode) as f:
    f.write(text)


def _config_file(body: str) -> Callable[[str], None]:
  source = ('import ml_collections\n'
            'from tf_fedscale.experiments.configs import default\n\n'
            'def get_config():\n' + ''.join(f'  {line}\n' for line in body.splitlines()))
  return lambda d: _write(os.path.join(d, 'config.py'), source)


def _evil_pickle(d: str) -> None:
  """A pickle that would run `touch <d>/pwned` when unpickled unrestricted."""
  class Evil:  # pylint: disable=too-few-public-methods
    def __reduce__(self):
      return os.system, (f'touch {os.path.join(d, "pwned")}',)
  _write(os.path.join(d, 'evil.pkl'), pickle.dumps(Evil()), 'wb')


def _leaf(users: dict, users_list=None, split_users: Optional[dict] = None
          ) -> Callable[[str], None]:
  """LEAF FEMNIST shards: train from `users` ({name: labels}), test a copy."""
  def setup(d: str) -> None:
    for split in ('train', 'test'):
      data = split_users if split == 'test' and split_users else users
      user_data = {u: {'x': [[1.0] * 784 for _ in ys], 'y': list(ys)}
                   for u, ys in data.items()}
      listed = list(data) if users_list is None or split == 'test' else users_list
      _write(os.path.join(d, 'leaf', split, f'{split}_0.json'), json.dumps(
          {'users': listed, 'num_samples': [len(v) for v in data.values()],
           'user_data': user_data}))
  return setup


def _fixture(writer: str, folder: str, **kwargs) -> Callable[[str], None]:
  """Setup writing `tests.fixtures.<writer>` data into `<case dir>/<folder>`."""
  def setup(d: str) -> None:
    from tests import fixtures  # pylint: disable=g-import-not-at-top
    getattr(fixtures, writer)(os.path.join(d, folder), **kwargs)
  return setup


def _leaf_shard(users: dict) -> Callable[[str], None]:
  """The same LEAF shard (`{user: {'x', 'y'}}`) as train and test."""
  def setup(d: str) -> None:
    from tests import fixtures  # pylint: disable=g-import-not-at-top
    for split in ('train', 'test'):
      fixtures.write_leaf_shard(os.path.join(d, 'leaf', split, f'{split}_0.json'), users)
  return setup


_GOOD_USERS = {f'w{i}': [i % 62] * 6 for i in range(8)}
_BAD_LABEL_USERS = dict(_GOOD_USERS, w5=[3, 3, 3, 1000, 3, 3])
_NEGATIVE_LABEL_USERS = dict(_GOOD_USERS, w2=[-1] * 6)


def _metrics_csv(rows: int) -> str:
  columns = ('round', 'virtual_time_s', 'round_duration_s', 'selected', 'completed',
             'dropped', 'stragglers', 'missed_deadline', 'train_loss', 'eval_loss',
             'eval_accuracy', 'bytes_down', 'bytes_up', 'client_compute_s')
  lines = [','.join(columns)]
  for r in range(rows):
    lines.append(','.join(str(v) for v in (
        r, 60.0 * r, 60.0, 5, 5, 0, 0, 0, 2.0 - 0.1 * r, 2.0 - 0.1 * r, 0.1 * r,
        1000, 1000, 3.5)))
  return '\n'.join(lines) + '\n'


def _run_dir(metrics: Optional[str] = None) -> Callable[[str], None]:
  """A finished run's files as experiments.report reads them."""
  def setup(d: str) -> None:
    out = os.path.join(d, 'out')
    _write(os.path.join(out, 'metrics.csv'),
           _metrics_csv(4) if metrics is None else metrics)
    _write(os.path.join(out, 'wall_clock.csv'),
           'round,wall_clock_s\n' + ''.join(f'{r},{r}.5\n' for r in range(4)))
    _write(os.path.join(out, 'clients.csv'),
           'round,client_id,status,start_s,download_s,compute_s,upload_s,end_s,'
           'samples,bytes_down,bytes_up\n' + ''.join(
               f'{r},c{c},{"completed" if c else "dropped_offline"},{60.0 * r},1.0,2.0,'
               f'1.0,{4.0 - (c == 0)},10,1000,1000\n'
               for r in range(1, 4) for c in range(3)))
    _write(os.path.join(out, 'report', 'summary.md'), '# an earlier report\n')
  return setup


def _resume_dir(damage: Callable[[str], None]) -> Callable[[str], None]:
  """A run directory (config.json matching SMALL, metrics, clients) damaged."""
  def setup(d: str) -> None:
    # pylint: disable=g-import-not-at-top
    from tf_fedscale.experiments import config_util
    from tf_fedscale.experiments import run
    from tf_fedscale.experiments import setup as setup_lib
    overrides = dict(a.lstrip('-').split('=') for a in SMALL)
    config = config_util.apply_overrides(run.default_config.get_config(), {
        k: type(run.default_config.get_config()[k])(v) for k, v in overrides.items()})
    config = setup_lib.apply_task_defaults(config, overrides)
    out = os.path.join(d, 'out')
    _run_dir()(d)
    _write(os.path.join(out, 'config.json'), json.dumps(config.to_dict(), indent=2))
    damage(out)
  return setup


def _cut(name: str, keep_bytes: int) -> Callable[[str], None]:
  def damage(out: str) -> None:
    path = os.path.join(out, name)
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:keep_bytes])
  return damage


def _corrupt_checkpoint(out: str) -> None:
  from tf_fedscale import checkpoint  # pylint: disable=g-import-not-at-top
  _write(os.path.join(out, 'checkpoints', f'{checkpoint.PREFIX}2', 'saved_model.pb'),
         'not a checkpoint')


def _output_dir_holder(d: str) -> None:
  from tf_fedscale.experiments import output_dir  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(d, 'out'), exist_ok=True)
  output_dir.Lock(os.path.join(d, 'out')).acquire()   # held by this process


def _lock_in_place(make: Callable[[str], None]) -> Callable[[str], None]:
  """Setup putting what `make(path)` makes where --output_dir's run.lock goes."""
  return lambda d: make(os.path.join(d, 'out', 'run.lock'))


def _file(name: str, text: str = 'a file\n') -> Callable[[str], None]:
  return lambda d: _write(os.path.join(d, name), text)


_DEVICES_CSV = 'device_id,compute_ms_per_sample,download_kbps,upload_kbps\n0,10,1000,abc\n'

CASES = (
    # ---- experiments.run: the output directory
    Case('run_output_dir_locked', RUN, ['--output_dir={dir}/out', *SMALL],
         'is in use by pid', _output_dir_holder),
    Case('run_output_dir_under_a_file', RUN,
         ['--output_dir={dir}/afile/out', *SMALL], '--output_dir', _file('afile')),
    Case('run_output_dir_unwritable', RUN,
         [f'--output_dir={UNWRITABLE}/out', *SMALL], '--output_dir: cannot'),
    Case('run_output_dir_empty', RUN, ['--output_dir=', *SMALL],
         '--output_dir'),
    Case('run_output_dir_holds_results', RUN,
         ['--output_dir={dir}/out', *SMALL], 'pass --overwrite', _run_dir()),
    # ---- experiments.run: resume
    Case('resume_clients_csv_cut', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL], 'clients.csv',
         _resume_dir(_cut('clients.csv', 5))),
    Case('resume_config_json_truncated', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL], 'config.json',
         _resume_dir(_cut('config.json', 40))),
    Case('resume_metrics_csv_header_cut', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL], 'metrics.csv',
         _resume_dir(_cut('metrics.csv', 7))),
    Case('resume_nothing_to_resume', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL], 'no run to resume'),
    Case('resume_flags_differ', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL, '--seed=3'], '--seed',
         _resume_dir(lambda out: None)),
    Case('resume_corrupt_checkpoint', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL],
         'aside and resume again: with no earlier checkpoint it starts over at round 0',
         _resume_dir(_corrupt_checkpoint)),
    Case('resume_checkpoints_dir_is_a_symlink', RUN,
         ['--output_dir={dir}/out', '--resume', *SMALL], 'checkpoints is a symbolic link',
         _resume_dir(lambda out: os.symlink(os.path.dirname(out),
                                            os.path.join(out, 'checkpoints')))),
    Case('run_lock_is_a_symlink', RUN, ['--output_dir={dir}/out', *SMALL],
         'run.lock is a symbolic link or not a regular file', _lock_in_place(
             lambda path: os.symlink(os.path.join(os.path.dirname(path), USER_FILE), path))),
    Case('run_lock_is_a_dangling_symlink', RUN, ['--output_dir={dir}/out', *SMALL],
         'run.lock is a symbolic link or not a regular file', _lock_in_place(
             lambda path: os.symlink(path + '.target', path))),
    Case('run_lock_is_a_directory', RUN, ['--output_dir={dir}/out', *SMALL],
         'run.lock is a symbolic link or not a regular file', _lock_in_place(os.mkdir)),
    Case('run_lock_is_a_fifo', RUN, ['--output_dir={dir}/out', *SMALL],
         'run.lock is a symbolic link or not a regular file', _lock_in_place(os.mkfifo)),
    # ---- experiments.run: flags
    Case('flag_does_not_parse', RUN,
         ['--output_dir={dir}/out', '--clients_per_round=1e9'], '--clients_per_round'),
    Case('flag_unknown', RUN, ['--output_dir={dir}/out', '--roundz=3'],
         'roundz'),
    Case('trace_seed_negative', RUN,
         ['--output_dir={dir}/out', '--trace_seed=-1', *SMALL], '--trace_seed'),
    Case('seed_negative', RUN,
         ['--output_dir={dir}/out', '--seed=-1', *SMALL], '--seed:'),
    Case('min_samples_too_large', RUN,
         ['--output_dir={dir}/out', '--min_samples=100000000', *SMALL],
         '--min_samples/--max_samples'),
    Case('task_options_without_value', RUN,
         ['--output_dir={dir}/out', '--task_options=num_clients', *SMALL],
         'num_clients=VALUE'),
    Case('backward_factor_under_flops', RUN,
         ['--output_dir={dir}/out', '--compute_model=flops', '--backward_factor=2',
          *SMALL], '--backward_factor: --compute_model=flops'),
    Case('compute_model_unknown', RUN,
         ['--output_dir={dir}/out', '--compute_model=measured', *SMALL], '--compute_model'),
    Case('overcommit_inf', RUN,
         ['--output_dir={dir}/out', '--overcommit=inf', *SMALL], '--overcommit'),
    Case('proximal_strength_inf', RUN,
         ['--output_dir={dir}/out', '--algorithm=fedprox', '--proximal_strength=inf',
          *SMALL], '--proximal_strength'),
    Case('client_momentum_with_mime_lite', RUN,
         ['--output_dir={dir}/out', '--algorithm=mime-lite', '--client_momentum=0.9',
          *SMALL], '--client_momentum'),
    Case('client_weight_decay_negative', RUN,
         ['--output_dir={dir}/out', '--client_weight_decay=-1', *SMALL],
         '--client_weight_decay'),
    Case('target_accuracy_nan', RUN,
         ['--output_dir={dir}/out', '--target_accuracy=nan', *SMALL], '--target_accuracy'),
    Case('dp_with_a_selector_reading_losses', RUN,
         ['--output_dir={dir}/out', '--aggregator=dp', '--selector=oort', *SMALL],
         '--selector: oort with --aggregator=dp'),
    Case('dp_in_async_mode', RUN,
         ['--output_dir={dir}/out', '--aggregator=dp', '--mode=async', *SMALL],
         '--aggregator: dp is not supported with --mode=async'),
    Case('dp_sampling_poisson', RUN,
         ['--output_dir={dir}/out', '--aggregator=dp', '--dp_sampling=poisson', *SMALL],
         '--dp_sampling'),
    Case('remote_worker_unreachable', RUN,
         ['--output_dir={dir}/out', '--execution=remote:localhost:1', *SMALL],
         'localhost:1'),
    Case('async_buffer_never_fills', RUN,
         ['--output_dir={dir}/out', '--mode=async', '--buffer_size=1000000', *SMALL],
         '--buffer_size'),
    Case('async_inprocess_clients_per_subround', RUN,
         ['--output_dir={dir}/out', '--mode=async', '--execution=inprocess',
          '--clients_per_subround=4', *SMALL], '--clients_per_subround'),
    Case('too_many_clients_per_round', RUN,
         ['--output_dir={dir}/out', '--clients_per_round=100000', '--rounds=1'],
         '--clients_per_round'),
    Case('max_concurrent_clients_zero', RUN,
         ['--output_dir={dir}/out', '--max_concurrent_clients=0', *SMALL],
         '--max_concurrent_clients'),
    Case('cache_dir_is_a_file', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={dir}/afile', *SMALL], '--cache_dir', _file('afile')),
    Case('unknown_task', RUN, ['--output_dir={dir}/out', '--task=imagenet'],
         '--task'),
    # ---- experiments.run: --config
    Case('config_missing', RUN,
         ['--output_dir={dir}/out', '--config={dir}/nope.py'], '--config'),
    Case('config_lacks_a_field', RUN,
         ['--output_dir={dir}/out', '--config={dir}/config.py', *SMALL], 'seed',
         _config_file('c = default.get_config()\ndel c.seed\nreturn c')),
    Case('config_field_wrong_type', RUN,
         ['--output_dir={dir}/out', '--config={dir}/config.py', *SMALL[:-1]], 'local_steps',
         _config_file('return ml_collections.ConfigDict(\n'
                      '    dict(default.get_config().to_dict(), local_steps="many"))')),
    Case('config_calls_exit', RUN,
         ['--output_dir={dir}/out', '--config={dir}/config.py', *SMALL], 'exit',
         _config_file('import sys\nsys.exit(0)')),
    Case('config_raises', RUN,
         ['--output_dir={dir}/out', '--config={dir}/config.py'], '--config',
         _config_file('raise RuntimeError("boom")')),
    # ---- experiments.run: traces (already handled)
    Case('device_trace_missing', RUN,
         ['--output_dir={dir}/out', '--device_trace={dir}/none.csv', *SMALL],
         '--device_trace'),
    Case('device_trace_bad_value', RUN,
         ['--output_dir={dir}/out', '--device_trace={dir}/devices.csv', *SMALL],
         '--device_trace', _file('devices.csv', _DEVICES_CSV)),
    Case('availability_trace_malicious_pickle', RUN,
         ['--output_dir={dir}/out', '--availability_trace={dir}/evil.pkl', *SMALL],
         'refusing to load', _evil_pickle),
    # ---- experiments.run: datasets (LEAF)
    Case('leaf_label_out_of_range', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], "user 'w5' example 3", _leaf(_BAD_LABEL_USERS)),
    Case('leaf_label_negative', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], "user 'w2' example 0",
         _leaf(_NEGATIVE_LABEL_USERS)),
    Case('leaf_user_missing_from_user_data', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], "'ghost'",
         _leaf(_GOOD_USERS, users_list=[*_GOOD_USERS, 'ghost'])),
    Case('leaf_users_a_string', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], '"users"', _leaf(_GOOD_USERS, users_list='w0')),
    Case('leaf_pixels_wrong_size', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], 'needs 784 pixel values',
         _leaf_shard({f'w{i}': {'x': [[0.5] * 100] * 4, 'y': [1] * 4} for i in range(6)})),
    Case('leaf_text_task_given_numbers', RUN,
         ['--output_dir={dir}/out', '--task=reddit', '--data_dir={dir}/leaf',
          '--cache_dir={cache}', *SMALL], 'needs one text string',
         _leaf_shard({f'u{i}': {'x': [[1.0, 2.0]] * 4} for i in range(6)})),
    # ---- experiments.run: datasets (TFF SQLite, FedScale CSV, TFDS)
    Case('tff_sqlite_label_out_of_range', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/tff',
          '--cache_dir={cache}', *SMALL], "client 'f0001_41' example 4: label 70",
         _fixture('write_tff_emnist', 'tff',
                  replace={('all_train', 'f0001_41', 4): {'label': 70}})),
    Case('tff_sqlite_pixels_wrong_shape', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/tff',
          '--cache_dir={cache}', *SMALL], "client 'f0000_14' example 2: does not fit",
         _fixture('write_tff_emnist', 'tff',
                  replace={('all_test', 'f0000_14', 2): {'pixels': [0.5] * 100}})),
    Case('fedscale_csv_label_out_of_range', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/fedscale',
          '--cache_dir={cache}', *SMALL], "train.csv:5: client '101' example 1: label_id 62",
         _fixture('write_fedscale_images', 'fedscale',
                  counts={'train': [2, 3, 2], 'test': [2]}, label_ids={('train', 3): 62})),
    Case('fedscale_csv_image_not_an_image', RUN,
         ['--output_dir={dir}/out', '--task=femnist', '--data_dir={dir}/fedscale',
          '--cache_dir={cache}', *SMALL], "client '100' example 1: sample",
         _fixture('write_fedscale_images', 'fedscale', counts={'train': [2, 3], 'test': [2]},
                  not_images=[('train', 1)])),
    Case('tfds_label_beyond_declared_classes', RUN,
         ['--output_dir={dir}/out', '--task=tfds', '--data_dir={dir}/tfds',
          '--task_options=name=toy_images,partition=iid,num_clients=6',
          '--cache_dir={cache}', *SMALL], 'is not a class id in [0, 4)',
         _fixture('write_tfds', 'tfds', num_train=40, num_test=10,
                  declared_num_classes=4)),
    # ---- experiments.report
    Case('report_timeline_round_absent', REPORT,
         ['--run_dir={dir}/out', '--timeline_round=999'], '--timeline_round', _run_dir()),
    Case('report_metrics_header_only', REPORT, ['--run_dir={dir}/out'],
         'metrics.csv', _run_dir(_metrics_csv(0))),
    Case('report_metrics_truncated', REPORT, ['--run_dir={dir}/out'],
         'metrics.csv', _run_dir(_metrics_csv(3)[:50])),
    Case('report_metrics_garbage', REPORT, ['--run_dir={dir}/out'],
         'metrics.csv', _run_dir('\x00\x01garbage\nzz\n')),
    Case('report_metrics_nul_in_header', REPORT, ['--run_dir={dir}/out'],
         'metrics.csv: lacks the columns [\'round_duration_s\']',
         _run_dir(_metrics_csv(3).replace('round_duration_s', 'round_dur\0ation_s'))),
    Case('report_metrics_nul_in_a_value', REPORT, ['--run_dir={dir}/out'],
         "column 'round_duration_s' holds text",
         _run_dir(_metrics_csv(3).replace('\n1,60.0,60.0,', '\n1,60.0,6\x000.0,'))),
    Case('report_dir_is_a_symlink', REPORT, ['--run_dir={dir}/out'],
         'report is a symbolic link', lambda d: (
             _run_dir()(d), shutil.rmtree(os.path.join(d, 'out', 'report')),
             os.symlink(d, os.path.join(d, 'out', 'report')))),
    Case('report_no_run', REPORT, ['--run_dir={dir}/out'], '--run_dir'),
    Case('report_target_nan', REPORT,
         ['--run_dir={dir}/out', '--target_accuracy=nan'], '--target_accuracy', _run_dir()),
    # ---- experiments.dataset_stats
    Case('stats_output_dir_is_a_file', STATS,
         ['--task=synthetic', '--output_dir={dir}/afile'], '--output_dir', _file('afile')),
    Case('stats_leaf_users_a_string', STATS,
         ['--task=femnist', '--data_dir={dir}/leaf', '--cache_dir={cache}',
          '--output_dir={dir}/out'], '"users"', _leaf(_GOOD_USERS, users_list='w0')),
    Case('stats_min_samples_too_large', STATS,
         ['--task=synthetic', '--min_samples=100000000', '--output_dir={dir}/out'],
         '--min_samples/--max_samples'),
    Case('stats_task_missing', STATS, ['--output_dir={dir}/out'],
         '--task'),
    # ---- traces.inspect
    Case('inspect_output_dir_is_a_file', INSPECT,
         ['--num_devices=50', '--output_dir={dir}/afile'], '--output_dir', _file('afile')),
    Case('inspect_malicious_pickle', INSPECT,
         ['--device_trace={dir}/evil.pkl', '--output_dir={dir}/out'], 'refusing to load',
         _evil_pickle),
    Case('inspect_bad_trace', INSPECT,
         ['--device_trace={dir}/devices.csv', '--output_dir={dir}/out'], '--device_trace',
         _file('devices.csv', _DEVICES_CSV)),
    Case('inspect_no_devices', INSPECT,
         ['--num_devices=0', '--output_dir={dir}/out'], '--num_devices'),
    # ---- traces.convert
    Case('convert_malicious_pickle', CONVERT,
         ['--availability_trace={dir}/evil.pkl', '--availability_out={dir}/out/a.npz'],
         'refusing to load', _evil_pickle),
    Case('convert_bad_extension', CONVERT,
         ['--device_trace={dir}/devices.csv', '--device_out={dir}/out/d.txt'], '.npz',
         _file('devices.csv', _DEVICES_CSV)),
    Case('convert_missing_input', CONVERT,
         ['--device_trace={dir}/none.csv', '--device_out={dir}/out/d.npz'],
         '--device_trace'),
)


def snapshot(root: str) -> dict[str, str]:
  """{relative path: sha256 of the content, 'dir', or where a symbolic link
  points} of everything under `root`."""
  out = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      if os.path.islink(path):
        out[os.path.relpath(path, root)] = f'link to {os.readlink(path)}'
      elif name in dirs:
        out[os.path.relpath(path, root)] = 'dir'
      elif os.path.isfile(path):
        with open(path, 'rb') as f:
          out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
      else:
        out[os.path.relpath(path, root)] = 'special'
  return out


def run_in_process(main: Callable[[Sequence[str]], None], argv: Sequence[str]
                   ) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of one invocation, as `cli.run` would do it;
  an uncaught exception is a traceback on stderr and status 1."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tf_fedscale import cli  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  stdout, stderr = io.StringIO(), io.StringIO()
  status = 0
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    try:
      main(cli.parse_flags(argv))
    except SystemExit as e:
      status = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      status = 1
  return status, stdout.getvalue(), stderr.getvalue()


def play(program: str, root: str) -> dict[str, dict]:
  """Plays every case of `program` under `root`; {name: outcome}."""
  module = importlib.import_module(program)
  if hasattr(module, 'define_flags'):
    module.define_flags()
  cache = os.path.join(root, '_cache')
  results = {}
  for case in (c for c in CASES if c.program == program):
    case_dir = os.path.join(root, case.name)
    os.makedirs(os.path.join(case_dir, 'out'), exist_ok=True)
    _write(os.path.join(case_dir, 'out', USER_FILE), 'my own notes\n')
    if case.setup:
      case.setup(case_dir)
    before = snapshot(case_dir)
    args = [a.format(dir=case_dir, cache=cache) for a in case.args]
    status, stdout, stderr = run_in_process(module.main, [program, *args])
    after = snapshot(case_dir)
    results[case.name] = dict(
        status=status, stdout=stdout[-2000:], stderr=stderr[-4000:],
        changed=sorted(k for k in set(before) | set(after)
                       if before.get(k) != after.get(k)))
  return results


def main(argv: Sequence[str]) -> None:
  program, root, results_path = argv[1:]
  results = play(program, root)
  with open(results_path, 'w') as f:
    json.dump(results, f, indent=1)


if __name__ == '__main__':
  main(sys.argv)
