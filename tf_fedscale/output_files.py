"""Writing result files so that nothing outside their directory is touched and
a kill at any instant leaves each file whole or cut at a row.

A file is replaced whole through a fresh temporary file in its directory
(created with `O_EXCL | O_NOFOLLOW`, then renamed over it: a symbolic link in
its place is replaced, never followed), or grows by one `os.write` of whole
rows opened with `O_NOFOLLOW`. A failed write (a full disk, a read-only or
vanished directory) raises `WriteError` naming the file and leaves no
temporary file behind.
"""

import io
import os
import re
import stat
import tempfile
from collections.abc import Collection
from typing import Any, Optional

TEMP_SUFFIX = '.tmp'
_TEMPORARY = re.compile(r'(.+)\.[A-Za-z0-9_]{8}' + re.escape(TEMP_SUFFIX))   # mkstemp's
_OPEN_EXISTING = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class WriteError(OSError):
  """A result file could not be written; `.path` names it."""

  def __init__(self, path: str, cause: BaseException):
    reason = getattr(cause, 'strerror', None) or str(cause)
    super().__init__(getattr(cause, 'errno', None), reason)
    self.path = path

  def __str__(self) -> str:
    return f'cannot write {self.path} ({self.strerror})'


def _write_all(fd: int, data: bytes) -> None:
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


def _open_regular(path: str, flags: int) -> int:
  """Opens an existing regular file without following a symbolic link."""
  fd = os.open(path, flags | _OPEN_EXISTING)
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    os.close(fd)
    raise IsADirectoryError(f'{path} is not a regular file')
  return fd


def replace(path: str, data: bytes) -> None:
  """Makes `data` the content of `path`, atomically."""
  directory, name = os.path.split(os.path.abspath(path))
  try:
    fd, temp = tempfile.mkstemp(prefix=f'{name}.', suffix=TEMP_SUFFIX, dir=directory)
  except OSError as e:
    raise WriteError(path, e) from e
  try:
    try:
      _write_all(fd, data)
    finally:
      os.close(fd)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
  except OSError as e:
    try:
      os.remove(temp)
    except OSError:
      pass
    raise WriteError(path, e) from e


def write_text(path: str, text: str) -> None:
  """`replace` with `text` in UTF-8."""
  replace(path, text.encode('utf-8'))


def save_figure(figure: Any, path: str, dpi: int = 120) -> None:
  """Saves a matplotlib figure as the PNG `path` (through `replace`)."""
  png = io.BytesIO()
  figure.savefig(png, format='png', dpi=dpi)
  replace(path, png.getvalue())


def append(path: str, data: bytes) -> None:
  """Appends `data` to the existing regular file `path` in one write."""
  try:
    fd = _open_regular(path, os.O_APPEND)
    try:
      _write_all(fd, data)
    finally:
      os.close(fd)
  except OSError as e:
    raise WriteError(path, e) from e


def truncate(path: str, size: int) -> None:
  """Cuts the regular file `path` to its first `size` bytes."""
  try:
    fd = _open_regular(path, 0)
    try:
      os.ftruncate(fd, size)
    finally:
      os.close(fd)
  except OSError as e:
    raise WriteError(path, e) from e


def remove_temporaries(directory: str, names: Optional[Collection[str]] = None) -> None:
  """Removes the temporary files that killed writers left in `directory` (of
  the files `names` only, if given)."""
  for entry in os.scandir(directory):
    match = _TEMPORARY.fullmatch(entry.name)
    if match and (names is None or match.group(1) in names) and entry.is_file(
        follow_symlinks=False):
      try:
        os.remove(entry.path)
      except OSError as e:
        raise WriteError(entry.path, e) from e
