"""The in-process engine behind `--execution=inprocess` and `inprocess:N`.

Runs an unmodified TFF process's rounds in this Python process through its
MapReduceForm (`inprocess_context`), with no TFF C++ worker: the pip worker
is CPU-only, while TensorFlow here sees every GPU. `inprocess` uses every GPU
TensorFlow sees, else the CPU; `inprocess:N` uses N GPUs, or N logical CPU
devices when there is no GPU (so the multi-device path runs on any machine).
Each device trains `lanes_per_device` clients at a time (`--max_concurrent_clients`;
default: 2 per GPU, the cores shared out on a CPU).

Computations without an in-process form run on a managed TFF worker
(`worker_pool`), started only when one is first needed and logged; with
`strict` (`--execution=inprocess` asked for explicitly) they are refused
instead (NoMapReduceFormError), never silently run elsewhere.
"""

import os
from collections.abc import Callable
from typing import Optional, TypeVar

from absl import logging
import attrs
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import client_data_cache
from tf_fedscale.engine import inprocess_context
from tf_fedscale.engine import interface
from tf_fedscale.engine import memory_recycling
from tf_fedscale.engine import placement
from tf_fedscale.engine import runtime
from tf_fedscale.engine import worker_pool

T = TypeVar('T')
LANES_PER_GPU = 2
# Default --data_cache_mb (-1): this share of the machine's memory.
DEFAULT_CACHE_SHARE = 0.25


def default_cache_bytes() -> int:
  """A quarter of the machine's physical memory."""
  pages = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  return int(pages * DEFAULT_CACHE_SHARE)


def engine_devices(num_devices: int) -> list[str]:
  """The devices `inprocess` (0) or `inprocess:N` trains on.

  N logical CPU devices are created when there is no GPU; if TensorFlow has
  already started (logical devices can then no longer be added), the N lanes
  share the one CPU device, which is logged.
  """
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    if num_devices > len(gpus):
      raise ValueError(f'inprocess:{num_devices} asks for {num_devices} GPUs; '
                       f'TensorFlow sees {len(gpus)}.')
    return [f'/device:GPU:{i}' for i in range(num_devices or len(gpus))]
  wanted = max(1, num_devices)
  cpu = tf.config.list_physical_devices('CPU')[0]
  if wanted > 1:
    try:
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
    except RuntimeError:
      pass  # already initialized: use what exists
  logical = tf.config.list_logical_devices('CPU')
  if len(logical) < wanted:
    logging.warning('execution: inprocess:%d: TensorFlow started before the engine '
                    'with %d CPU device(s); the %d devices are threads on /CPU:0.',
                    wanted, len(logical), wanted)
    return ['/device:CPU:0'] * wanted
  return [d.name for d in logical[:wanted]]


def reserve_devices(execution: str) -> None:
  """Creates the logical CPU devices `--execution=inprocess:N` needs; binaries
  call it before TensorFlow runs its first op (afterwards it is too late)."""
  try:
    spec = placement.parse_execution(execution)
  except ValueError:
    return  # the config's validation, next, names the flag
  if spec.mode == 'inprocess':
    engine_devices(spec.num_workers)


def default_lanes_per_device(devices: list[str]) -> int:
  """2 clients at a time per GPU; on CPUs, the cores shared out (at least 1)."""
  if devices and 'GPU' in devices[0]:
    return LANES_PER_GPU
  return max(1, len(os.sched_getaffinity(0)) // len(devices))


class InProcessEngine(interface.ContextManagedEngine):
  """Installs the in-process context; an `interface.Engine`.

  Use as a context manager. A fallback worker, if one was needed, stops on exit.
  """

  def __init__(self, spec: 'placement.ExecutionSpec | str' = 'inprocess',
               max_concurrent_clients: int = -1, data_cache_mb: int = -1,
               recycle_growth: float = memory_recycling.DEFAULT_RECYCLE_GROWTH,
               strict: bool = True):
    self.spec = placement.parse_execution(spec) if isinstance(spec, str) else spec
    if self.spec.mode != 'inprocess':
      raise ValueError(f'InProcessEngine runs inprocess[:N], not {self.spec}.')
    self.max_concurrent_clients = max_concurrent_clients
    self.data_cache_bytes = (default_cache_bytes() if data_cache_mb < 0
                             else data_cache_mb << 20)
    self.recycle_growth = recycle_growth
    self.strict = strict
    self.devices: list[str] = []
    self.context: Optional[inprocess_context.InProcessContext] = None
    self._fallback_pool: Optional[worker_pool.WorkerPool] = None
    self._events: list[str] = []

  def start(self) -> None:
    self.devices = engine_devices(self.spec.num_workers)
    lanes = (self.max_concurrent_clients if self.max_concurrent_clients > 0
             else default_lanes_per_device(self.devices))
    self.context = inprocess_context.InProcessContext(
        self.devices, lanes, client_data_cache.ClientDataCache(self.data_cache_bytes),
        fallback=None if self.strict else self._fallback_context)
    logging.info('execution: %s on %s, %d client(s) at a time per device, data '
                 'cache %d MB.', self.spec, ', '.join(self.devices), lanes,
                 self.data_cache_bytes >> 20)
    runtime.install_default_context(self.context)

  def stop(self) -> None:
    if self.context is not None:
      self.context.close()
    if self._fallback_pool is not None:
      self._fallback_pool.stop()
    if self.context is not None and (
        tff.framework.get_context_stack().current is self.context):
      tff.framework.set_default_context(runtime.NoWorkerContext())

  def _fallback_context(self) -> tff.framework.SyncContext:
    """The context of a TFF worker started on first need (not installed: the
    in-process context stays TFF's default and hands it what it cannot run)."""
    if self._fallback_pool is None:
      self._fallback_pool = worker_pool.WorkerPool(
          'local', recycle_growth=self.recycle_growth, install_context=False)
      self._fallback_pool.start()
      self._events.append('started a TFF worker for computations without an '
                          'in-process form')
    return self._fallback_pool.context

  def call(self, fn: Callable[..., T], *args, description: str = 'call',
           on_retry: Optional[Callable[[], None]] = None,
           max_attempts: Optional[int] = None) -> T:
    """`fn(*args)`; worker failures are recovered when a fallback worker runs."""
    if self._fallback_pool is None:
      return fn(*args)
    return self._fallback_pool.call(fn, *args, description=description,
                                    on_retry=on_retry, max_attempts=max_attempts)

  def recycle_grown_workers(self, when: str = 'between rounds') -> list[str]:
    if self._fallback_pool is None:
      return []
    return self._fallback_pool.recycle_grown_workers(when)

  def stats(self) -> interface.EngineStats:
    """The fallback worker's, if one runs, with this engine's own events; no
    sub-rounds (a call is never split here)."""
    pool = (self._fallback_pool.stats() if self._fallback_pool
            else interface.EngineStats())
    return attrs.evolve(pool, events=tuple(self._events) + pool.events,
                        subrounds=None)
