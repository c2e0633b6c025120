"""CSV result files whose first column is the round: finding the rows a kill
or a damaged tail left intact, cutting a file after a round, adding rows.

Every write goes through `output_files` (a new file or a new header replaces
the file atomically; rows are appended whole), and a file keeps the line
ending of its header line, so a resumed file matches an uninterrupted one
byte for byte.
"""

import csv
import dataclasses
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import output_files

ROUND_KEY = 'round'


@dataclasses.dataclass(frozen=True)
class Scan:
  """The intact start of a round-keyed CSV.

  `header` is None when the header line itself is incomplete. `rounds[i]` is
  the round of intact row i, which ends at byte `ends[i]` (`header_end` for
  none). `damage` says what ended the intact rows (None: the file ends after
  a whole row).
  """

  header: Optional[list[str]]
  line_ending: str
  header_end: int
  rounds: list[int]
  ends: list[int]
  damage: Optional[str]

  def end_through(self, round_num: int) -> int:
    """The byte offset just after the last intact row of a round <= `round_num`."""
    kept = [end for r, end in zip(self.rounds, self.ends) if r <= round_num]
    return kept[-1] if kept else self.header_end


def _parse_line(line: bytes) -> Optional[list[str]]:
  """The fields of one line (its line ending removed), None if no CSV row."""
  if not line or b'\0' in line:
    return None
  try:
    rows = list(csv.reader([line.decode('utf-8')]))
  except (UnicodeDecodeError, csv.Error):
    return None
  return rows[0] if len(rows) == 1 else None


def _scan_header(path: str, first_line: bytes) -> Scan:
  """A Scan of the header alone (no rows yet)."""
  line_ending = '\r\n' if first_line.endswith(b'\r\n') else '\n'
  header = (_parse_line(first_line[:-len(line_ending)])
            if first_line.endswith(b'\n') else None)
  if header is None:
    return Scan(None, line_ending, 0, [], [], f'{path}: the header line is incomplete')
  return Scan(header, line_ending, len(first_line), [], [], None)


def scan_header(path: str) -> Scan:
  """The header line of `path` and its line ending."""
  with open(path, 'rb') as f:
    return _scan_header(path, f.readline())


def scan(path: str, consecutive: bool) -> Scan:
  """Reads `path` up to its first damaged line: one cut short, blank, with a
  NUL byte or undecodable text, of another width than the header, or whose
  round is not an integer that follows the previous row's (the next one when
  `consecutive`, as in metrics.csv, starting at 0; else the same or a later
  one)."""
  with open(path, 'rb') as f:
    data = f.read()
  found = _scan_header(path, data[:data.find(b'\n') + 1] if b'\n' in data else data)
  if found.header is None:
    return found
  header, line_ending, eol = found.header, found.line_ending, found.line_ending.encode()
  rounds, ends, damage, start = [], [], None, found.header_end
  line_num = 1
  while start < len(data):
    line_num += 1
    stop = data.find(b'\n', start)
    if stop < 0 or data[stop + 1 - len(eol):stop + 1] != eol:
      damage = f'{path}: line {line_num} is cut short (or ends unlike the header)'
      break
    row = _parse_line(data[start:stop + 1 - len(eol)])
    previous = rounds[-1] if rounds else (-1 if consecutive else 0)
    if row is None or len(row) != len(header):
      damage = f'{path}: line {line_num} is not a whole row'
      break
    if not (row[0].isascii() and row[0].isdigit()) or not (
        int(row[0]) == previous + 1 if consecutive else int(row[0]) >= previous):
      damage = f'{path}: line {line_num} has round {row[0][:20]!r} after round {previous}'
      break
    rounds.append(int(row[0]))
    ends.append(stop + 1)
    start = stop + 1
  return Scan(header, line_ending, found.header_end, rounds, ends, damage)


def cut_after(path: str, found: Scan, round_num: int) -> None:
  """Drops the rows of rounds after `round_num` and everything from the first
  damaged line on; a file with an incomplete header is removed. A file with
  nothing to drop is not touched."""
  if found.header is None:
    try:
      os.remove(path)
    except OSError as e:
      raise output_files.WriteError(path, e) from e
    return
  size = found.end_through(round_num)
  if size != os.path.getsize(path):
    output_files.truncate(path, size)


def format_rows(rows: Sequence[Sequence[Any]], line_ending: str) -> bytes:
  out = io.StringIO()
  csv.writer(out, lineterminator=line_ending).writerows(rows)
  return out.getvalue().encode('utf-8')


def create(path: str, header: Sequence[str], line_ending: str,
           rows: Sequence[Sequence[Any]] = ()) -> None:
  """Writes a new file (atomically) holding `header` and `rows`."""
  output_files.replace(path, format_rows([header, *rows], line_ending))


def _flatten(value: Any, prefix: str = '') -> dict[str, Any]:
  """A released structure as {name: value}, names joined with '/' and dict keys
  sorted, like TFF's CSV release manager."""
  if isinstance(value, Mapping):
    flat = {}
    for key in sorted(value):
      flat.update(_flatten(value[key], f'{prefix}{key}/'))
    return flat
  return {prefix[:-1]: value}


class CsvReleaseManager(tff.program.ReleaseManager):
  """Releases each round's record as a row of a CSV keyed by `ROUND_KEY`, as
  `tff.program.CSVFileReleaseManager` in WRITE mode does (releasing round r
  drops rows >= r; a record with new keys adds columns), but appending one row
  per round, with temporary files that never follow a symbolic link, and the
  file's own line ending (TFF's, CRLF, for a new file).
  """

  def __init__(self, path: str, line_ending: str = '\r\n'):
    self.path = path
    self._new_line_ending = line_ending
    self._header: Optional[list[str]] = None
    self._line_ending = line_ending
    self._last_round: Optional[int] = None

  def _load(self, round_num: int) -> None:
    """Reads the file's header (and drops rows >= round_num) once."""
    if not os.path.lexists(self.path):
      return
    found = scan(self.path, consecutive=False)
    cut_after(self.path, found, round_num - 1)
    if found.header is not None:
      self._header, self._line_ending = found.header, found.line_ending
      kept = [r for r in found.rounds if r < round_num]
      self._last_round = kept[-1] if kept else None

  async def release(self, value: Any, key: int) -> None:
    value = await tff.program.materialize_value(value)
    round_num = int(key)
    record = {k: np.array(v).tolist() for k, v in _flatten(value).items()}
    row = {ROUND_KEY: round_num, **record}
    if self._header is None or self._last_round is None or round_num <= self._last_round:
      self._header = None
      self._load(round_num)
    if self._header is None:
      self._header, self._line_ending = list(row), self._new_line_ending
      create(self.path, self._header, self._line_ending, [list(row.values())])
    elif all(k in self._header for k in row):
      output_files.append(self.path, format_rows(
          [[row.get(k, '') for k in self._header]], self._line_ending))
    else:
      self._add_columns(row)
    self._last_round = round_num

  def _add_columns(self, row: Mapping[str, Any]) -> None:
    """Rewrites the file with the new keys of `row` as new columns."""
    with open(self.path, newline='') as f:
      old = list(csv.DictReader(f))
    self._header += [k for k in row if k not in self._header]
    create(self.path, self._header, self._line_ending,
           [[r.get(k, '') for k in self._header] for r in [*old, row]])
