"""FedScale's two pickled trace files, read into our traces.

Unpickling is code execution. These files are read only from a path the user
named (`--device_trace`, `--availability_trace`, `tf_fedscale.traces.convert`), never by
default, and through an unpickler that refuses every global except plain
containers and numpy scalars/arrays, so a crafted file fails instead of running
code. Convert them once with `python -m tf_fedscale.traces.convert` and use the native
format (traces/formats.py) afterwards.

`client_device_capacity`: {client_id: {'computation': ms per sample,
'communication': kbps}}. The one bandwidth becomes both download and upload.
Row r holds the entry with key r mod N (N entries), so `--client_mapping=modulo`
(client k, 1-based, takes row k mod N) gives every client the profile FedScale's
`client_profiles.get(k % N)` gives it. (With keys 1..N, key N lands on row 0,
which FedScale never reads; it would give clients k = N, 2N, ... its fallback
profile of 1.0 ms and 1.0 kbps.) Keys that are not integers 0..N-1 or 1..N keep
the file's order.

`client_behave_trace`: {client_id: {'active': [s], 'inactive': [s],
'finish_time': s, ...}}, online at t iff active[i] <= t % finish_time <=
inactive[i]. Rows keep the file's order (FedScale's `keys[k % N]`), the period
of a device is its finish_time, and each closed interval [a, b] of whole
seconds stays the closed slot [a, b], cut at finish_time (t % finish_time never
reaches it); overlapping or touching intervals are merged. FedScale's
`is_active` walks a per-client pointer that moves at most one interval per
check; here every slot is checked, so the answers agree whenever FedScale's
pointer is on the interval holding t (a check after a jump over a whole
interval can differ).
"""

import logging
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale import cli
from tf_fedscale import population as population_lib
from tf_fedscale.traces import slots as slots_lib
from tf_fedscale.traces.formats import TraceError

CAPACITY_KEYS = ('computation', 'communication')
BEHAVE_KEYS = ('active', 'inactive', 'finish_time')
_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'), ('builtins', 'set'), ('builtins', 'frozenset'),
    ('numpy', 'dtype'), ('numpy', 'ndarray'),
    ('numpy.core.multiarray', 'scalar'), ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'), ('numpy._core.multiarray', '_reconstruct'),
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Loads plain data only: any other global aborts the load."""

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _SAFE_GLOBALS:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'refusing to load {module}.{name}: a FedScale trace '
                                 'holds only dicts, lists and numbers')



def _client(key: Any) -> str:
  """How an error names a trace's client (its key cut short: keys are data)."""
  return f'client {cli.shorten(key)}'

def load_pickle(path: str) -> Any:
  """Unpickles the file the user named at `path` (restricted, see above)."""
  try:
    with open(path, 'rb') as f:
      return _RestrictedUnpickler(f).load()
  except OSError as e:
    raise TraceError(path, f'cannot read: {e.strerror or e}.') from e
  except EOFError as e:
    raise TraceError(path, 'empty or truncated pickle (ran out of data).') from e
  except Exception as e:  # pylint: disable=broad-except
    # A corrupt pickle can raise almost anything (UnpicklingError, ValueError,
    # KeyError, IndexError, ...).
    raise TraceError(path, f'not a readable FedScale pickle: {type(e).__name__}: {e}.') from e


def _number(path: str, key, field: str, value) -> float:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
    raise TraceError(path, f'{_client(key)}: {field} is {cli.shorten(value)}, not a number.')
  return float(value)


def _entry(path: str, key, entry, fields: tuple[str, ...]) -> Mapping:
  if not isinstance(entry, Mapping):
    raise TraceError(path, f'{_client(key)}: entry is a {type(entry).__name__}, expected '
                     f'a dict with {list(fields)}.')
  missing = [f for f in fields if f not in entry]
  if missing:
    raise TraceError(path, f'{_client(key)}: missing {missing}.')
  return entry


def _top_level(path: str, data, what: str) -> Mapping:
  if not isinstance(data, Mapping):
    raise TraceError(path, f'holds a {type(data).__name__}, expected a dict {what}.')
  if not data:
    raise TraceError(path, f'holds an empty dict; expected {what}.')
  return data


def capacity_rows(keys: list) -> np.ndarray:
  """Row of each key: key mod N for integer keys 0..N-1 or 1..N, else file order."""
  n = len(keys)
  if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys):
    values = np.asarray(keys, np.int64)
    if values.min() >= 0 and values.max() <= n:
      rows = values % n
      if np.bincount(rows, minlength=n).max() == 1:
        return rows
  logging.warning('Device capacity keys are not the integers 0..N-1 or 1..N; rows '
                  'keep the file order, so --client_mapping=modulo does not reproduce '
                  'FedScale\'s lookup by key.')
  return np.arange(n)


def devices_from_capacity(data, path: str) -> population_lib.DeviceProfiles:
  """DeviceProfiles from a client_device_capacity dict (see the module docstring)."""
  data = _top_level(path, data, "{client_id: {'computation': ms, 'communication': kbps}}")
  keys = list(data)
  compute = np.empty(len(keys), np.float32)
  bandwidth = np.empty(len(keys), np.float32)
  for i, key in enumerate(keys):
    entry = _entry(path, key, data[key], CAPACITY_KEYS)
    c = _number(path, key, 'computation', entry['computation'])
    b = _number(path, key, 'communication', entry['communication'])
    if not c >= 0:
      raise TraceError(path, f'{_client(key)}: computation is {c} ms/sample; speeds must '
                       'be non-negative.')
    if not b > 0:
      raise TraceError(path, f'{_client(key)}: communication is {b} kbps; bandwidth must '
                       'be positive.')
    compute[i], bandwidth[i] = c, b
  rows = capacity_rows(keys)
  order = np.empty_like(rows)
  order[rows] = np.arange(len(rows))
  compute, bandwidth = compute[order], bandwidth[order]
  try:
    return population_lib.DeviceProfiles(compute, bandwidth, bandwidth.copy())
  except ValueError as e:
    raise TraceError(path, str(e)) from e


def availability_from_behave(data, path: str) -> availability_lib.AvailabilityTrace:
  """AvailabilityTrace from a client_behave_trace dict (see the module docstring)."""
  data = _top_level(path, data, "{client_id: {'active': [...], 'inactive': [...], "
                    "'finish_time': s}}")
  n = len(data)
  period = np.empty(n, np.int64)
  device, start, end = [], [], []
  dropped = 0
  for row, (key, entry) in enumerate(data.items()):
    entry = _entry(path, key, entry, BEHAVE_KEYS)
    p = _number(path, key, 'finish_time', entry['finish_time'])
    if not (p > 0 and p == int(p) and p < 2**31):
      raise TraceError(path, f'{_client(key)}: finish_time is {cli.shorten(entry["finish_time"])}; '
                       'it must be a positive whole number of seconds.')
    active, inactive = entry['active'], entry['inactive']
    for name, values in (('active', active), ('inactive', inactive)):
      if not isinstance(values, (list, tuple, np.ndarray)):
        raise TraceError(path, f'{_client(key)}: {name} is a {type(values).__name__}, '
                         'expected a list of seconds.')
    if len(active) != len(inactive):
      raise TraceError(path, f'{_client(key)}: {len(active)} active times but '
                       f'{len(inactive)} inactive times.')
    period[row] = p
    for i, (a, b) in enumerate(zip(active, inactive)):
      a = _number(path, key, f'active[{i}]', a)
      b = _number(path, key, f'inactive[{i}]', b)
      if not (a >= 0 and a == int(a) and b == int(b)):
        raise TraceError(path, f'{_client(key)}: interval {i} [{a}, {b}] must be whole '
                         'non-negative seconds.')
      if b < a:
        raise TraceError(path, f'{_client(key)}: interval {i} ends at {int(b)} s before it '
                         f'starts at {int(a)} s.')
      if a >= p:
        dropped += 1  # t % finish_time never reaches it
        continue
      device.append(row)
      start.append(int(a))
      end.append(min(int(b), int(p)))
  if dropped:
    logging.warning('%s: %d intervals start at or after their finish_time and can never '
                    'be online; they were left out.', path, dropped)
  if device:
    counts, slot_start, slot_end = slots_lib.merge_slots(
        np.asarray(device, np.int64), np.asarray(start, np.int64),
        np.asarray(end, np.int64), n, int(period.max()))
  else:
    counts = np.zeros(n, np.int64)
    slot_start = slot_end = np.zeros(0, np.int32)
  try:
    return availability_lib.AvailabilityTrace(
        slot_offsets=slots_lib.csr_offsets(counts), slot_start_s=slot_start,
        slot_end_s=slot_end, period_s=period.astype(np.int32))
  except ValueError as e:
    raise TraceError(path, str(e)) from e


def load_device_capacity(path: str) -> population_lib.DeviceProfiles:
  """Reads FedScale's client_device_capacity pickle at the user-named `path`."""
  return devices_from_capacity(load_pickle(path), path)


def load_behave_trace(path: str) -> availability_lib.AvailabilityTrace:
  """Reads FedScale's client_behave_trace pickle at the user-named `path`."""
  return availability_from_behave(load_pickle(path), path)
