"""Where results go: per-round records through `tff.program` release managers,
and the per-client timeline as its own CSV."""

import asyncio
import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import accounting

ROUND_KEY = 'round'
TIMELINE_COLUMNS = ('round', 'client_id', 'status', 'start_s', 'download_s',
                    'compute_s', 'upload_s', 'end_s', 'samples', 'bytes_down',
                    'bytes_up')


def build_release_managers(output_dir: str, tensorboard: bool = False
                           ) -> list[tff.program.ReleaseManager]:
  """metrics.csv always (atomic rewrite per round), TensorBoard on request."""
  managers = [tff.program.CSVFileReleaseManager(
      os.path.join(output_dir, 'metrics.csv'),
      save_mode=tff.program.CSVSaveMode.WRITE, key_fieldname=ROUND_KEY)]
  if tensorboard:
    managers.append(tff.program.TensorBoardReleaseManager(
        os.path.join(output_dir, 'tensorboard')))
  return managers


def release(managers: Sequence[tff.program.ReleaseManager],
            record: Mapping[str, Any], round_num: int) -> None:
  """Releases one round's record to every manager."""

  async def _release_all():
    await asyncio.gather(*(m.release(dict(record), key=round_num) for m in managers))

  asyncio.run(_release_all())


class TimelineWriter:
  """Appends each invited client's round timeline to `clients.csv`."""

  def __init__(self, path: str, client_ids: Sequence[str]):
    self._path = path
    self._client_ids = client_ids
    if not os.path.exists(path):
      with open(path, 'w', newline='') as f:
        csv.writer(f).writerow(TIMELINE_COLUMNS)

  def write(self, outcome: accounting.RoundOutcome) -> None:
    status_names = np.array([s.name.lower() for s in accounting.Status])
    rows = zip(
        [outcome.round_num] * len(outcome.clients),
        [self._client_ids[c] for c in outcome.clients],
        status_names[outcome.status],
        np.full(len(outcome.clients), round(outcome.start_time_s, 3)),
        np.round(outcome.download_s, 3), np.round(outcome.compute_s, 3),
        np.round(outcome.upload_s, 3), np.round(outcome.end_s, 3),
        outcome.samples, outcome.bytes_down, outcome.bytes_up)
    with open(self._path, 'a', newline='') as f:
      csv.writer(f).writerows(rows)
