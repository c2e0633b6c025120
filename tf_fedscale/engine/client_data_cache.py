"""Client datasets held in memory, and built ahead of the clients that train on them.

A client's dataset comes out of the task's dataset computation (a SQLite
query, decoding, the local-work pipeline). Its elements are the same every
round (the pipeline's shuffle is seeded), so the in-process engine keeps them
as tensors in a bounded LRU cache (`--data_cache_mb`) and rebuilds the dataset
from memory next time. `Prefetcher` builds the datasets of a round's clients
on a background thread, in the order the clients train, at most `depth`
ahead, so decoding overlaps training.
"""

import collections
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent import futures
from typing import Any

import numpy as np
import tensorflow as tf


def _nbytes(element: Any) -> int:
  return sum(int(np.prod(t.shape)) * t.dtype.size for t in tf.nest.flatten(element))


def _shape_key(element: Any) -> tuple:
  return tuple(tuple(t.shape) for t in tf.nest.flatten(element))


# Elements stacked by one batch op: a client's whole dataset, usually (larger ones
# become several runs). TF's batch op costs time in proportion to this size when
# the elements' shapes differ (2**31: minutes), so it stays small.
_RUN_ELEMENTS = 1 << 12


def single_pass(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """`dataset` without tf.data's autotuning and default graph rewrites.

  Both pay off on long input pipelines; a client's dataset is read once, from
  a few hundred elements, where they cost more than the read itself: 3 ms of
  CPU and 18 ms of latency on a 100-element client here, and 10 % of a
  femnist_cnn client's training when its iterator is made inside `work`.
  They change neither the elements nor their order.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  options.experimental_optimization.apply_default_optimizations = False
  return dataset.with_options(options)


def _stacked_runs(dataset: tf.data.Dataset) -> list[Any]:
  """The dataset's consecutive elements of one shape, each run stacked.

  Elements of one shape (the usual `local_steps` pipeline) take one batch op
  per `_RUN_ELEMENTS`; otherwise (a short last batch, ragged text) the runs are
  cut element by element.
  """
  dataset = single_pass(dataset)
  try:
    return list(dataset.batch(_RUN_ELEMENTS))
  except tf.errors.InvalidArgumentError:  # elements of different shapes
    pass
  runs: list[list[Any]] = []
  for element in dataset:
    if runs and _shape_key(runs[-1][0]) == _shape_key(element):
      runs[-1].append(element)
    else:
      runs.append([element])
  return [tf.nest.map_structure(lambda *t: tf.stack(t), *run) for run in runs]


class MaterializedDataset:
  """A dataset's elements as tensors; `dataset()` replays them in order."""

  def __init__(self, dataset: tf.data.Dataset):
    self.element_spec = dataset.element_spec
    self._runs = _stacked_runs(dataset)
    self.nbytes = sum(_nbytes(run) for run in self._runs)

  def dataset(self) -> tf.data.Dataset:
    if not self._runs:
      return tf.data.Dataset.from_tensors(
          tf.nest.map_structure(lambda s: tf.zeros(
              [0 if d is None else d for d in s.shape], s.dtype), self.element_spec)
      ).take(0)
    dataset = tf.data.Dataset.from_tensor_slices(self._runs[0])
    for run in self._runs[1:]:
      dataset = dataset.concatenate(tf.data.Dataset.from_tensor_slices(run))
    return dataset


class ClientDataCache:
  """At most `max_bytes` of materialized client datasets, least recently used out."""

  def __init__(self, max_bytes: int):
    if max_bytes < 0:
      raise ValueError(f'max_bytes must be >= 0 (0: no cache), got {max_bytes}.')
    self.max_bytes = max_bytes
    self.nbytes = 0
    self.hits = 0
    self.misses = 0
    self._entries: 'collections.OrderedDict[Hashable, MaterializedDataset]' = (
        collections.OrderedDict())
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._entries)

  def get(self, key: Hashable, build: Callable[[], tf.data.Dataset]) -> tf.data.Dataset:
    """The dataset for `key`, from memory or else from `build()` (then kept)."""
    with self._lock:
      entry = self._entries.get(key)
      if entry is not None:
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.dataset()
      self.misses += 1
    if self.max_bytes == 0:
      return build()
    entry = MaterializedDataset(build())
    with self._lock:
      if entry.nbytes <= self.max_bytes and key not in self._entries:
        self._entries[key] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
          _, old = self._entries.popitem(last=False)
          self.nbytes -= old.nbytes
    return entry.dataset()


class Prefetcher:
  """Builds items in order on one background thread, at most `depth` ahead."""

  def __init__(self, depth: int):
    if depth < 1:
      raise ValueError(f'depth must be >= 1, got {depth}.')
    self.depth = depth
    self._executor = futures.ThreadPoolExecutor(1, thread_name_prefix='tf_fedscale-prefetch')

  def start(self, builders: Sequence[Callable[[], Any]]
            ) -> tuple[list[Callable[[], Any]], Callable[[], None]]:
    """(one getter per builder, a `finish` to call when the round is over).

    A getter blocks until its item is built. The thread never runs more than
    `depth` items ahead of those taken; `finish` drops the items not built yet
    (a round that failed half way does not leave the thread waiting).
    """
    slots = threading.Semaphore(self.depth)
    finished = threading.Event()

    def build(builder):
      slots.acquire()
      return None if finished.is_set() else builder()

    pending = [self._executor.submit(build, b) for b in builders]

    def getter(future):
      def get():
        try:
          return future.result()
        finally:
          slots.release()
      return get

    def finish():
      finished.set()
      for _ in pending:
        slots.release()

    return [getter(f) for f in pending], finish

  def close(self) -> None:
    self._executor.shutdown(wait=False, cancel_futures=True)
