"""LEAF JSON loader: `{"users", "num_samples", "user_data": {u: {"x", "y"}}}`.

LEAF (https://github.com/TalwalkarLab/leaf) writes each split as one or more
JSON shards, `<data_dir>/train/*.json` and `<data_dir>/test/*.json`. The shards
are converted once into a SQLite store (`storage`) in the cache directory,
keyed by the shards' paths, sizes and modification times; later runs open the
store directly. Clients are LEAF users, in shard order (shards sorted by the
number in their name) and then in each shard's `users` order.

The example schema is inferred from the first user of the first shard: a
list of numbers becomes a float32 vector (FEMNIST's 784 pixels), a number an
int64 or float32 scalar (later non-integral values in an int64 field are an
error, never truncated), a
string a string scalar (Shakespeare, CelebA file names), a list of strings a
string vector (Sent140's 6 fields), a one-element list such as Vehicle
Sensor's `[[-1]]` labels an int64 vector of length 1. `y` may be absent
(FedScale's Reddit JSON has only `x`).

A user's examples are what `user_data` holds; LEAF's `num_samples` can
disagree (LEAF Shakespeare's test split declares the counts from before its
train/test de-duplication). The declared totals and mismatches are kept in
the store's metadata (`storage.read_meta`) and logged.
"""

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from absl import logging
import numpy as np

from tf_fedscale.tasks import checks
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage

PUBLISHED = 'https://github.com/TalwalkarLab/leaf (run its preprocess.sh)'
SPLITS = ('train', 'test')


def _natural_key(path: str) -> list:
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', os.path.basename(path))]


def split_files(data_dir: str, split: str) -> list[str]:
  """The JSON shards of `split`: `<data_dir>/<split>/*.json` (or under `data/`)."""
  for base in (data_dir, os.path.join(data_dir, 'data')):
    folder = os.path.join(base, split)
    if os.path.isdir(folder):
      files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.json')]
      if files:
        return sorted(files, key=_natural_key)
  return []


def has_leaf_layout(data_dir: str) -> bool:
  return bool(data_dir) and any(split_files(data_dir, s) for s in SPLITS)


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def infer_field(value: Any, where: str) -> storage.Field:
  """The storage field of one LEAF value (see the module docstring)."""
  if isinstance(value, str):
    return storage.Field(storage.STRING)
  if _is_number(value):
    return storage.Field('int64' if isinstance(value, int) else 'float32')
  if isinstance(value, list) and value:
    if all(isinstance(v, str) for v in value):
      return storage.Field(storage.STRING, (len(value),))
    array = np.asarray(value)
    if array.dtype.kind in 'iu' and array.size == 1:   # a label such as [[-1]]
      return storage.Field('int64', array.shape)
    if array.dtype.kind in 'iuf':                       # feature vectors: always float
      return storage.Field('float32', array.shape)
  raise ValueError(f'{where}: unsupported LEAF value {str(value)[:80]!r} (expected '
                   'numbers, strings, or lists of them).')


def _read_shard(path: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: not a readable LEAF JSON file ({e}).') from e
  if not isinstance(data, dict) or 'users' not in data or 'user_data' not in data:
    raise ValueError(f'{path}: not LEAF JSON (needs "users" and "user_data" keys).')
  users, user_data = data['users'], data['user_data']
  if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
    raise ValueError(f'{path}: "users" must be a list of user names, got '
                     f'{str(users)[:60]!r}.')
  if not isinstance(user_data, dict):
    raise ValueError(f'{path}: "user_data" must map user names to {{"x", "y"}}.')
  absent = [u for u in users if u not in user_data]
  if absent:
    raise ValueError(f'{path}: {len(absent)} user(s) listed in "users" have no entry in '
                     f'"user_data", e.g. {absent[0]!r}.')
  unlisted = [u for u in user_data if u not in set(users)]
  if unlisted:
    logging.warning('%s: %d user(s) in "user_data" are not listed in "users" and are '
                    'left out (LEAF lists every user), e.g. %r', path, len(unlisted),
                    unlisted[0])
  return data


def _infer_schema(path: str, data: dict) -> tuple[dict[str, storage.Field], str]:
  """Fields of x (and y) from the first user holding examples, and that example."""
  for user in data['users']:
    record = data['user_data'][user]
    if record.get('x'):
      return ({k: infer_field(record[k][0], f'{path}: user {user!r} {k}')
               for k in ('x', 'y') if record.get(k)}, f'{path}: user {user!r} example 0')
  raise ValueError(f'{path}: no user holds any "x" values.')


def _convert(files_by_split: dict[str, list[str]], path: str,
             label_below: Optional[int] = None,
             num_classes: Optional[int] = None) -> None:
  every_file = [f for files in files_by_split.values() for f in files]
  first = _read_shard(every_file[0])
  schema, schema_from = _infer_schema(every_file[0], first)
  declared_total: dict[str, int] = {}
  mismatched: list[str] = []
  meta = {'source': 'leaf', 'files': every_file, 'declared_num_samples': declared_total,
          'num_samples_mismatches': mismatched, 'schema_from': schema_from}
  with storage.writing(path, schema, meta) as writer:
    for split, files in files_by_split.items():
      for shard in files:
        data = first if shard == every_file[0] else _read_shard(shard)
        declared = data.get('num_samples')
        for i, user in enumerate(data['users']):
          record = data['user_data'][user]
          columns = {k: record.get(k) for k in schema}
          lengths = {k: len(v) for k, v in columns.items() if v is not None}
          if len(set(lengths.values())) > 1 or len(lengths) != len(schema):
            raise ValueError(f'{shard}: user {user!r} has mismatched x/y lengths '
                             f'{lengths} (schema {sorted(schema)}).')
          n = next(iter(lengths.values()))
          if declared is not None and i < len(declared):
            declared_total[split] = declared_total.get(split, 0) + int(declared[i])
            if declared[i] != n:
              mismatched.append(f'{shard}: {user} declares {declared[i]}, holds {n}')
          if num_classes is not None:
            checks.check_class_ids(
                columns['y'], num_classes,
                lambda j, shard=shard, user=user: f'{shard}: user {user!r} example {j}')
          rows = range(n)
          if label_below is not None:
            rows = [j for j in rows if columns['y'][j] < label_below]
          try:
            writer.add(split, str(user), [{k: columns[k][j] for k in schema} for j in rows])
          except storage.ExampleError as e:
            raise ValueError(f'{shard}: user {user!r} example {rows[e.index]}: {e} (schema '
                             f'inferred from the first user of {every_file[0]}).') from e
  if mismatched:
    logging.warning('LEAF num_samples disagree with the examples held for %d users '
                    '(the examples are used), e.g. %s', len(mismatched), mismatched[0])


def load(data_dir: str, cache_dir: Optional[str] = None,
         splits: Sequence[str] = SPLITS, dataset: str = 'LEAF',
         published: str = PUBLISHED, label_below: Optional[int] = None,
         num_classes: Optional[int] = None,
         needs: Optional[Mapping[str, checks.Need]] = None
         ) -> dict[str, sources.ClientSplit]:
  """Every split of `splits` that has shards, as `ClientSplit`s of {'x', 'y'} dicts.

  With `label_below`, only examples whose (scalar) label is below it are kept
  (FEMNIST's digits are labels 0-9), and users left without any are dropped.
  With `num_classes`, every label must be a class id in [0, num_classes): a
  bad one is a ValueError naming shard, user and example, before any round.
  With `needs`, the fields (inferred from the first example) must be what the
  task needs (`checks.check_schema`). Raises FileNotFoundError when no split
  has any shard.
  """
  files_by_split = {s: split_files(data_dir, s) for s in splits} if data_dir else {}
  files_by_split = {s: f for s, f in files_by_split.items() if f}
  if not files_by_split:
    raise sources.missing_data_error(
        dataset, data_dir, [f'LEAF JSON shards in <data_dir>/{s}/*.json' for s in splits],
        published)
  every_file = [f for files in files_by_split.values() for f in files]
  key = storage.fingerprint(every_file, splits=sorted(files_by_split),
                            label_below=label_below, num_classes=num_classes)
  path = os.path.join(storage.resolve_cache_dir(cache_dir), f'leaf-{key}.sqlite')
  if not os.path.exists(path):
    _convert(files_by_split, path, label_below, num_classes)
  schema = storage.read_schema(path)
  if needs:
    checks.check_schema(schema, needs, storage.read_meta(path).get('schema_from', path))
  parse = storage.build_parser(schema)
  return {s: sources.open_split(path, s, parse) for s in files_by_split}
