"""Checks of a source's decoded examples against what its task's model needs.

Every loader runs them once, when it converts (or first opens) a source, so a
label outside the task's classes or a feature of the wrong shape or type is
one ValueError naming file, client and example before a run writes anything,
instead of a gRPC traceback in the round that happens to pick that client.
Labels are checked over whole numpy columns (one vectorized pass); shapes and
types per store, against its schema (a store's examples all fit its schema).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Optional

import numpy as np

from tf_fedscale.tasks import storage

Locate = Callable[[int], str]   # row of the checked column -> 'file: client 'c' example j'


def _integral_in_range(values: np.ndarray, num_classes: int) -> np.ndarray:
  """Per element: an integer (or integral float) in [0, num_classes)."""
  if values.dtype.kind in 'iu':
    return (values >= 0) & (values < num_classes)
  if values.dtype.kind == 'f':
    with np.errstate(invalid='ignore'):
      return np.isfinite(values) & (np.mod(values, 1) == 0) & (values >= 0) & (
          values < num_classes)
  # Strings, booleans or mixed JSON values: only numbers can be class ids.
  flat = [isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
          and np.isfinite(v) and v == int(v) and 0 <= v < num_classes
          for v in values.reshape(-1).tolist()]
  return np.asarray(flat, bool).reshape(values.shape)


def check_class_ids(labels: Any, num_classes: int, locate: Locate, what: str = 'label',
                    hint: str = '') -> None:
  """Raises ValueError unless every label is a class id in [0, num_classes).

  `labels` is one column (an example per row; rows of several values, such as
  LEAF's `[[-1]]`, are checked whole); the error names the first bad row by
  `locate(row)` and counts the others.
  """
  values = np.asarray(labels) if not isinstance(labels, list) else _as_column(labels)
  if not values.size:
    return
  good = _integral_in_range(values, num_classes).reshape(len(values), -1).all(axis=1)
  bad = np.flatnonzero(~good)
  if bad.size:
    row = int(bad[0])
    value = values[row]
    shown = value.tolist() if isinstance(value, np.ndarray) else (
        value.item() if isinstance(value, np.generic) else value)
    others = f' (and {bad.size - 1} more)' if bad.size > 1 else ''
    raise ValueError(f'{locate(row)}: {what} {shown!r} is not a class id in '
                     f'[0, {num_classes}){others}; {hint or "fix the data"}.')


def _as_column(labels: list) -> np.ndarray:
  """A list of JSON values as a numpy column; ragged or mixed ones as objects."""
  try:
    values = np.asarray(labels)
  except ValueError:   # ragged rows
    values = np.empty(len(labels), object)
    values[:] = labels
  if values.dtype.kind in 'USiub' and any(isinstance(v, (str, bool)) for v in labels):
    values = np.empty(len(labels), object)   # JSON strings or booleans: no class ids
    values[:] = labels
  return values


@dataclasses.dataclass(frozen=True)
class Need:
  """What a task needs of one stored feature: strings or numbers, and for
  numbers how many per example (None: any)."""

  string: bool
  size: Optional[int] = None
  description: str = ''


def check_schema(schema: Mapping[str, storage.Field], needs: Mapping[str, Need],
                 where: str) -> None:
  """Raises ValueError naming `where` (the example the schema came from) unless
  every feature of `needs` is in `schema` with the kind and size needed."""
  for key, need in needs.items():
    field = schema.get(key)
    if field is None:
      raise ValueError(f'{where}: no {key!r} values; the task needs {need.description}.')
    is_string = field.dtype == storage.STRING
    count = int(np.prod(field.shape, dtype=np.int64))
    if is_string != need.string or (need.size is not None and count != need.size):
      kind = 'strings' if is_string else f'{field.dtype} numbers'
      raise ValueError(f'{where}: {key} holds {kind} of shape {list(field.shape)}; the '
                       f'task needs {need.description}.')
