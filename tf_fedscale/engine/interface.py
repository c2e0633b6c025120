"""The one interface every engine implements: where TFF computations run.

An engine owns the TFF context while started: `start` installs it, `stop`
removes it and releases what it started (workers, threads). Rounds go through
`call`, which runs a function and runs it again after a recoverable failure
(a lost worker); `recycle_grown_workers` runs between rounds; `stats` reports
what the engine did, for benchmarks and logs. Implementations: the in-process
engine (`inprocess_engine.InProcessEngine`), the managed pool of TFF workers
for `local`, `workers:N` and `remote:...` (`worker_pool.WorkerPool`), and
`InlineEngine`, which runs in whatever context is installed.
"""

from collections.abc import Callable
from typing import Any, Optional, Protocol, TypeVar, runtime_checkable

import attrs

T = TypeVar('T')


@attrs.frozen
class EngineStats:
  """What an engine has done so far.

  `worker_pids`: its live local TFF worker processes (for CPU and memory
  meters); `retired`: the local workers it replaced, each a
  `memory_recycling.Retired` (their CPU seconds and peaks); `recycles`: workers
  restarted for memory growth; `events`: what recovery did, in order;
  `subrounds`: how many sub-rounds the latest call was split into (None where
  an engine never splits a call).
  """
  worker_pids: tuple[int, ...] = ()
  retired: tuple[Any, ...] = ()
  recycles: int = 0
  events: tuple[str, ...] = ()
  subrounds: Optional[int] = None


@runtime_checkable
class Engine(Protocol):
  """Where TFF computations run; see the module docstring."""

  def start(self) -> None:
    """Starts what the engine needs and installs its TFF context."""

  def stop(self) -> None:
    """Removes the engine's context and stops what it started."""

  def call(self, fn: Callable[..., T], *args: Any, description: str = 'call',
           on_retry: Optional[Callable[[], None]] = None,
           max_attempts: Optional[int] = None) -> T:
    """`fn(*args)`, run again after a recoverable failure (`on_retry` first)."""

  def recycle_grown_workers(self, when: str = 'between rounds') -> list[str]:
    """Between rounds: restarts workers whose memory grew; their addresses."""

  def stats(self) -> EngineStats:
    """What the engine has done so far."""


class ContextManagedEngine:
  """`with engine:` starts it and stops it on exit, whatever happens inside."""

  def __enter__(self):
    self.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.stop()


class InlineEngine(ContextManagedEngine):
  """Runs calls in the TFF context already installed, once, without recovery."""

  def start(self) -> None:
    """Nothing to start: the installed context is used."""

  def stop(self) -> None:
    """Nothing to stop."""

  def call(self, fn: Callable[..., T], *args: Any, description: str = 'call',
           on_retry: Optional[Callable[[], None]] = None,
           max_attempts: Optional[int] = None) -> T:
    del description, on_retry, max_attempts
    return fn(*args)

  def recycle_grown_workers(self, when: str = 'between rounds') -> list[str]:
    del when
    return []

  def stats(self) -> EngineStats:
    return EngineStats()
