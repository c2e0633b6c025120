"""Client stores: SQLite files in TFF's own `SqlClientData` schema.

Every loader converts its source format once into (or reads directly) a SQLite
file with TFF's two tables, `examples(split_name, client_id,
serialized_example_proto)` and `client_metadata(client_id, split_name,
num_examples)`, plus an index on `(split_name, client_id)`. A client's dataset
is then a `tf.data.experimental.SqlDataset` query built from the client id with
TF string ops, followed by `tf.io.parse_single_example`: the dataset function
is serializable, so the TFF worker opens the file and reads each client itself;
nothing but the file path and the split name is captured.

Caches written here also carry a `tf_fedscale_meta` table with the example
schema (`Field`s), so a cache is self-describing. Caches are written to a
temporary file and renamed, so a killed conversion never leaves a half file.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

FORMAT_VERSION = 1
META_TABLE = 'tf_fedscale_meta'
CACHE_ENV = 'TF_FEDSCALE_CACHE'
STRING = 'string'
_NUMERIC = ('float32', 'float64', 'int64', 'int32', 'uint8', 'int8', 'int16',
            'uint16')


def default_cache_dir() -> str:
  """$TF_FEDSCALE_CACHE, else ~/.cache/tf_fedscale."""
  return os.environ.get(CACHE_ENV) or os.path.join(
      os.path.expanduser('~'), '.cache', 'tf_fedscale')


def resolve_cache_dir(cache_dir: Optional[str]) -> str:
  return os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))


def fingerprint(paths: Iterable[str], **options: Any) -> str:
  """A short hash of source files (path, size, mtime) and conversion options."""
  digest = hashlib.sha256(f'v{FORMAT_VERSION}'.encode())
  for path in sorted(os.path.abspath(p) for p in paths):
    stat = os.stat(path)
    digest.update(f'{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0'.encode())
  digest.update(json.dumps(options, sort_keys=True, default=str).encode())
  return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Field:
  """One feature of a stored example: numpy dtype name (or 'string') and shape.

  Numeric values are stored as raw little-endian bytes (one bytes feature),
  strings as a bytes list.
  """

  dtype: str
  shape: tuple[int, ...] = ()

  def __post_init__(self):
    if self.dtype != STRING and self.dtype not in _NUMERIC:
      raise ValueError(f'unsupported dtype {self.dtype!r}')
    object.__setattr__(self, 'shape', tuple(int(d) for d in self.shape))

  @property
  def tf_dtype(self) -> tf.DType:
    return tf.string if self.dtype == STRING else tf.as_dtype(self.dtype)

  def to_json(self) -> list:
    return [self.dtype, list(self.shape)]

  @classmethod
  def from_json(cls, value: Sequence) -> 'Field':
    return cls(value[0], tuple(value[1]))


Schema = Mapping[str, Field]


def encode_example(schema: Schema, values: Mapping[str, Any]) -> bytes:
  """A serialized `tf.train.Example` holding `values` laid out by `schema`."""
  features = {}
  for name, field in schema.items():
    value = values[name]
    if field.dtype == STRING:
      items = [value] if not field.shape else list(value)
      if len(items) != int(np.prod(field.shape, dtype=np.int64)):
        raise ValueError(f'{name}: expected {field.shape} strings, got {len(items)}')
      data = [v.encode('utf-8') if isinstance(v, str) else bytes(v) for v in items]
    else:
      array = np.asarray(value)
      if (np.dtype(field.dtype).kind in 'iu' and array.dtype.kind == 'f'
          and not np.all(np.mod(array, 1) == 0)):
        raise ValueError(f'{name}: non-integer values {array.reshape(-1)[:3]} for an '
                         f'{field.dtype} field')
      array = array.astype(field.dtype, copy=False)
      if array.shape != field.shape:
        raise ValueError(f'{name}: expected shape {field.shape}, got {array.shape}')
      data = [array.astype(array.dtype.newbyteorder('<'), copy=False).tobytes()]
    features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
  return tf.train.Example(
      features=tf.train.Features(feature=features)).SerializeToString()


def build_parser(schema: Schema) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
  """The inverse of `encode_example`, in TF ops (for `Dataset.map`)."""
  spec = {}
  for name, field in schema.items():
    if field.dtype == STRING:
      spec[name] = tf.io.FixedLenFeature(list(field.shape), tf.string)
    else:
      spec[name] = tf.io.FixedLenFeature([], tf.string)

  def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    parsed = tf.io.parse_single_example(serialized, spec)
    out = {}
    for name, field in schema.items():
      if field.dtype == STRING:
        out[name] = parsed[name]
      else:
        out[name] = tf.reshape(tf.io.decode_raw(parsed[name], field.tf_dtype),
                               field.shape)
    return out

  return parse


class ExampleError(ValueError):
  """Example `index` (of one `StoreWriter.add` call) does not fit the schema."""

  def __init__(self, index: int, cause: Exception):
    super().__init__(str(cause))
    self.index = index


class StoreWriter:
  """Writes a store: `add(split, client_id, examples)` per client, then `close`.

  A client may be added more than once (its examples are appended); clients
  keep their first-appearance order.
  """

  def __init__(self, path: str, schema: Schema, meta: Optional[Mapping] = None):
    self.path = path
    self.schema = dict(schema)
    self._meta = dict(meta or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, self._tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                     suffix='.partial')
    os.close(fd)
    self._con = sqlite3.connect(self._tmp)
    self._con.execute('PRAGMA journal_mode=OFF')
    self._con.execute('PRAGMA synchronous=OFF')
    self._con.execute('CREATE TABLE examples (split_name TEXT NOT NULL, client_id '
                      'TEXT NOT NULL, serialized_example_proto BLOB NOT NULL)')
    self._con.execute('CREATE TABLE client_metadata (client_id TEXT NOT NULL, '
                      'split_name TEXT NOT NULL, num_examples INTEGER NOT NULL)')
    self._con.execute(f'CREATE TABLE {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)')
    self._counts: dict[tuple[str, str], int] = {}

  def add(self, split: str, client_id: str, examples: Iterable[Mapping[str, Any]]) -> int:
    rows = []
    for i, example in enumerate(examples):
      try:
        rows.append((split, client_id, encode_example(self.schema, example)))
      except (ValueError, TypeError) as e:
        raise ExampleError(i, e) from e
    if not rows:   # clients without examples are not recorded
      return 0
    self._con.executemany('INSERT INTO examples VALUES (?, ?, ?)', rows)
    key = (split, client_id)
    self._counts[key] = self._counts.get(key, 0) + len(rows)
    return len(rows)

  def close(self) -> None:
    self._con.executemany('INSERT INTO client_metadata VALUES (?, ?, ?)',
                          [(c, s, n) for (s, c), n in self._counts.items()])
    self._con.execute('CREATE INDEX examples_by_client ON examples (split_name, client_id)')
    meta = dict(self._meta, format_version=FORMAT_VERSION,
                schema={k: f.to_json() for k, f in self.schema.items()})
    self._con.executemany(f'INSERT INTO {META_TABLE} VALUES (?, ?)',
                          [(k, json.dumps(v)) for k, v in meta.items()])
    self._con.commit()
    self._con.close()
    os.replace(self._tmp, self.path)

  def abort(self) -> None:
    with contextlib.suppress(Exception):
      self._con.close()
    with contextlib.suppress(FileNotFoundError):
      os.remove(self._tmp)


@contextlib.contextmanager
def writing(path: str, schema: Schema, meta: Optional[Mapping] = None
            ) -> Iterator[StoreWriter]:
  """A `StoreWriter` that is committed on success and discarded on error."""
  writer = StoreWriter(path, schema, meta)
  try:
    yield writer
  except BaseException:
    writer.abort()
    raise
  writer.close()


def read_meta(path: str) -> dict[str, Any]:
  """The `tf_fedscale_meta` table of a cache ({} for TFF's own files)."""
  with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if META_TABLE not in tables:
      return {}
    return {k: json.loads(v) for k, v in con.execute(f'SELECT key, value FROM {META_TABLE}')}


def read_schema(path: str) -> dict[str, Field]:
  return {k: Field.from_json(v) for k, v in read_meta(path)['schema'].items()}


def check_database(path: str) -> None:
  """Raises ValueError unless `path` is a SQLite file in TFF's schema."""
  try:
    with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
      tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
      columns = {r[1] for r in con.execute('PRAGMA table_info(examples)')}
      indexed = [r for r in con.execute('PRAGMA index_list(examples)')]
  except sqlite3.DatabaseError as e:
    raise ValueError(f'{path} is not a readable SQLite database ({e}).') from e
  missing = {'examples', 'client_metadata'} - tables
  missing_columns = {'split_name', 'client_id', 'serialized_example_proto'} - columns
  if missing or missing_columns:
    raise ValueError(
        f'{path} is not a TFF ClientData SQLite file: missing tables {sorted(missing)} '
        f'/ columns {sorted(missing_columns)} (expected TFF\'s schema, see '
        'tff.simulation.datasets.SqlClientData).')
  if not indexed:
    logging.warning('%s has no index on examples; every client query scans the whole '
                    'table. Create one with: sqlite3 %s "CREATE INDEX ex_client ON '
                    'examples (split_name, client_id)"', path, path)


def client_counts(path: str, split: str) -> tuple[list[str], np.ndarray]:
  """Client ids of `split` in stored order and their example counts."""
  with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
    rows = con.execute('SELECT client_id, SUM(num_examples) FROM client_metadata '
                       'WHERE split_name = ? GROUP BY client_id ORDER BY MIN(rowid)',
                       (split,)).fetchall()
  return [r[0] for r in rows], np.array([r[1] for r in rows], np.int64)


def splits(path: str) -> list[str]:
  with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
    return [r[0] for r in con.execute(
        'SELECT split_name FROM client_metadata GROUP BY split_name ORDER BY MIN(rowid)')]


def sql_client_data(path: str, split: str, client_ids: Sequence[str],
                    parse: Callable[[tf.Tensor], Any]
                    ) -> tff.simulation.datasets.ClientData:
  """ClientData over `client_ids` of `split`, each element `parse(proto)`.

  The dataset function captures only `path` and `split`: the client id goes
  into the SQL query with TF string ops (quotes escaped).
  """
  path = os.path.abspath(path)
  split_literal = split.replace("'", "''")

  def dataset_fn(client_id: tf.Tensor) -> tf.data.Dataset:
    query = tf.strings.join([
        "SELECT serialized_example_proto FROM examples WHERE split_name = '",
        split_literal, "' AND client_id = '",
        tf.strings.regex_replace(client_id, "'", "''"), "' ORDER BY rowid"])
    records = tf.data.experimental.SqlDataset('sqlite', path, query, (tf.string,))
    return records.map(parse)

  return tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      list(client_ids), dataset_fn)


def iter_strings(path: str, split: str, feature: str) -> Iterator[tuple[str, str]]:
  """(client_id, value) for every string value of `feature` in `split`, in
  stored order, in Python (vocabularies, derived counts)."""
  with contextlib.closing(sqlite3.connect(f'file:{path}?mode=ro', uri=True)) as con:
    for client_id, blob in con.execute(
        'SELECT client_id, serialized_example_proto FROM examples '
        'WHERE split_name = ? ORDER BY rowid', (split,)):
      example = tf.train.Example.FromString(blob)
      for value in example.features.feature[feature].bytes_list.value:
        yield client_id, value.decode('utf-8', errors='replace')
