"""TFF's SQLite ClientData files, read from a local directory (never downloaded).

`tff.simulation.datasets.{emnist,shakespeare,stackoverflow,cifar100}.load_data`
download `<name>.sqlite.lzma` into a cache directory (`~/.tff` by default) and
decompress it next to it. Point `--data_dir` at that directory (or any copy of
the `.sqlite` files): the loader opens the file there. If only the `.lzma`
archive is present it is decompressed once into the cache directory.
The parsing matches TFF's own `load_data` functions.

Before first use every example of each split loaded is parsed once with TF's
batched parser (`check_split`: shapes and types as TFF's spec, labels inside
the task's classes), so a file that does not fit is one error naming client
and example; the verdict is cached by the file's path, size and mtime.
Stack Overflow (135M posts of strings, no labels) is not scanned.
"""

import collections
import contextlib
import dataclasses
import lzma
import os
import re
import shutil
import sqlite3
import tempfile
from typing import Optional

import tensorflow as tf

from tf_fedscale.tasks import checks
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage

_BUCKET = 'https://storage.googleapis.com/tff-datasets-public'


@dataclasses.dataclass(frozen=True)
class TffDataset:
  """One of TFF's databases: its file, split names, example spec (and the casts
  TFF's `load_data` applies), the label feature, and whether to scan it."""

  file: str
  splits: dict[str, str]   # our split name -> TFF split_name
  spec: dict[str, tf.io.FixedLenFeature]
  description: str
  casts: dict[str, tf.DType] = dataclasses.field(default_factory=dict)
  label: Optional[str] = None
  scan: bool = True

  def parse(self, serialized: tf.Tensor) -> collections.OrderedDict:
    parsed = tf.io.parse_single_example(serialized, self.spec)
    return collections.OrderedDict(
        (k, tf.cast(parsed[k], self.casts[k]) if k in self.casts else parsed[k])
        for k in self.spec)


DATASETS = {
    'emnist': TffDataset(
        'emnist_all.sqlite',
        {'train': 'all_train', 'test': 'all_test',
         'digits_train': 'digits_only_train', 'digits_test': 'digits_only_test'},
        {'pixels': tf.io.FixedLenFeature((28, 28), tf.float32),
         'label': tf.io.FixedLenFeature((), tf.int64)},
        'Federated EMNIST (3,400 writers; 1.0 is the background)',
        casts={'label': tf.int32}, label='label'),
    'shakespeare': TffDataset(
        'shakespeare.sqlite', {'train': 'train', 'test': 'test'},
        {'snippets': tf.io.FixedLenFeature((), tf.string)},
        'Federated Shakespeare (715 roles)'),
    'stackoverflow': TffDataset(
        'stackoverflow.sqlite', {'train': 'train', 'heldout': 'heldout', 'test': 'test'},
        {k: tf.io.FixedLenFeature((), tf.string)
         for k in ('creation_date', 'tags', 'title', 'tokens', 'type')},
        'Federated Stack Overflow (342,477 train users)', scan=False),
    'cifar100': TffDataset(
        'cifar100.sqlite', {'train': 'train', 'test': 'test'},
        {'coarse_label': tf.io.FixedLenFeature((), tf.int64),
         'image': tf.io.FixedLenFeature((32, 32, 3), tf.int64),
         'label': tf.io.FixedLenFeature((), tf.int64)},
        'Federated CIFAR-100 (500 train / 100 test clients, PAM-partitioned)',
        casts={'image': tf.uint8}, label='label'),
}
_CHECK_BATCH = 4096


def check_split(path: str, dataset: TffDataset, split_name: str,
                num_classes: Optional[int], cache_dir: Optional[str] = None) -> None:
  """Parses every example of `split_name` (in batches, TF's C++ parser) against
  `dataset.spec` and checks its labels are in [0, num_classes); raises
  ValueError naming file, client and example. Done once per file version."""
  key = storage.fingerprint([path], split=split_name, spec=sorted(dataset.spec),
                            num_classes=num_classes)
  marker = os.path.join(storage.resolve_cache_dir(cache_dir), f'tff-checked-{key}')
  if os.path.exists(marker):
    return
  seen: collections.Counter = collections.Counter()
  with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
    cursor = con.execute('SELECT client_id, serialized_example_proto FROM examples '
                         'WHERE split_name = ? ORDER BY rowid', (split_name,))
    while rows := cursor.fetchmany(_CHECK_BATCH):
      clients = [r[0] for r in rows]

      def locate(i: int, clients=clients) -> str:
        client = clients[i]
        return (f'{path}: split {split_name!r} client {client!r} example '
                f'{seen[client] + clients[:i].count(client)}')

      protos = [r[1] for r in rows]
      try:
        parsed = tf.io.parse_example(protos, dataset.spec)
      except tf.errors.InvalidArgumentError:
        _raise_first_unparsable(protos, dataset, locate)
      if num_classes is not None and dataset.label:
        checks.check_class_ids(parsed[dataset.label].numpy(), num_classes, locate)
      seen.update(clients)
  os.makedirs(os.path.dirname(marker), exist_ok=True)
  with open(marker, 'w', encoding='utf-8') as f:
    f.write(f'{path} {split_name}: every example parsed\n')


def _raise_first_unparsable(protos: list[bytes], dataset: TffDataset,
                            locate: checks.Locate) -> None:
  """ValueError naming the first proto of a batch that TF cannot parse."""
  expected = ', '.join(f'{k} {v.dtype.name} {list(v.shape)}' for k, v in dataset.spec.items())
  for i, proto in enumerate(protos):
    try:
      tf.io.parse_single_example(proto, dataset.spec)
    except tf.errors.InvalidArgumentError as e:
      reason = ' '.join(re.sub(r'\{\{.*?\}\}', '', e.message).split())[:200]
      raise ValueError(f'{locate(i)}: does not fit TFF\'s format ({expected}): '
                       f'{reason}') from None
  raise AssertionError('a batch failed to parse but none of its examples did')


def published(name: str) -> str:
  return (f'{_BUCKET}/{DATASETS[name].file}.lzma (what '
          f'tff.simulation.datasets.{name}.load_data downloads)')


def find_database(name: str, data_dir: str, cache_dir: Optional[str] = None) -> Optional[str]:
  """Path of `<file>` in data_dir (or data_dir/.tff); decompresses a lone `.lzma`."""
  if not data_dir:
    return None
  file = DATASETS[name].file
  for folder in (data_dir, os.path.join(data_dir, '.tff')):
    path = os.path.join(folder, file)
    if os.path.isfile(path):
      return os.path.abspath(path)
  for folder in (data_dir, os.path.join(data_dir, '.tff')):
    archive = os.path.join(folder, file + '.lzma')
    if os.path.isfile(archive):
      key = storage.fingerprint([archive])
      out = os.path.join(storage.resolve_cache_dir(cache_dir), f'{key}-{file}')
      if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix='.partial')
        try:
          with lzma.open(archive) as src, os.fdopen(fd, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
          os.replace(tmp, out)
        except BaseException:
          os.remove(tmp)
          raise
      return out
  return None


def has_database(name: str, data_dir: str) -> bool:
  file = DATASETS[name].file
  return bool(data_dir) and any(
      os.path.isfile(os.path.join(folder, file + ext))
      for folder in (data_dir, os.path.join(data_dir, '.tff')) for ext in ('', '.lzma'))


def load(name: str, data_dir: str, splits: tuple[str, ...] = ('train', 'test'),
         cache_dir: Optional[str] = None, num_classes: Optional[int] = None
         ) -> dict[str, sources.ClientSplit]:
  """`ClientSplit`s of TFF's `name` database (elements as TFF's `load_data`),
  each split checked once (`check_split`) unless the dataset is not scanned."""
  dataset = DATASETS[name]
  path = find_database(name, data_dir, cache_dir)
  if path is None:
    raise sources.missing_data_error(
        f'TFF {name}', data_dir,
        [f'<data_dir>/{dataset.file} (or {dataset.file}.lzma)'], published(name),
        'TFF caches it in ~/.tff after tff.simulation.datasets.'
        f'{name}.load_data(); copy that file into --data_dir.')
  storage.check_database(path)
  result = {}
  for split in splits:
    result[split] = sources.open_split(path, dataset.splits[split], dataset.parse)
    if not len(result[split]):
      raise ValueError(f'{path} has no clients in split {dataset.splits[split]!r} '
                       f'(splits present: {storage.splits(path)}).')
    if dataset.scan:
      check_split(path, dataset, dataset.splits[split], num_classes, cache_dir)
  return result
