"""Where results go: per-round records through `tff.program` release managers,
and the per-client timeline as its own CSV."""

import asyncio
import csv
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale.engine import coroutines

ROUND_KEY = 'round'
METRICS_FILE = 'metrics.csv'
WALL_CLOCK_FILE = 'wall_clock.csv'
TENSORBOARD_DIR = 'tensorboard'
TIMELINE_COLUMNS = ('round', 'client_id', 'status', 'start_s', 'download_s',
                    'compute_s', 'upload_s', 'end_s', 'samples', 'bytes_down',
                    'bytes_up')


# Not determined by the seed: kept out of metrics.csv so that replays and
# resumed runs reproduce it byte for byte.
WALL_CLOCK_KEYS = ('wall_clock_s',)


def _csv(path: str) -> tff.program.CSVFileReleaseManager:
  """A CSV keyed by round, rewritten atomically (temp file + rename) per release;
  releasing round r drops rows >= r, so a resumed run never duplicates rows."""
  return tff.program.CSVFileReleaseManager(
      path, save_mode=tff.program.CSVSaveMode.WRITE, key_fieldname=ROUND_KEY)


def build_release_managers(output_dir: str, tensorboard: bool = False
                           ) -> list[tff.program.ReleaseManager]:
  """metrics.csv and wall_clock.csv always, TensorBoard on request."""
  is_wall_clock = lambda path: path[-1] in WALL_CLOCK_KEYS
  managers = [
      tff.program.FilteringReleaseManager(
          _csv(os.path.join(output_dir, METRICS_FILE)),
          lambda path: not is_wall_clock(path)),
      tff.program.FilteringReleaseManager(
          _csv(os.path.join(output_dir, WALL_CLOCK_FILE)), is_wall_clock),
  ]
  if tensorboard:
    managers.append(tff.program.TensorBoardReleaseManager(
        os.path.join(output_dir, TENSORBOARD_DIR)))
  return managers


def release(managers: Sequence[tff.program.ReleaseManager],
            record: Mapping[str, Any], round_num: int) -> None:
  """Releases one round's record to every manager."""

  async def _release_all():
    await asyncio.gather(*(m.release(dict(record), key=round_num) for m in managers))

  coroutines.run(_release_all())


def timeline_rows(outcome: accounting.RoundOutcome,
                  client_ids: Sequence[str]) -> list[tuple]:
  """One `TIMELINE_COLUMNS` row per invited client of a round."""
  status_names = np.array([s.name.lower() for s in accounting.Status])
  return list(zip(
      [outcome.round_num] * len(outcome.clients),
      [client_ids[c] for c in outcome.clients],
      status_names[outcome.status],
      np.full(len(outcome.clients), round(outcome.start_time_s, 3)),
      np.round(outcome.download_s, 3), np.round(outcome.compute_s, 3),
      np.round(outcome.upload_s, 3), np.round(outcome.end_s, 3),
      outcome.samples, outcome.bytes_down, outcome.bytes_up))


class ClientLog:
  """A per-client CSV (`clients.csv`, `async_updates.csv`) whose first column
  is the round; the program loop appends each round's rows."""

  def __init__(self, path: str, columns: Sequence[str]):
    if not columns or columns[0] != ROUND_KEY:
      raise ValueError(f'a client log starts with a {ROUND_KEY!r} column, got {columns!r}.')
    self.path = path
    if not os.path.exists(path):
      with open(path, 'w', newline='') as f:
        csv.writer(f, lineterminator='\n').writerow(columns)

  def append(self, rows: Sequence[Sequence[Any]]) -> None:
    with open(self.path, 'a', newline='') as f:
      csv.writer(f, lineterminator='\n').writerows(rows)

  def truncate_after(self, round_num: int) -> None:
    """Drops rows of later rounds and a half-written last line (for resume)."""
    keep_csv_rows(self.path, lambda i, row: int(row[0]) <= round_num)


def keep_csv_rows(path: str, keep: Callable[[int, list[str]], bool]) -> None:
  """Rewrites the CSV at `path` (atomically) with its header and the data rows
  for which keep(index, row) holds; a half-written last line is dropped."""
  with open(path, newline='') as f:
    text = f.read()
  if not text.endswith('\n'):
    text = text[:text.rfind('\n') + 1]  # a kill mid-write left a partial row
  rows = list(csv.reader(text.splitlines()))
  kept = [row for i, row in enumerate(rows[1:]) if keep(i, row)]
  tmp = f'{path}.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(rows[0])
    writer.writerows(kept)
  os.replace(tmp, path)
