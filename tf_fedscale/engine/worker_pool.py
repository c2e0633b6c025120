"""The managed pool of TFF workers behind `--execution=local|workers:N|remote:...`.

- `local`: one managed TFF C++ worker (`runtime.WorkerProcess`), TFF's own
  native context over gRPC.
- `workers:N`: N managed local workers, each pinned to a device (GPU through
  CUDA_VISIBLE_DEVICES) or to a share of the cores (sched_setaffinity); each
  round's cohort is split across them (`sharded_context`).
- `remote:HOST:PORT,...`: the same over workers started elsewhere with
  `python -m tf_fedscale.engine.worker --port=P`.

Worker failure: a dead or unreachable worker fails the call
(`runtime.WorkerUnavailableError`, instead of TFF's endless retry of
UNAVAILABLE); `WorkerPool.call` then restarts it (local workers, up to
`max_restarts` times, then drops it) or drops it (remote workers), rebuilds
the context and runs the failed step again, logging what happened. Between
rounds, local workers grown in memory are restarted (`memory_recycling`).
"""

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Optional, TypeVar

from absl import logging
import tensorflow_federated as tff

from tf_fedscale.engine import interface
from tf_fedscale.engine import memory_recycling
from tf_fedscale.engine import placement
from tf_fedscale.engine import runtime
from tf_fedscale.engine import sharded_context
from tf_fedscale.engine import worker_errors

DEFAULT_MAX_RESTARTS = 3

T = TypeVar('T')


class WorkerPool(interface.ContextManagedEngine):
  """Starts (or connects to) the workers and installs the TFF context; an
  `interface.Engine`.

  Use as a context manager; the workers it started stop on exit (and, as
  with every `runtime.WorkerProcess`, if Python dies).
  """

  def __init__(self, spec: 'placement.ExecutionSpec | str' = 'local',
               max_concurrent_clients: int = -1,
               worker_devices: 'Sequence[str] | str' = (),
               clients_per_subround: int = 0,
               recycle_growth: float = memory_recycling.DEFAULT_RECYCLE_GROWTH,
               max_restarts: int = DEFAULT_MAX_RESTARTS,
               health_timeout_s: float = runtime.HEALTH_TIMEOUT_S,
               extra_env: Optional[dict[str, str]] = None,
               install_context: bool = True):
    self.spec = placement.parse_execution(spec) if isinstance(spec, str) else spec
    if isinstance(worker_devices, str):
      worker_devices = placement.parse_worker_devices(worker_devices)
    self.worker_devices = tuple(worker_devices)
    if self.spec.mode == 'remote' and self.worker_devices:
      raise ValueError('remote workers are pinned where they are started '
                       '(python -m tf_fedscale.engine.worker --device=GPU:0 ...), not '
                       'with --worker_devices.')
    self.max_concurrent_clients = max_concurrent_clients
    self.clients_per_subround = clients_per_subround
    self.recycle_growth = recycle_growth
    self.recycles = 0
    # Local worker processes replaced so far (recycled or restarted after a
    # failure): their CPU seconds and peaks, for benchmarks.
    self.retired: list[memory_recycling.Retired] = []
    self._growth = memory_recycling.GrowthWatch(max(0.0, recycle_growth))
    self.max_restarts = max_restarts
    self.health_timeout_s = health_timeout_s
    self._extra_env = dict(extra_env or {})
    self.placements = ([] if self.spec.mode == 'remote' else
                       placement.plan_placements(self.spec.num_workers,
                                                 self.worker_devices))
    self.workers: list[runtime.WorkerProcess] = []  # local workers in the pool
    self.addresses: list[str] = []  # remote workers in the pool
    self._connections: list[runtime.Connection] = []
    self._retired: list[tuple[Any, list[runtime.Connection]]] = []
    self.context = None
    # Whether the pool's context becomes TFF's default (not when it serves
    # another engine's context as its fallback).
    self._install_context = install_context
    self._installed = None
    self._exit_hooks = contextlib.ExitStack()  # runtime.exit_hooks while started
    self.events: list[str] = []  # what recovery did, in order

  # Lifecycle.

  def start(self) -> None:
    self._exit_hooks.enter_context(runtime.exit_hooks())
    if self.spec.mode == 'remote':
      self.addresses = list(self.spec.addresses)
    else:
      for where in self.placements:
        worker = runtime.WorkerProcess(
            self.max_concurrent_clients,
            extra_env={**self._extra_env, **where.env}, cpus=where.cpus)
        worker.placement = where
        self.workers.append(worker)
      try:
        for worker in self.workers:
          worker.start()
      except BaseException:
        self.stop()
        raise
    try:
      self._connect()
    except BaseException:
      self.stop()
      raise

  def stop(self) -> None:
    self._disconnect()
    for worker in self.workers:
      worker.stop()
    if tff.framework.get_context_stack().current is self._installed:
      tff.framework.set_default_context(runtime.NoWorkerContext())
    self._exit_hooks.close()

  @property
  def pool(self) -> list[str]:
    """Addresses of the workers currently in the pool."""
    if self.spec.mode == 'remote':
      return list(self.addresses)
    return [w.address for w in self.workers]

  def _connect(self) -> None:
    if self.spec.mode == 'remote':
      self._connections = [
          runtime.Connection(a, None, health_timeout_s=self.health_timeout_s)
          for a in self.addresses]
    else:
      self._connections = [
          runtime.Connection(w.address, w, health_timeout_s=self.health_timeout_s)
          for w in self.workers]
    self.context = sharded_context.ShardedContext(self._connections,
                                                  self.clients_per_subround)
    if self._install_context:
      runtime.install_default_context(self.context)
      self._installed = self.context

  def _disconnect(self, close: bool = True) -> None:
    """Drops the current context; `close=False` keeps its channels and loops
    open until `stop()`, so sub-rounds still running on surviving workers end
    normally instead of failing into TFF's abandoned tasks."""
    if self.context is not None:
      self._retired.append((self.context, self._connections))
    self.context, self._connections = None, []
    if close:
      for context, connections in self._retired:
        if isinstance(context, sharded_context.ShardedContext):
          context.close()
        for connection in connections:
          connection.close()
      self._retired = []

  # Failure handling.

  def _log(self, message: str, *args) -> None:
    text = message % args if args else message
    self.events.append(text)
    logging.warning('execution: %s', text)

  def unhealthy(self) -> list[str]:
    """Addresses of pool workers that are dead or unreachable."""
    if self.spec.mode == 'remote':
      return [a for a in self.addresses
              if not runtime.probe(a, self.health_timeout_s)]
    return [w.address for w in self.workers if not w.is_alive()]

  def recover(self) -> None:
    """Restarts or drops the failed workers and rebuilds the context. A worker
    that dies again before serving (killed while being restarted) is one more
    failure: it is restarted again, up to `max_restarts` in all, then dropped."""
    self._disconnect(close=False)
    while True:
      replaced = self._replace_failed_workers()
      try:
        self._connect()
        return
      except runtime.WorkerUnavailableError as e:
        if not replaced:   # nobody to restart or drop: it would only repeat
          raise
        self._log('%s; recovering again.', worker_errors.first_line(e))

  def _replace_failed_workers(self) -> int:
    """Restarts or drops every dead or unreachable worker; returns how many."""
    bad = set(self.unhealthy())
    if not bad:
      self._log('no worker found dead; reconnecting to all %d.', len(self.pool))
    if self.spec.mode == 'remote':
      kept = [a for a in self.addresses if a not in bad]
      for address in sorted(bad):
        self._log('remote worker %s is unreachable; dropped it from the pool '
                  '(%d left).', address, len(kept))
      if not kept:
        raise RuntimeError('execution: every remote worker failed; none left of '
                           f'{list(self.spec.addresses)}.')
      self.addresses = kept
      return len(bad)
    survivors = []
    for worker in self.workers:
      if worker.address not in bad:
        survivors.append(worker)
        continue
      old = worker.describe()
      status = worker.exit_status
      if worker.restarts < self.max_restarts:
        self.retired.append(memory_recycling.retire(worker.pid))
        worker.restart()
        survivors.append(worker)
        self._log('worker %s on %s exited (status %s); restarted it as %s '
                  '(restart %d of %d).', old, worker.placement.device, status,
                  worker.describe(), worker.restarts, self.max_restarts)
      else:
        worker.stop()
        self._log('worker %s on %s exited (status %s) after %d restarts; '
                  'dropped it from the pool.', old, worker.placement.device,
                  status, worker.restarts)
    if not survivors:
      raise RuntimeError('execution: every local worker failed more than '
                         f'{self.max_restarts} times.')
    self.workers = survivors
    return len(bad)

  def call(self, fn: Callable[..., T], *args,
           description: str = 'call', on_retry: Optional[Callable[[], None]] = None,
           max_attempts: Optional[int] = None) -> T:
    """`fn(*args)`, recovering from worker failures and trying again.

    `on_retry` runs before each new attempt (to rewind state `fn` mutated).
    Errors that are not worker failures (and do not coincide with a dead
    worker) are raised at once.
    """
    if max_attempts is None:
      max_attempts = (self.max_restarts + 1) * max(1, len(self.pool)) + 1
    attempt = 1
    while True:
      try:
        return fn(*args)
      except Exception as e:  # pylint: disable=broad-except
        if not (worker_errors.is_worker_error(e) or self.unhealthy()):
          raise
        if attempt >= max_attempts:
          self._log('%s failed %d times; giving up: %s: %s', description,
                    attempt, type(e).__name__, worker_errors.first_line(e))
          raise
        self._log('%s failed on a worker (%s: %s); recovering.', description,
                  type(e).__name__, worker_errors.first_line(e))
        self.recover()
        attempt += 1
        if on_retry is not None:
          on_retry()
        self._log('retrying %s (attempt %d) on %d worker(s): %s.', description,
                  attempt, len(self.pool), ', '.join(self.pool))

  def stats(self) -> interface.EngineStats:
    """The live local workers, those replaced, recycles, recovery events and
    the latest call's sub-rounds."""
    return interface.EngineStats(
        worker_pids=tuple(w.pid for w in self.workers if w.is_alive()),
        retired=tuple(self.retired), recycles=self.recycles,
        events=tuple(self.events),
        subrounds=self.context.last_subrounds if self.context else None)

  def recycle_grown_workers(self, when: str = 'between rounds') -> list[str]:
    """Restarts local workers whose memory grew past `recycle_growth`.

    Call between rounds (nothing in flight). The workers hold no state across
    rounds, so a restart only costs a new process and re-warming its caches.
    Returns the restarted addresses.
    """
    if self.spec.mode == 'remote':
      return []
    grown = {g.pid: g for g in self._growth.look([w.pid for w in self.workers])}
    if not grown:
      return []
    self._disconnect()
    restarted = []
    for worker in self.workers:
      if worker.pid not in grown:
        continue
      found = grown[worker.pid]
      old = worker.describe()
      self._growth.forget(worker.pid)
      self.retired.append(memory_recycling.retire(worker.pid))
      worker.restart(failure=False)
      self.recycles += 1
      restarted.append(worker.address)
      logging.info('execution: %s, worker %s held %.0f MB, %.0f%% over its %.0f MB '
                   'baseline; restarted it (pid %s).', when, old,
                   found.rss_bytes / 2**20,
                   100 * (found.rss_bytes / found.baseline_bytes - 1),
                   found.baseline_bytes / 2**20, worker.pid)
    self._connect()
    return restarted
