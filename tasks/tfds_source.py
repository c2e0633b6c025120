"""Any TFDS dataset already prepared in a TFDS data dir, split into clients.

Reads `<data_dir>/<name>/[<config>/]<version>/` offline (`tfds.builder(name,
data_dir=...)`, which also opens datasets whose code is not registered, from
their `dataset_info.json`), never downloads. Clients come from a per-example
feature (`feature:<key>`, the natural partition) or from a partitioner
(`partition.py`): `iid`, `powerlaw` (Pareto sizes, exponent `alpha`),
`dirichlet` (LDA over labels, concentration `alpha`), `pam` (Pachinko over
coarse/fine labels, `alpha`/`beta`, `samples_per_client` each; TFF's CIFAR-100
recipe). The train and test splits are partitioned separately with the same
method; a split's clients are `<split>_<k>` unless partitioned by feature.
The partition is computed once and stored (`storage`) in the cache directory.
"""

import os
from collections.abc import Sequence
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import checks
from tf_fedscale.tasks import partition as partition_lib
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage

PUBLISHED = 'https://www.tensorflow.org/datasets/catalog/overview'


def _prepare_hint(name: str, data_dir: str) -> str:
  return (f'Prepare it where there is network with `tfds build {name} --data_dir=DIR` '
          f'(or tfds.builder({name!r}, data_dir=DIR).download_and_prepare()) and copy '
          f'DIR/{name.split("/")[0]}/ into {data_dir or "--data_dir"}.')


def open_builder(name: str, data_dir: str):
  """The prepared builder; FileNotFoundError (with how to prepare it) if absent."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  expected = [f'a prepared TFDS dataset <data_dir>/{name}/<version>/dataset_info.json']
  if not data_dir or not os.path.isdir(data_dir):
    raise sources.missing_data_error(f'TFDS {name}', data_dir, expected, PUBLISHED,
                                     _prepare_hint(name, data_dir))
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  (DatasetNotFoundError etc.)
    raise sources.missing_data_error(
        f'TFDS {name}', data_dir, expected, PUBLISHED,
        f'({type(e).__name__}: {str(e).splitlines()[0][:200]}) '
        + _prepare_hint(name, data_dir)) from e
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    raise sources.missing_data_error(f'TFDS {name}', data_dir, expected, PUBLISHED,
                                     _prepare_hint(name, data_dir))
  return builder


def _read_split(builder, split: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if split not in builder.info.splits:
    raise ValueError(f'TFDS {builder.name} has no split {split!r} (it has '
                     f'{sorted(builder.info.splits)}).')
  missing = [k for k in keys if k not in builder.info.features]
  if missing:
    raise ValueError(f'TFDS {builder.name} has no feature(s) {missing} (it has '
                     f'{sorted(builder.info.features)}).')
  columns: dict[str, list] = {k: [] for k in keys}
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  for example in tfds.as_numpy(dataset):
    for k in keys:
      columns[k].append(example[k])
  try:
    return {k: np.stack(v) for k, v in columns.items()}
  except ValueError as e:
    raise ValueError(f'TFDS {builder.name}: features {list(keys)} must have a fixed '
                     f'shape to be stored per client ({e}).') from e


def _partition(columns: dict[str, np.ndarray], split: str, method: str,
               label_key: str, num_clients: int, alpha: float, beta: float,
               samples_per_client: int, coarse_key: str,
               rng: np.random.Generator) -> tuple[list[str], list[np.ndarray]]:
  labels = columns[label_key]
  n = len(labels)
  if method.startswith('feature:'):
    return partition_lib.by_feature(columns[method.split(':', 1)[1]])
  if method == 'iid':
    parts = partition_lib.iid(n, min(num_clients, n), rng)
  elif method == 'powerlaw':
    parts = partition_lib.iid_with_sizes(
        partition_lib.power_law_sizes(n, min(num_clients, n), alpha, rng), rng)
  elif method == 'dirichlet':
    parts = partition_lib.dirichlet(labels, min(num_clients, n), alpha, rng)
  elif method == 'pam':
    clients = max(1, n // samples_per_client)
    parts = partition_lib.pam(labels, columns[coarse_key], clients, samples_per_client,
                              alpha, beta, rng)
  else:
    raise ValueError(f'unknown partition {method!r}; choose from '
                     f'{list(partition_lib.PARTITIONS)} or feature:<key>.')
  return [f'{split}_{k}' for k in range(len(parts))], parts


def load(name: str, data_dir: str, *, partition: str = 'dirichlet',
         num_clients: int = 100, alpha: float = 0.5, beta: float = 10.0,
         samples_per_client: int = 100, seed: int = 0,
         x_key: str = 'image', y_key: str = 'label', coarse_key: str = 'coarse_label',
         splits: Sequence[str] = ('train', 'test'), num_classes: Optional[int] = None,
         cache_dir: Optional[str] = None) -> dict[str, sources.ClientSplit]:
  """`ClientSplit`s of `{'x', 'y'}` dicts, keyed by the TFDS split names.

  With `num_classes`, every `y_key` value must be a class id in [0,
  num_classes) (checked once, at conversion; the error names the split and
  the example's TFDS index, since clients are assigned after).
  """
  builder = open_builder(name, data_dir)
  files = [os.path.join(builder.data_dir, f) for f in tf.io.gfile.listdir(builder.data_dir)]
  options = dict(name=name, partition=partition, num_clients=num_clients, alpha=alpha,
                 beta=beta, samples_per_client=samples_per_client, seed=seed,
                 x_key=x_key, y_key=y_key, coarse_key=coarse_key, splits=list(splits),
                 num_classes=num_classes)
  key = storage.fingerprint(files, **options)
  path = os.path.join(storage.resolve_cache_dir(cache_dir),
                      f'tfds-{name.replace("/", "_")}-{key}.sqlite')
  if not os.path.exists(path):
    keys = [x_key, y_key]
    if partition == 'pam':
      keys.append(coarse_key)
    elif partition.startswith('feature:'):
      keys.append(partition.split(':', 1)[1])
    keys = list(dict.fromkeys(keys))
    data = {s: _read_split(builder, s, keys) for s in splits}
    if num_classes is not None:
      for split, columns in data.items():
        checks.check_class_ids(
            columns[y_key], num_classes,
            lambda r, split=split: f'{builder.data_dir}: split {split!r} example {r} '
                                   '(before partitioning into clients)', y_key)
    first = data[splits[0]]
    schema = {'x': storage.Field(first[x_key].dtype.name if first[x_key].dtype.kind != 'b'
                                 else 'uint8', first[x_key].shape[1:]),
              'y': storage.Field('int64', first[y_key].shape[1:])}
    with storage.writing(path, schema, dict(source='tfds', **options)) as writer:
      for i, split in enumerate(splits):
        columns = data[split]
        rng = np.random.default_rng([seed, i])
        ids, parts = _partition(columns, split, partition, y_key, num_clients, alpha,
                                beta, samples_per_client, coarse_key, rng)
        for client, rows in zip(ids, parts):
          writer.add(split, client, ({'x': columns[x_key][r], 'y': columns[y_key][r]}
                                     for r in rows))
  parse = storage.build_parser(storage.read_schema(path))
  return {s: sources.open_split(path, s, parse) for s in splits}
