"""FedScale's dataset layout: `client_data_mapping/{train,test}.csv` plus samples.

    <data_dir>/client_data_mapping/train.csv   client_id,sample_path,label_name,label_id
    <data_dir>/client_data_mapping/test.csv
    <data_dir>/train/<sample_path>             (images, WAV clips, text files)
    <data_dir>/test/<sample_path>

One CSV row per sample; the client id is the data's real owner (speaker, user,
writer). FedScale resolves `sample_path` against `<data_dir>/<split>/` for
Speech Commands and OpenImage and against `<data_dir>/` for FEMNIST; both are
tried. Some FedScale mappings hold the sample itself instead of a path (Amazon
Review's `data_path` column is the review text): `inline=True` stores the
column's text as the sample. `label_id` may be missing (FedScale's Speech
Commands map names labels only); a task then maps `label_name` to ids.

The mapping is converted once into a SQLite store (`storage`) of
`{'sample': path or text, 'label': int64}` per row; the sample files are read
by the task's TF preprocessing inside the dataset function (`tf.io.read_file`
then `decode_jpeg`/`decode_wav`/string ops).
"""

import csv
import dataclasses
import os
from collections.abc import Sequence
from typing import Optional

import numpy as np

from tf_fedscale.tasks import checks
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage

MAPPING_DIR = 'client_data_mapping'
SPLITS = ('train', 'test')
_PATH_COLUMNS = ('sample_path', 'data_path')


@dataclasses.dataclass(frozen=True)
class Mapping:
  """One mapping CSV: parallel per-row columns and clients in first-appearance order."""

  path: str
  client_ids: list[str]
  client_of_row: np.ndarray        # index into client_ids
  samples: list[str]
  label_names: list[str]
  label_ids: Optional[np.ndarray]   # None when the CSV has no label_id column
  lines: np.ndarray                 # each row's line number in the file

  @property
  def num_rows(self) -> int:
    return len(self.samples)

  def counts(self) -> np.ndarray:
    return np.bincount(self.client_of_row, minlength=len(self.client_ids))

  def locate(self, row: int) -> str:
    """'file:line: client 'c' example k' of a row (k counts the client's rows)."""
    client = self.client_of_row[row]
    example = int(np.count_nonzero(self.client_of_row[:row] == client))
    return (f'{self.path}:{self.lines[row]}: client {self.client_ids[client]!r} '
            f'example {example}')


def read_mapping(path: str) -> Mapping:
  """Parses a FedScale mapping CSV (extra columns such as speaker_id are ignored)."""
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.reader(f)
    try:
      header = [h.strip() for h in next(reader)]
    except StopIteration:
      raise ValueError(f'{path} is empty; expected the header '
                       'client_id,sample_path,label_name,label_id.') from None
    if 'client_id' not in header or not any(c in header for c in _PATH_COLUMNS):
      raise ValueError(f'{path}: header {header} lacks client_id and sample_path; '
                       'expected client_id,sample_path,label_name,label_id.')
    col_client = header.index('client_id')
    col_sample = next(header.index(c) for c in _PATH_COLUMNS if c in header)
    col_name = header.index('label_name') if 'label_name' in header else None
    col_id = header.index('label_id') if 'label_id' in header else None
    index: dict[str, int] = {}
    client_of_row, samples, names, ids, lines = [], [], [], [], []
    for line, row in enumerate(reader, start=2):
      if not row:
        continue
      lines.append(line)
      if len(row) < len(header):
        raise ValueError(f'{path}:{line}: expected {len(header)} columns, got {len(row)}.')
      client = row[col_client].strip()
      client_of_row.append(index.setdefault(client, len(index)))
      samples.append(row[col_sample])
      names.append(row[col_name].strip() if col_name is not None else '')
      if col_id is not None:
        try:
          ids.append(int(row[col_id]))
        except ValueError:
          raise ValueError(f'{path}:{line}: label_id {row[col_id]!r} is not an '
                           'integer.') from None
  return Mapping(path, list(index), np.asarray(client_of_row, np.int64), samples, names,
                 np.asarray(ids, np.int64) if col_id is not None else None,
                 np.asarray(lines, np.int64))


def mapping_path(data_dir: str, split: str) -> str:
  return os.path.join(data_dir, MAPPING_DIR, f'{split}.csv')


def has_fedscale_layout(data_dir: str) -> bool:
  return bool(data_dir) and os.path.isfile(mapping_path(data_dir, 'train'))


def label_ids_from_names(mappings: Sequence[Mapping],
                         classes: Optional[Sequence[str]] = None) -> list[np.ndarray]:
  """Label ids per mapping from `label_name`: positions in `classes`, or in the
  sorted set of names seen."""
  names = sorted({n for m in mappings for n in m.label_names}) if classes is None else list(classes)
  lookup = {n: i for i, n in enumerate(names)}
  result = []
  for m in mappings:
    unknown = sorted({n for n in m.label_names if n not in lookup})
    if unknown:
      raise ValueError(f'{m.path}: unknown label names {unknown[:5]}; expected one of '
                       f'{names}.')
    result.append(np.asarray([lookup[n] for n in m.label_names], np.int64))
  return result


def _is_image(head: bytes) -> bool:
  return head.startswith((b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'GIF87a', b'GIF89a',
                          b'BM'))


def _is_wav(head: bytes) -> bool:
  return head[:4] == b'RIFF' and head[8:12] == b'WAVE'


# What the tasks' TF decoding reads (`decode_image`, `decode_wav`), by the
# first bytes of a sample file.
SAMPLE_FORMATS = {'image': ('a JPEG, PNG, GIF or BMP image', _is_image),
                  'wav': ('a RIFF/WAVE file', _is_wav)}


def _head(path: str) -> Optional[bytes]:
  """The first 12 bytes of `path`, None when it does not exist (b'' when it
  cannot be read: a directory, no permission)."""
  try:
    with open(path, 'rb') as f:
      return f.read(12)
  except (FileNotFoundError, NotADirectoryError):
    return None
  except OSError:
    return b''


def resolve_samples(mapping: Mapping, data_dir: str, split: str,
                    check_files: bool, sample_format: Optional[str] = None) -> list[str]:
  """Absolute sample paths: `<data_dir>/<split>/p` or `<data_dir>/p`; with
  `check_files` each must exist and, with `sample_format` (a key of
  SAMPLE_FORMATS), start as that format does (one 12-byte read per file)."""
  bases = [os.path.join(data_dir, split), data_dir]
  first = mapping.samples[0] if mapping.samples else ''
  base = next((b for b in bases if os.path.exists(os.path.join(b, first))), None)
  if base is None:
    if check_files:
      raise FileNotFoundError(
          f'sample {first!r} of {mapping.path} is neither in {bases[0]}/ nor in '
          f'{bases[1]}/; put the sample files there (paths in sample_path are '
          'relative to one of them).')
    base = bases[0]
  paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in mapping.samples]
  if check_files:
    heads = [_head(p) for p in paths]
    missing = [p for p, h in zip(paths, heads) if h is None]
    if missing:
      raise FileNotFoundError(
          f'{len(missing)} of {len(paths)} samples listed in {mapping.path} are missing '
          f'(e.g. {missing[:3]}); put them under {base}/.')
    if sample_format:
      description, fits = SAMPLE_FORMATS[sample_format]
      bad = [row for row, h in enumerate(heads) if not fits(h)]
      if bad:
        others = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        raise ValueError(f'{mapping.locate(bad[0])}: sample {paths[bad[0]]} is not '
                         f'{description} (it starts with {heads[bad[0]][:8]!r}){others}; '
                         'replace it or remove its row.')
  return paths


LABEL_SOURCES = ('label_id', 'label_name', 'rating')


def label_ids(mappings: Sequence[Mapping], label_from: str,
              classes: Optional[Sequence[str]] = None) -> list[np.ndarray]:
  """Per-row label ids of each mapping.

  'label_id': the label_id column; 'label_name': positions of label_name in
  `classes` (or in the sorted names seen); 'rating': int(label_name) - 1, as
  FedScale's Amazon Review loader (stars 1-5 -> classes 0-4).
  """
  if label_from == 'label_id':
    for m in mappings:
      if m.label_ids is None:
        raise ValueError(f'{m.path} has no label_id column.')
    return [m.label_ids for m in mappings]
  if label_from == 'label_name':
    return label_ids_from_names(mappings, classes)
  if label_from == 'rating':
    result = []
    for m in mappings:
      try:
        ratings = np.asarray([int(float(n)) for n in m.label_names], np.int64)
      except ValueError as e:
        raise ValueError(f'{m.path}: label_name must be a rating number ({e}).') from e
      result.append(ratings - 1)
    return result
  raise ValueError(f'label_from must be one of {LABEL_SOURCES}, got {label_from!r}.')


def load(data_dir: str, *, dataset: str, published: str, num_classes: int,
         label_from: str = 'label_id', classes: Optional[Sequence[str]] = None,
         inline: bool = False, check_files: bool = True, cache_dir: Optional[str] = None,
         splits: Sequence[str] = SPLITS, class_option: str = '',
         sample_format: Optional[str] = None) -> dict[str, sources.ClientSplit]:
  """`ClientSplit`s of `{'sample': string, 'label': int64}` per split (see
  `label_ids` for `label_from` and `classes`).

  Every label must be a class id in [0, num_classes) (checked at conversion;
  a bad one is a ValueError naming file, line, client and example; when the
  task option `class_option` sets num_classes, it says which value fits). With `sample_format`, every sample file must
  start as that format does (`resolve_samples`).
  """
  paths = [mapping_path(data_dir, s) for s in splits] if data_dir else []
  if not paths or not all(os.path.isfile(p) for p in paths):
    kind = 'the review text in its data_path column' if inline else (
        'sample files under <data_dir>/<split>/')
    raise sources.missing_data_error(
        dataset, data_dir,
        [f'<data_dir>/{MAPPING_DIR}/{s}.csv (client_id,sample_path,label_name,label_id)'
         for s in splits] + [kind], published)
  key = storage.fingerprint(paths, inline=inline, data_dir=os.path.abspath(data_dir),
                            checked=check_files, label_from=label_from,
                            classes=list(classes) if classes else None,
                            num_classes=num_classes, sample_format=sample_format)
  store = os.path.join(storage.resolve_cache_dir(cache_dir), f'fedscale-{key}.sqlite')
  if not os.path.exists(store):   # first use: parse, check the files, convert
    mappings = [read_mapping(p) for p in paths]
    for m in mappings:
      if not m.num_rows:
        raise ValueError(f'{m.path} lists no samples.')
    samples = [m.samples if inline else resolve_samples(m, data_dir, s, check_files,
                                                         sample_format)
               for m, s in zip(mappings, splits)]
    labels = label_ids(mappings, label_from, classes)
    what = 'rating - 1 =' if label_from == 'rating' else label_from
    needed = max(int(l.max()) + 1 for l in labels)
    hint = (f'fix it, or pass --task_options={class_option}={needed}'
            if class_option and needed > num_classes else '')
    for m, split_labels in zip(mappings, labels):
      checks.check_class_ids(split_labels, num_classes, m.locate, what, hint)
    schema = {'sample': storage.Field(storage.STRING), 'label': storage.Field('int64')}
    meta = {'source': 'fedscale', 'mappings': paths}
    with storage.writing(store, schema, meta) as writer:
      for split, m, split_samples, split_labels in zip(splits, mappings, samples, labels):
        order = np.argsort(m.client_of_row, kind='stable')
        bounds = np.searchsorted(m.client_of_row[order], np.arange(len(m.client_ids) + 1))
        for c, client in enumerate(m.client_ids):
          rows = order[bounds[c]:bounds[c + 1]]
          writer.add(split, client, ({'sample': split_samples[r], 'label': split_labels[r]}
                                     for r in rows))
  parse = storage.build_parser(storage.read_schema(store))
  return {s: sources.open_split(store, s, parse) for s in splits}
