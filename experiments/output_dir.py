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
import stat
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from absl import logging

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import reporting
from tf_fedscale import cli
from tf_fedscale import metrics
from tf_fedscale import output_files
from tf_fedscale import round_csv

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
# Rows keyed by round (server step in async mode) in their first column: one
# row per round from round 0, and the per-client logs (from round 1).
ROUND_CSVS = (metrics.METRICS_FILE, metrics.WALL_CLOCK_FILE)
CLIENT_LOGS = (CLIENTS_FILE, ASYNC_UPDATES_FILE)


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
  for name in RESULT_FILES:
    path = os.path.join(output_dir, name)
    if os.path.islink(path):
      raise config_util.UsageError(
          f'--resume: {path} is a symbolic link, and a run writes only inside '
          '--output_dir; replace it with a copy of what it points to or start a new '
          '--output_dir.')
  expected = {CLIENTS_FILE: list(metrics.TIMELINE_COLUMNS)}
  for name in (*ROUND_CSVS, *CLIENT_LOGS):
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


def _scans(output_dir: str) -> dict[str, round_csv.Scan]:
  return {name: round_csv.scan(os.path.join(output_dir, name),
                               consecutive=name in ROUND_CSVS)
          for name in (*ROUND_CSVS, *CLIENT_LOGS)
          if os.path.exists(os.path.join(output_dir, name))}


def last_intact_round(output_dir: str) -> tuple[int, list[str]]:
  """The last round whose rows are whole in every result CSV (-1: not even
  round 0's), and the damage that ends the intact rows of each file.

  A round's client rows are written (in one write) before its metrics.csv
  and wall_clock.csv rows, so a kill leaves a round either whole or visibly
  cut; a client log damaged after rows of round r may lack some of round r's.
  """
  scans = _scans(output_dir)
  last = []
  for name in ROUND_CSVS:
    rounds = scans[name].rounds if name in scans else []
    last.append(rounds[-1] if rounds else -1)
  for name in CLIENT_LOGS:
    if name in scans and scans[name].damage:
      last.append((scans[name].rounds or [1])[-1] - 1)
  return min(last), [s.damage for s in scans.values() if s.damage]


def resume_round(output_dir: str, checkpoints: Sequence[int]) -> Optional[int]:
  """The checkpointed round a resume continues from: the newest one through
  which every result file is intact; None (start over at round 0) if none is.
  Logs why when a newer checkpoint is passed over."""
  intact, damage = last_intact_round(output_dir)
  usable = [v for v in checkpoints if v <= intact]
  round_num = usable[-1] if usable else None
  if checkpoints and checkpoints[-1] != round_num:
    logging.warning(
        '--resume: results are whole through round %d only (%s): the run resumes '
        'from %s and runs the later rounds again', intact,
        '; '.join(damage) or 'later rows are missing',
        f'the checkpoint of round {round_num}' if usable else 'round 0')
  return round_num


def cut_after(output_dir: str, round_num: Optional[int]) -> None:
  """Drops from every result CSV the rows after `round_num` (all rows when
  None) and everything from a damaged line on, removes client_accuracy.csv
  when rounds are run again (it is the final model's), and the temporary
  files of killed writes. Untouched: files with nothing to drop."""
  keep = -1 if round_num is None else round_num
  rerun = False
  for name, found in _scans(output_dir).items():
    path = os.path.join(output_dir, name)
    rerun |= bool(found.rounds) and found.rounds[-1] > keep or bool(found.damage)
    round_csv.cut_after(path, found, keep)
  remove_temporaries(output_dir)
  accuracy = os.path.join(output_dir, CLIENT_ACCURACY_FILE)
  if rerun and os.path.lexists(accuracy):
    try:
      os.remove(accuracy)
    except OSError as e:
      raise output_files.WriteError(accuracy, e) from e


def remove_temporaries(output_dir: str) -> None:
  """Removes what killed writes of result files (and of the report) left behind."""
  output_files.remove_temporaries(output_dir, RESULT_FILES)
  report = os.path.join(output_dir, reporting.REPORT_DIR)
  if os.path.isdir(report) and not os.path.islink(report):
    output_files.remove_temporaries(report)


def prepare(output_dir: str, config_dict: Mapping[str, Any]) -> None:
  """Clears earlier results (only reached with --overwrite) and what killed
  writes left, and saves the config."""
  remove_temporaries(output_dir)
  for name in RESULT_FILES:
    path = os.path.join(output_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
  text = json.dumps(dict(config_dict), indent=2, sort_keys=True, allow_nan=False)
  output_files.replace(os.path.join(output_dir, CONFIG_FILE), text.encode())


class LockedError(Exception):
  """Another live process holds the directory's lock."""

  def __init__(self, path: str, pid: Optional[int]):
    super().__init__(path, pid)
    self.path, self.pid = path, pid


class NotALockError(Exception):
  """`run.lock` is a symbolic link or not a regular file: never written through."""

  def __init__(self, path: str):
    super().__init__(f'{path} is a symbolic link or not a regular file')
    self.path = path


def _read_pid(fd: int) -> Optional[int]:
  text = os.pread(fd, 64, 0).decode(errors='replace').strip()
  return int(text) if text.isascii() and text.isdigit() else None


def _open_lock(path: str) -> int:
  """Opens (or creates) the lock file, refusing a symbolic link, a FIFO, a
  directory or a device in its place."""
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o644)
  except OSError as e:
    if os.path.islink(path) or os.path.isdir(path):
      raise NotALockError(path) from e
    raise
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    os.close(fd)
    raise NotALockError(path)
  return fd


class Lock:
  """An exclusive `flock` on `<directory>/run.lock`, which holds the owner's
  pid. The kernel releases it when its process dies, so a killed run's lock
  is stale: the next run takes it over (and says so). The file is opened
  without following a symbolic link, and only a regular file is used."""

  def __init__(self, directory: str):
    self.path = os.path.join(directory, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> Optional[int]:
    """Takes the lock; returns the pid written by a holder that ended without
    releasing it (or None). Raises LockedError naming the live holder, and
    NotALockError."""
    while True:
      fd = _open_lock(self.path)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise LockedError(self.path, pid) from None
      try:
        same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
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
    """Removes the lock file (if still there: the directory may be gone) and unlocks."""
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass
    os.close(self._fd)
    self._fd = None
