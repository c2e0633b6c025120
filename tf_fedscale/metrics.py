"""Where results go: per-round records through `tff.program` release managers,
and the per-client timeline as its own CSV (both `round_csv` files)."""

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale.engine import coroutines
from tf_fedscale import output_files
from tf_fedscale import round_csv

ROUND_KEY = round_csv.ROUND_KEY
METRICS_FILE = 'metrics.csv'
WALL_CLOCK_FILE = 'wall_clock.csv'
TENSORBOARD_DIR = 'tensorboard'
TIMELINE_COLUMNS = ('round', 'client_id', 'status', 'start_s', 'download_s',
                    'compute_s', 'upload_s', 'end_s', 'samples', 'bytes_down',
                    'bytes_up')


# Not determined by the seed: kept out of metrics.csv so that replays and
# resumed runs reproduce it byte for byte.
WALL_CLOCK_KEYS = ('wall_clock_s',)


def build_release_managers(output_dir: str, tensorboard: bool = False
                           ) -> list[tff.program.ReleaseManager]:
  """metrics.csv and wall_clock.csv always, TensorBoard on request."""
  is_wall_clock = lambda path: path[-1] in WALL_CLOCK_KEYS
  managers = [
      tff.program.FilteringReleaseManager(
          round_csv.CsvReleaseManager(os.path.join(output_dir, METRICS_FILE)),
          lambda path: not is_wall_clock(path)),
      tff.program.FilteringReleaseManager(
          round_csv.CsvReleaseManager(os.path.join(output_dir, WALL_CLOCK_FILE)), is_wall_clock),
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
  is the round: created with the first rows, then each round's rows are
  appended in one write, with the file's line ending."""

  def __init__(self, path: str, columns: Sequence[str]):
    if not columns or columns[0] != ROUND_KEY:
      raise ValueError(f'a client log starts with a {ROUND_KEY!r} column, got {columns!r}.')
    self.path = path
    self.columns = tuple(columns)

  def append(self, rows: Sequence[Sequence[Any]]) -> None:
    if not os.path.lexists(self.path):
      round_csv.create(self.path, self.columns, '\n', rows)
      return
    line_ending = round_csv.scan_header(self.path).line_ending
    output_files.append(self.path, round_csv.format_rows(rows, line_ending))

  def truncate_after(self, round_num: int) -> None:
    """Drops rows of later rounds and everything from a damaged line on (for resume)."""
    if os.path.lexists(self.path):
      round_csv.cut_after(self.path, round_csv.scan(self.path, consecutive=False), round_num)
