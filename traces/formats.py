"""The native trace format, version 1: plain, columnar, exact.

Two kinds of file; each is CSV (small traces, readable) or NPZ (large traces,
loads in well under a second per million devices). The extension decides.

Device trace
  CSV  line 1 `# tf_fedscale device trace v1`, line 2 the header
       `device,compute_ms_per_sample,download_kbps,upload_kbps`, then one row per
       device, numbered 0, 1, 2, ... in order. Inference ms per sample and kbps
       (kbit/s, 1 kbit = 1024 bits as FedScale) as decimal numbers (`inf` allowed), written as the shortest
       text that reads back to the same float32.
  NPZ  `format` = 'tf_fedscale.devices', `version` = 1, and float32 [n] arrays
       `compute_ms_per_sample`, `download_kbps`, `upload_kbps`.
Availability trace (device d is online at time t iff start <= t mod period <= end
for one of its slots, closed as FedScale's; slots sorted, disjoint, within
[0, period])
  CSV  line 1 `# tf_fedscale availability trace v1`, line 2 the header
       `device,period_s,start_s,end_s`, then one row per slot in whole seconds,
       devices 0, 1, 2, ... in order; a device without slots has one row with
       empty start_s and end_s; every row of a device repeats its period.
  NPZ  `format` = 'tf_fedscale.availability', `version` = 1, `slot_offsets`
       (int64 [n + 1], device d owns slots offsets[d]:offsets[d + 1]),
       `slot_start_s`, `slot_end_s` (int32 [slots]), `period_s` (int32 [n]).

NPZ files are read with `allow_pickle=False`: loading one runs no code. Every
problem raises `TraceError('<file>: <the first bad entry>')`.
"""

import csv
import os
import re
import zipfile
import zlib
import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale import cli
from tf_fedscale import population as population_lib

VERSION = 1
DEVICE_COLUMNS = ('device', 'compute_ms_per_sample', 'download_kbps', 'upload_kbps')
AVAILABILITY_COLUMNS = ('device', 'period_s', 'start_s', 'end_s')
DEVICE_FIELDS = DEVICE_COLUMNS[1:]
AVAILABILITY_FIELDS = ('slot_offsets', 'slot_start_s', 'slot_end_s', 'period_s')
_KINDS = {'device': 'tf_fedscale.devices', 'availability': 'tf_fedscale.availability'}
_MAGIC = re.compile(r'# tf_fedscale (device|availability) trace v(\d+)\s*$')
EXTENSIONS = ('.csv', '.npz')


class TraceError(ValueError):
  """A trace file that cannot be used; the message names the file and the entry."""

  def __init__(self, path: str, problem: str):
    super().__init__(f'{path}: {problem}')
    self.path = path
    self.problem = problem


def extension(path: str) -> str:
  return os.path.splitext(path)[1].lower()


def _check_extension(path: str) -> str:
  ext = extension(path)
  if ext not in EXTENSIONS:
    raise TraceError(path, f'unknown native format {ext or "(no extension)"!r}; '
                     'use .csv or .npz.')
  return ext


# ---- writing ----


def _atomic_write(path: str, write) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    with open(tmp, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _csv_text(lines: list[str]) -> bytes:
  return ('\n'.join(lines) + '\n').encode()


def write_devices(devices: population_lib.DeviceProfiles, path: str) -> None:
  """Writes `devices` to `path` (.csv or .npz), replacing it atomically."""
  if _check_extension(path) == '.npz':
    _atomic_write(path, lambda f: np.savez(
        f, format=np.array(_KINDS['device']), version=np.array(VERSION),
        **{name: getattr(devices, name) for name in DEVICE_FIELDS}))
    return
  lines = [f'# tf_fedscale device trace v{VERSION}', ','.join(DEVICE_COLUMNS)]
  columns = [[str(v) for v in getattr(devices, name).astype(np.float32)]
             for name in DEVICE_FIELDS]
  lines += [f'{i},{c},{d},{u}' for i, (c, d, u) in enumerate(zip(*columns))]
  _atomic_write(path, lambda f: f.write(_csv_text(lines)))


def write_availability(trace: availability_lib.AvailabilityTrace, path: str) -> None:
  """Writes `trace` to `path` (.csv or .npz), replacing it atomically."""
  ext = _check_extension(path)
  if trace.always_online:
    raise TraceError(path, 'an always-online trace has no slots to write; run '
                     'without an availability trace instead.')
  if ext == '.npz':
    _atomic_write(path, lambda f: np.savez(
        f, format=np.array(_KINDS['availability']), version=np.array(VERSION),
        **{name: getattr(trace, name) for name in AVAILABILITY_FIELDS}))
    return
  lines = [f'# tf_fedscale availability trace v{VERSION}', ','.join(AVAILABILITY_COLUMNS)]
  offsets = trace.slot_offsets.tolist()
  starts, ends = trace.slot_start_s.tolist(), trace.slot_end_s.tolist()
  for device, period in enumerate(trace.period_s.tolist()):
    lo, hi = offsets[device], offsets[device + 1]
    if lo == hi:
      lines.append(f'{device},{period},,')
    lines += [f'{device},{period},{starts[k]},{ends[k]}' for k in range(lo, hi)]
  _atomic_write(path, lambda f: f.write(_csv_text(lines)))


# ---- reading ----


def _read_csv(path: str, kind: str, columns: tuple[str, ...]) -> list[list[str]]:
  """Rows after the magic line and the header (file line i + 3 is row i)."""
  try:
    with open(path, newline='') as f:
      first = f.readline()
      if not first.strip():
        raise TraceError(path, f'empty file; a {kind} trace starts with the line '
                         f'"# tf_fedscale {kind} trace v{VERSION}".')
      match = _MAGIC.match(first)
      if not match:
        raise TraceError(path, f'line 1 is {first.strip()[:60]!r}, expected '
                         f'"# tf_fedscale {kind} trace v{VERSION}".')
      if match.group(1) != kind:
        raise TraceError(path, f'this is a {match.group(1)} trace, not a {kind} trace.')
      if int(match.group(2)) != VERSION:
        raise TraceError(path, f'format version {match.group(2)}; this reader knows '
                         f'version {VERSION}.')
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None or tuple(h.strip() for h in header) != columns:
        raise TraceError(path, f'line 2 is {header}, expected the header '
                         f'{",".join(columns)}.')
      rows = list(reader)
  except UnicodeDecodeError as e:
    raise TraceError(path, f'not a text CSV file ({e.reason}).') from e
  if not rows:
    raise TraceError(path, 'no rows after the header; a trace needs at least one device.')
  for i, row in enumerate(rows):
    if len(row) != len(columns):
      raise TraceError(path, f'line {i + 3}: {len(row)} fields, expected '
                       f'{len(columns)} ({",".join(columns)}).')
  return rows


def _parse(path: str, rows: list[list[str]], column: int, name: str, parse,
           allow_empty: bool = False) -> list:
  values = []
  for i, row in enumerate(rows):
    text = row[column].strip()
    if allow_empty and not text:
      values.append(None)
      continue
    try:
      values.append(parse(text))
    except ValueError:
      kind = 'a whole number' if parse is int else 'a number'
      raise TraceError(path, f'line {i + 3}: {name} is {cli.shorten(text)}, not {kind}.') from None
  return values


def _check_device_ids(path: str, device: np.ndarray, one_row_each: bool) -> None:
  """Devices are numbered 0, 1, 2, ... in order (each on one row, or on
  consecutive rows)."""
  step = np.diff(device, prepend=-1)
  bad = np.flatnonzero(step != 1 if one_row_each else (step != 0) & (step != 1))
  if bad.size:
    i = bad[0]
    if i == 0:
      want = 'device 0'
    elif one_row_each:
      want = f'device {device[i - 1] + 1}'
    else:
      want = f'device {device[i - 1]} or {device[i - 1] + 1}'
    raise TraceError(path, f'line {i + 3}: device {device[i]}, expected {want} '
                     '(devices are numbered 0, 1, 2, ... in order).')


def _first_bad_line(path: str, mask: np.ndarray, line_of: np.ndarray, message) -> None:
  bad = np.flatnonzero(mask)
  if bad.size:
    raise TraceError(path, f'line {line_of[bad[0]]}: {message(bad[0])}')


def read_devices(path: str) -> population_lib.DeviceProfiles:
  """Reads a native device trace (.csv or .npz)."""
  if _check_extension(path) == '.npz':
    arrays = _read_npz(path, 'device', DEVICE_FIELDS)
    values = {name: _as_float32(path, name, arrays[name]) for name in DEVICE_FIELDS}
    n = len(values['compute_ms_per_sample'])
    for name, array in values.items():
      if array.shape != (n,):
        raise TraceError(path, f'{name} has shape {array.shape}, expected ({n},) like '
                         'compute_ms_per_sample.')
    if n == 0:
      raise TraceError(path, 'holds no devices; a trace needs at least one.')
  else:
    rows = _read_csv(path, 'device', DEVICE_COLUMNS)
    _check_device_ids(path, np.array(_parse(path, rows, 0, 'device', int)), True)
    values = {name: np.array(_parse(path, rows, k + 1, name, float), np.float32)
              for k, name in enumerate(DEVICE_FIELDS)}
    bad = np.stack([~(values[name] >= 0) for name in DEVICE_FIELDS], axis=1)
    rows_bad = np.flatnonzero(bad.any(axis=1))
    if rows_bad.size:
      i = rows_bad[0]
      name = DEVICE_FIELDS[int(np.argmax(bad[i]))]
      raise TraceError(path, f'line {i + 3}: {name}={values[name][i]}; speeds must be '
                       'non-negative numbers.')
  return _build(path, lambda: population_lib.DeviceProfiles(**values))


def read_availability(path: str) -> availability_lib.AvailabilityTrace:
  """Reads a native availability trace (.csv or .npz)."""
  if _check_extension(path) == '.npz':
    arrays = _read_npz(path, 'availability', AVAILABILITY_FIELDS)
    fields = {name: _as_int(path, name, arrays[name],
                            np.int64 if name == 'slot_offsets' else np.int32)
              for name in AVAILABILITY_FIELDS}
    for name in AVAILABILITY_FIELDS:
      if fields[name].ndim != 1:
        raise TraceError(path, f'{name} has shape {fields[name].shape}; it must be 1-D.')
    if fields['period_s'].size == 0:
      raise TraceError(path, 'holds no devices; a trace needs at least one.')
    return _build(path, lambda: availability_lib.AvailabilityTrace(**fields))
  rows = _read_csv(path, 'availability', AVAILABILITY_COLUMNS)
  device = np.array(_parse(path, rows, 0, 'device', int), np.int64)
  _check_device_ids(path, device, False)
  period = np.array(_parse(path, rows, 1, 'period_s', int), np.int64)
  start = _parse(path, rows, 2, 'start_s', int, allow_empty=True)
  end = _parse(path, rows, 3, 'end_s', int, allow_empty=True)
  lines = np.arange(len(rows)) + 3
  empty = np.array([s is None for s in start])
  _first_bad_line(path, empty != np.array([e is None for e in end]), lines, lambda i: (
      'start_s and end_s must both be empty (a device without slots) or both set.'))
  new_device = np.diff(device, prepend=-1) == 1
  last_of_device = np.append(new_device[1:], True)
  _first_bad_line(path, empty & ~(new_device & last_of_device), lines, lambda i: (
      f'device {device[i]} has a row without a slot next to rows with slots.'))
  _first_bad_line(path, ~new_device & (period != np.roll(period, 1)), lines, lambda i: (
      f'device {device[i]} has period_s {period[i]}, its previous row '
      f'{period[i - 1]}.'))
  _first_bad_line(path, period <= 0, lines, lambda i: (
      f'period_s is {period[i]}; periods must be positive.'))
  start = np.array([0 if s is None else s for s in start], np.int64)
  end = np.array([0 if e is None else e for e in end], np.int64)
  has = ~empty
  _first_bad_line(path, has & (end <= start), lines, lambda i: (
      f'slot [{start[i]}, {end[i]}) ends at or before its start.'))
  _first_bad_line(path, has & ((start < 0) | (end > period)), lines, lambda i: (
      f'slot [{start[i]}, {end[i]}) lies outside the period [0, {period[i]}].'))
  overlap = np.zeros(len(rows), bool)
  overlap[1:] = has[1:] & ~new_device[1:] & (start[1:] < end[:-1])
  _first_bad_line(path, overlap, lines, lambda i: (
      f'slot [{start[i]}, {end[i]}) of device {device[i]} starts before the previous '
      f'one ends ({end[i - 1]}); slots must be sorted and disjoint.'))
  counts = np.bincount(device[has], minlength=int(device[-1]) + 1)
  offsets = np.zeros(len(counts) + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  return _build(path, lambda: availability_lib.AvailabilityTrace(
      slot_offsets=offsets, slot_start_s=_as_int(path, 'start_s', start[has], np.int32),
      slot_end_s=_as_int(path, 'end_s', end[has], np.int32),
      period_s=_as_int(path, 'period_s', period[new_device], np.int32)))


def _build(path: str, make):
  """Constructs (and so validates) a trace, naming `path` in any error."""
  try:
    return make()
  except ValueError as e:
    raise TraceError(path, str(e)) from e


def _read_npz(path: str, kind: str, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as archive:
      if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TraceError(path, 'holds a single array, not an NPZ archive of a trace.')
      names = set(archive.files)
      arrays = {name: archive[name] for name in names & (set(fields) | {'format', 'version'})}
  except TraceError:
    raise
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError) as e:
    raise TraceError(path, f'not a readable NPZ archive (empty, truncated or corrupt): '
                     f'{type(e).__name__}: {e}') from e
  found = str(arrays['format']) if 'format' in arrays else None
  if found != _KINDS[kind]:
    other = {v: k for k, v in _KINDS.items()}.get(found)
    raise TraceError(path, f'this is a {other} trace, not a {kind} trace.' if other else
                     f'format is {cli.shorten(found)}, expected {_KINDS[kind]!r}.')
  version = arrays.get('version')
  if version is None or version.shape != () or int(version) != VERSION:
    raise TraceError(path, f'format version {None if version is None else version.tolist()}; '
                     f'this reader knows version {VERSION}.')
  missing = [name for name in fields if name not in arrays]
  if missing:
    raise TraceError(path, f'missing arrays {missing}; a {kind} trace has {list(fields)}.')
  return arrays


def _as_float32(path: str, name: str, array: np.ndarray) -> np.ndarray:
  if array.dtype.kind not in 'fiu':
    raise TraceError(path, f'{name} has dtype {array.dtype}, expected float32.')
  return array.astype(np.float32, copy=False)


def _as_int(path: str, name: str, array: np.ndarray, dtype) -> np.ndarray:
  if array.dtype.kind not in 'iu':
    raise TraceError(path, f'{name} has dtype {array.dtype}, expected integers.')
  info = np.iinfo(dtype)
  bad = np.flatnonzero((array < info.min) | (array > info.max))
  if bad.size:
    raise TraceError(path, f'{name}[{bad[0]}] = {array[bad[0]]} does not fit {info.dtype}.')
  return array.astype(dtype, copy=False)
