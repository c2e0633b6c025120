"""A run's output directory: every file a run writes there (one list, which
`--overwrite` clears), the exclusive lock that keeps two runs out of one
directory, and the checks made before anything is written.

Raises `config_util.UsageError` (one line naming --output_dir or --resume);
nothing here writes until `prepare` (or `Lock.acquire`) is called.
"""

import csv
import fcntl
import json
import os
import shutil
from collections.abc import Mapping
from typing import Any, Optional

from absl import logging

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import reporting
from tf_fedscale import cli
from tf_fedscale import metrics

CONFIG_FILE = 'config.json'
CLIENTS_FILE = 'clients.csv'
CLIENT_ACCURACY_FILE = 'client_accuracy.csv'
ASYNC_UPDATES_FILE = 'async_updates.csv'
CHECKPOINT_DIR = 'checkpoints'
LOCK_FILE = 'run.lock'
# Every file and directory a run (or its report) writes; --overwrite removes them all.
RESULT_FILES = (metrics.METRICS_FILE, metrics.WALL_CLOCK_FILE, CLIENTS_FILE,
                CLIENT_ACCURACY_FILE, ASYNC_UPDATES_FILE, CONFIG_FILE, CHECKPOINT_DIR,
                metrics.TENSORBOARD_DIR, reporting.REPORT_DIR)
# Rows keyed by round (server step in async mode) in their first column.
ROUND_CSVS = (metrics.METRICS_FILE, metrics.WALL_CLOCK_FILE)


def check_path(output_dir: str) -> None:
  """Refuses an empty path, a path that is (or lies under) a file, and a
  directory this process cannot write."""
  problem = cli.output_dir_problem(output_dir)
  if problem:
    raise config_util.UsageError(f'--output_dir: {problem}')


def existing_results(output_dir: str) -> list[str]:
  return [f for f in RESULT_FILES if os.path.lexists(os.path.join(output_dir, f))]


def check_new(output_dir: str, overwrite: bool) -> None:
  """Refuses to touch a directory holding earlier results unless told to."""
  check_path(output_dir)
  existing = existing_results(output_dir)
  if existing and not overwrite:
    raise config_util.UsageError(
        f'--output_dir: {output_dir!r} already holds results ({", ".join(existing)}); '
        'pass --overwrite to replace them or choose another directory.')


def _csv_header(path: str) -> Optional[list[str]]:
  """The header of a CSV, or None when its first line is incomplete."""
  with open(path, newline='') as f:
    first = f.readline()
  return next(csv.reader([first])) if first.endswith('\n') else None


def read_saved_config(output_dir: str) -> dict[str, Any]:
  """The config.json of the run in `output_dir`, checked for resuming."""
  path = os.path.join(output_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise config_util.UsageError(
        f'--resume: {output_dir!r} holds no run to resume ({CONFIG_FILE} missing); '
        'drop --resume to start one.')
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise config_util.UsageError(
        f'--resume: {path} is damaged ({e}); the run cannot be resumed: start a new '
        '--output_dir.') from e
  if not isinstance(saved, dict):
    raise config_util.UsageError(f'--resume: {path} holds no config (a JSON object); '
                                 'the run cannot be resumed: start a new --output_dir.')
  return saved


def check_resumable(output_dir: str, config: Mapping[str, Any]) -> None:
  """Refuses to resume a run that is not there, is damaged beyond the rows a
  resume rewrites, or had other settings."""
  saved = read_saved_config(output_dir)
  expected = {CLIENTS_FILE: list(metrics.TIMELINE_COLUMNS)}
  for name in (*ROUND_CSVS, CLIENTS_FILE):
    path = os.path.join(output_dir, name)
    if not os.path.exists(path):
      continue
    header = _csv_header(path)
    if not header or header[0] != metrics.ROUND_KEY or (
        name in expected and header != expected[name]):
      raise config_util.UsageError(
          f'--resume: {path} is cut or damaged in its header line; the run cannot be '
          'resumed: start a new --output_dir.')
  differing = config_util.differing_keys(saved, config)
  if differing:
    details = ', '.join(f'--{k} (run: {saved.get(k)!r}, now: {config.get(k)!r})'
                        for k in differing)
    raise config_util.UsageError(
        f'--resume: flags differ from the run in {output_dir!r}: {details}; '
        'pass the run\'s values or start a new --output_dir.')


def cut_to_checkpoint(output_dir: str, round_num: int) -> None:
  """Drops rows after `round_num` and damaged rows (a half-written last one)
  from the per-round CSVs, as a resume from that checkpoint rewrites them;
  warns when rows up to the checkpoint are missing."""
  for name in ROUND_CSVS:
    path = os.path.join(output_dir, name)
    if not os.path.exists(path):
      continue
    width = len(_csv_header(path))
    metrics.keep_csv_rows(path, lambda _, row: (
        len(row) == width and row[0].isdigit() and int(row[0]) <= round_num))
    with open(path, newline='') as f:
      kept = {int(row[0]) for row in list(csv.reader(f))[1:]}
    missing = sorted(set(range(round_num + 1)) - kept)
    if missing:
      logging.warning('%s lacks rounds %s (damaged rows were dropped); the resumed run '
                      'continues from round %d', path, missing, round_num)


def prepare(output_dir: str, config_dict: Mapping[str, Any]) -> None:
  """Clears earlier results (only reached with --overwrite) and saves the config."""
  for name in RESULT_FILES:
    path = os.path.join(output_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
  with open(os.path.join(output_dir, CONFIG_FILE), 'w') as f:
    json.dump(dict(config_dict), f, indent=2, sort_keys=True, allow_nan=False)


class LockedError(Exception):
  """Another live process holds the directory's lock."""

  def __init__(self, path: str, pid: Optional[int]):
    super().__init__(path, pid)
    self.path, self.pid = path, pid


def _read_pid(fd: int) -> Optional[int]:
  text = os.pread(fd, 64, 0).decode(errors='replace').strip()
  return int(text) if text.isdigit() else None


class Lock:
  """An exclusive `flock` on `<directory>/run.lock`, which holds the owner's
  pid. The kernel releases it when its process dies, so a killed run's lock
  is stale: the next run takes it over (and says so)."""

  def __init__(self, directory: str):
    self.path = os.path.join(directory, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> Optional[int]:
    """Takes the lock; returns the pid of a dead holder it took over (or None).
    Raises LockedError naming the live holder."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise LockedError(self.path, pid) from None
      try:
        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if same:  # not a file its holder removed while we opened it
        break
      os.close(fd)
    previous = _read_pid(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    self._fd = fd
    return previous if previous != os.getpid() else None

  def release(self) -> None:
    if self._fd is None:
      return
    os.remove(self.path)
    os.close(self._fd)
    self._fd = None
