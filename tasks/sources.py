"""What every loader returns: client splits backed by a store, plus filtering."""

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.tasks import storage


@dataclasses.dataclass(frozen=True, eq=False)
class ClientSplit:
  """One split of a federated dataset, read from a SQLite store.

  `client_ids` keep the source's first-appearance order; `num_examples` is
  aligned with them, and so is `positions`, each client's 0-based place in
  that order before any filtering (FedScale numbers clients by it). Elements
  of `client_data` are `parse(serialized proto)`, dicts of raw features.
  """

  path: str
  split: str
  client_ids: tuple[str, ...]
  num_examples: np.ndarray
  parse: Callable[[tf.Tensor], Any]
  positions: Optional[np.ndarray] = None  # None: 0, 1, 2, ... (unfiltered)

  def __post_init__(self):
    if self.positions is None:
      object.__setattr__(self, 'positions', np.arange(len(self.client_ids)))

  def __len__(self) -> int:
    return len(self.client_ids)

  @property
  def total_examples(self) -> int:
    return int(self.num_examples.sum())

  @property
  def client_data(self) -> tff.simulation.datasets.ClientData:
    return storage.sql_client_data(self.path, self.split, self.client_ids, self.parse)

  def keep(self, mask: np.ndarray) -> 'ClientSplit':
    mask = np.asarray(mask, bool)
    return dataclasses.replace(
        self, client_ids=tuple(c for c, k in zip(self.client_ids, mask) if k),
        num_examples=self.num_examples[mask], positions=self.positions[mask])

  def filter_sizes(self, min_samples: int = 1, max_samples: int = 0) -> 'ClientSplit':
    """Clients holding [min_samples, max_samples] examples (max 0: no bound)."""
    return self.keep(size_mask(self.num_examples, min_samples, max_samples))


def size_mask(num_examples: np.ndarray, min_samples: int, max_samples: int) -> np.ndarray:
  """Which training clients hold [min_samples, max_samples] examples (max 0: no
  bound); raises ValueError naming the flags when none does."""
  mask = num_examples >= max(min_samples, 1)
  if max_samples > 0:
    mask &= num_examples <= max_samples
  if not mask.any():
    raise ValueError(
        f'--min_samples/--max_samples: no training client holds between {min_samples} '
        f'and {max_samples or "any number of"} examples (sizes range '
        f'{num_examples.min()}-{num_examples.max()}); lower --min_samples or raise '
        '--max_samples.')
  return mask


def open_split(path: str, split: str, parse: Callable[[tf.Tensor], Any]) -> ClientSplit:
  ids, counts = storage.client_counts(path, split)
  return ClientSplit(path, split, tuple(ids), counts, parse)


@dataclasses.dataclass(frozen=True, eq=False)
class FederatedSource:
  """Train and test splits of one dataset, with free-form facts about it."""

  train: ClientSplit
  test: ClientSplit
  info: dict = dataclasses.field(default_factory=dict)

  def filter_train(self, min_samples: int = 1, max_samples: int = 0) -> 'FederatedSource':
    """Filters training clients by size (test clients are all kept, as FedScale's
    `filter_less`/`filter_more` only shape the training population)."""
    return dataclasses.replace(self, train=self.train.filter_sizes(min_samples, max_samples))


def missing_data_error(dataset: str, data_dir: str, expected: Sequence[str],
                       published: str, hint: str = '') -> FileNotFoundError:
  """One clear message: which files, where they go, where the data is published."""
  where = os.path.abspath(data_dir) if data_dir else '(no --data_dir given)'
  lines = '; '.join(expected)
  return FileNotFoundError(
      f'{dataset}: data not found in --data_dir={where}. Expected {lines}. '
      f'The dataset is published at {published}.' + (f' {hint}' if hint else ''))


def require_dir(dataset: str, data_dir: Optional[str], expected: Sequence[str],
                published: str) -> str:
  if not data_dir or not os.path.isdir(data_dir):
    raise missing_data_error(dataset, data_dir or '', expected, published)
  return os.path.abspath(data_dir)
