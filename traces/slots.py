"""Turns loose availability intervals into the sorted, disjoint CSR slots of an
`AvailabilityTrace` (used by the default generator and the FedScale loader)."""

import numpy as np


def merge_slots(device: np.ndarray, start: np.ndarray, end: np.ndarray,
                num_devices: int, max_end: int):
  """Sorts intervals by (device, start) and merges overlapping or touching ones.

  `device` indexes [0, num_devices); `start` < `end` are integer seconds in
  [0, max_end]. Returns (intervals per device, merged starts, merged ends) as
  int64 / int32 / int32 arrays: the pieces of a CSR availability trace.
  """
  stride = np.int64(max_end) + 1  # keeps devices apart in one sort key
  start = np.asarray(start)
  key_start = np.asarray(device).astype(np.int64) * stride + start
  order = np.argsort(key_start, kind='stable')  # timsort: inputs come in sorted runs
  key_start = key_start[order]
  reach = np.maximum.accumulate(key_start - start[order] + np.asarray(end)[order])
  opens = np.ones(len(key_start), bool)
  opens[1:] = key_start[1:] > reach[:-1]
  first = np.flatnonzero(opens)
  last = np.append(first[1:] - 1, len(key_start) - 1)
  owner = key_start[first] // stride
  origin = owner * stride
  merged_start = (key_start[first] - origin).astype(np.int32)
  merged_end = (reach[last] - origin).astype(np.int32)
  counts = np.bincount(owner, minlength=num_devices).astype(np.int64)
  return counts, merged_start, merged_end


def csr_offsets(counts: np.ndarray) -> np.ndarray:
  """slot_offsets (int64 [n + 1]) from the number of slots of each device."""
  offsets = np.zeros(len(counts) + 1, np.int64)
  np.cumsum(counts, out=offsets[1:])
  return offsets
