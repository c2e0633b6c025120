"""Which local workers grew in resident memory enough to be restarted.

TFF's C++ worker (plain TFF too) creeps up in resident memory round after
round. A worker's baseline is the most it held at each of its first
RECYCLE_WINDOW looks; one grown past the baseline by more than the growth
fraction is due for a restart between rounds (`worker_pool` restarts it).
"""

import os
from collections.abc import Sequence
from typing import Optional

import attrs

DEFAULT_RECYCLE_GROWTH = 0.10
RECYCLE_WINDOW = 10


def rss_bytes(pid: Optional[int], field: str = 'VmRSS') -> Optional[int]:
  """Resident memory of process `pid` (`VmHWM`: its peak so far; None if it
  is gone or unknown)."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1]) * 1024
  except (OSError, TypeError):
    pass
  return None


def cpu_seconds(pid: Optional[int]) -> Optional[float]:
  """User plus system CPU seconds of process `pid` so far (None if gone)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
  except (OSError, TypeError):
    return None
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


@attrs.frozen
class Retired:
  """What a replaced worker process used: CPU seconds and its resident peak."""
  pid: int
  cpu_seconds: float
  peak_rss_bytes: int


def retire(pid: int) -> Retired:
  """`Retired` figures of `pid`, read just before it is stopped."""
  return Retired(pid, cpu_seconds(pid) or 0.0, rss_bytes(pid, 'VmHWM') or 0)


@attrs.frozen
class Grown:
  """A process found grown: its pid, resident bytes now and its baseline."""
  pid: int
  rss_bytes: int
  baseline_bytes: int


class GrowthWatch:
  """Tracks each process's baseline and reports those grown past it."""

  def __init__(self, growth: float = DEFAULT_RECYCLE_GROWTH):
    if growth < 0:
      raise ValueError(f'growth must be >= 0 (0 turns recycling off), got {growth}.')
    self.growth = growth
    self._seen: dict[int, list[int]] = {}  # pid -> RSS at its first looks

  def look(self, pids: Sequence[int]) -> list[Grown]:
    """Looks at `pids` once; returns those grown past their baseline."""
    if self.growth <= 0:
      return []
    grown = []
    for pid in pids:
      rss = rss_bytes(pid)
      if rss is None:
        continue
      seen = self._seen.setdefault(pid, [])
      if len(seen) < RECYCLE_WINDOW:
        seen.append(rss)
      elif rss > max(seen) * (1 + self.growth):
        grown.append(Grown(pid, rss, max(seen)))
    return grown

  def forget(self, pid: int) -> None:
    """Drops `pid`'s baseline (its process is being replaced)."""
    self._seen.pop(pid, None)
