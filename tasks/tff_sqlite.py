"""TFF's SQLite ClientData files, read from a local directory (never downloaded).

`tff.simulation.datasets.{emnist,shakespeare,stackoverflow,cifar100}.load_data`
download `<name>.sqlite.lzma` into a cache directory (`~/.tff` by default) and
decompress it next to it. Point `--data_dir` at that directory (or any copy of
the `.sqlite` files): the loader opens the file there. If only the `.lzma`
archive is present it is decompressed once into the cache directory.
The parsing matches TFF's own `load_data` functions.
"""

import collections
import dataclasses
import lzma
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Optional

import tensorflow as tf

from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage

_BUCKET = 'https://storage.googleapis.com/tff-datasets-public'


def _parser(spec: dict[str, tf.io.FixedLenFeature],
            casts: Optional[dict[str, tf.DType]] = None) -> Callable:
  casts = casts or {}

  def parse(serialized):
    parsed = tf.io.parse_single_example(serialized, spec)
    return collections.OrderedDict(
        (k, tf.cast(parsed[k], casts[k]) if k in casts else parsed[k]) for k in spec)

  return parse


@dataclasses.dataclass(frozen=True)
class TffDataset:
  file: str
  splits: dict[str, str]   # our split name -> TFF split_name
  parse: Callable
  description: str


DATASETS = {
    'emnist': TffDataset(
        'emnist_all.sqlite',
        {'train': 'all_train', 'test': 'all_test',
         'digits_train': 'digits_only_train', 'digits_test': 'digits_only_test'},
        _parser({'pixels': tf.io.FixedLenFeature((28, 28), tf.float32),
                 'label': tf.io.FixedLenFeature((), tf.int64)}, {'label': tf.int32}),
        'Federated EMNIST (3,400 writers; 1.0 is the background)'),
    'shakespeare': TffDataset(
        'shakespeare.sqlite', {'train': 'train', 'test': 'test'},
        _parser({'snippets': tf.io.FixedLenFeature((), tf.string)}),
        'Federated Shakespeare (715 roles)'),
    'stackoverflow': TffDataset(
        'stackoverflow.sqlite', {'train': 'train', 'heldout': 'heldout', 'test': 'test'},
        _parser({k: tf.io.FixedLenFeature((), tf.string)
                 for k in ('creation_date', 'tags', 'title', 'tokens', 'type')}),
        'Federated Stack Overflow (342,477 train users)'),
    'cifar100': TffDataset(
        'cifar100.sqlite', {'train': 'train', 'test': 'test'},
        _parser({'coarse_label': tf.io.FixedLenFeature((), tf.int64),
                 'image': tf.io.FixedLenFeature((32, 32, 3), tf.int64),
                 'label': tf.io.FixedLenFeature((), tf.int64)}, {'image': tf.uint8}),
        'Federated CIFAR-100 (500 train / 100 test clients, PAM-partitioned)'),
}


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
         cache_dir: Optional[str] = None) -> dict[str, sources.ClientSplit]:
  """`ClientSplit`s of TFF's `name` database (elements as TFF's `load_data`)."""
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
  return result
