"""Execution contexts for large cohorts: `--execution=local|workers:N|remote:...`.

- `local`: one managed TFF C++ worker (`runtime.WorkerProcess`), TFF's own
  native context over gRPC.
- `workers:N`: N managed local workers, each pinned to a device (GPU through
  CUDA_VISIBLE_DEVICES) or to a share of the cores (sched_setaffinity); each
  round's cohort is split across them by TFF's `MergeableCompExecutionContext`.
- `remote:HOST:PORT,...`: the same over workers started elsewhere with
  `python -m tf_fedscale.worker --port=P`.

Everything is public TFF: `RemoteExecutor`, `RemoteExecutorGrpcStub`,
`ResourceManagingExecutorFactory`, `AsyncExecutionContext`,
`SyncExecutionContext`, `MergeableCompExecutionContext` and
`compile_to_mergeable_comp_form`. Three things are added around them:

- sub-rounds: TFF's C++ worker keeps every client's output of a call until it
  aggregates (memory grows with the cohort: 1.9 GB for 100 FEMNIST-CNN
  clients), so a cohort larger than `clients_per_subround` (default: sized
  from the model, about 2 GB per call) runs as several mergeable sub-rounds,
  also in `local` mode; with several workers, at least one per worker;
- each worker's async context runs on its own event-loop thread. TFF's
  `RemoteExecutor` makes blocking gRPC calls from coroutines, so async contexts
  sharing the mergeable context's single loop run their sub-rounds one after
  the other (measured: the second worker idles until the first finishes);
- worker failure: a dead or unreachable worker fails the call
  (`runtime.WorkerUnavailableError`, instead of TFF's endless retry of
  UNAVAILABLE); `Execution.call` then restarts it (local workers, up to
  `max_restarts` times, then drops it) or drops it (remote workers), rebuilds
  the context and runs the failed step again, logging what happened.

Computations without per-client arguments, or that
`compile_to_mergeable_comp_form` rejects, run whole on the first worker.
Sub-round partial sums are merged in completion order, so several workers give
the single-worker weights up to float rounding; one worker is deterministic.
"""

import asyncio
import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, TypeVar

from absl import logging
import attrs
import grpc
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import placement
from tf_fedscale import runtime

DEFAULT_MAX_RESTARTS = 3
# TFF's C++ worker (plain TFF too) creeps up in resident memory round after
# round; a local worker grown this much over its baseline (the most it held
# in its first RECYCLE_WINDOW rounds) is restarted between rounds.
DEFAULT_RECYCLE_GROWTH = 0.10
RECYCLE_WINDOW = 10

T = TypeVar('T')

# Re-exported: parsing and placement live in tf_fedscale.placement.
MODES = placement.MODES
ExecutionSpec = placement.ExecutionSpec
Placement = placement.Placement
parse_execution = placement.parse_execution
parse_worker_devices = placement.parse_worker_devices
plan_placements = placement.plan_placements
device_placement = placement.device_placement
validate_flags = placement.validate_flags


def loop_implementation(worker_devices: Sequence[str] = ()
                        ) -> 'tff.learning.LoopImplementation':
  """TFF's advice: DATASET_ITERATOR with several GPUs, DATASET_REDUCE otherwise."""
  gpus = {d for d in worker_devices if d.startswith('GPU:')}
  if len(gpus) > 1:
    return tff.learning.LoopImplementation.DATASET_ITERATOR
  return tff.learning.LoopImplementation.DATASET_REDUCE


# --- contexts ---------------------------------------------------------------


class _OwnLoopContext(tff.framework.AsyncContext):
  """Runs an async context's calls on an event loop of its own (a thread).

  `RemoteExecutor` blocks its event loop during each gRPC call; giving every
  worker its own loop lets the mergeable context's sub-rounds overlap.
  """

  def __init__(self, inner: tff.framework.AsyncContext, name: str):
    self._inner = inner
    self._loop = asyncio.new_event_loop()
    self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                    name=f'tff-worker-{name}')
    self._thread.start()

  async def invoke(self, comp, arg):
    future = asyncio.run_coroutine_threadsafe(self._inner.invoke(comp, arg),
                                              self._loop)
    return await asyncio.wrap_future(future)

  def close(self) -> None:
    self._loop.call_soon_threadsafe(self._loop.stop)


# Auto sub-round size: the C++ worker holds every client's output of a call
# until it aggregates them (measured: about 3.5x the model per client on the
# FEMNIST CNN, 1.9 GB for 100 clients), so a call gets at most this much.
AUTO_SUBROUND_BYTES = 2 << 30
BYTES_PER_CLIENT_PER_STATE_BYTE = 4


def _nbytes(value: Any) -> int:
  """Bytes of the arrays in a (nested) value: numpy, tensors, containers."""
  if isinstance(value, (np.ndarray, np.generic)):
    return int(value.nbytes)
  if isinstance(value, tf.Tensor):
    return int(value.shape.num_elements() or 0) * value.dtype.size
  if isinstance(value, (str, bytes)) or value is None:
    return 0
  if isinstance(value, (int, float, bool)):
    return 8
  if isinstance(value, tff.structure.Struct):
    return sum(_nbytes(v) for _, v in tff.structure.iter_elements(value))
  if isinstance(value, Mapping):
    return sum(_nbytes(v) for v in value.values())
  if isinstance(value, (list, tuple)):
    return sum(_nbytes(v) for v in value)
  if attrs.has(type(value)):
    return sum(_nbytes(getattr(value, f.name)) for f in attrs.fields(type(value)))
  return 0


def client_split(type_spec, value) -> tuple[Optional[int], int]:
  """(clients in the CLIENTS-placed, per-client part of `value`, or None;
  bytes of the rest, e.g. the server state every client receives)."""
  clients, rest = [], [0]

  def walk(t, v):
    if isinstance(t, tff.StructType):
      elements = tff.structure.iter_elements(tff.structure.from_container(v))
      for (_, element), element_type in zip(elements, t):
        walk(element_type, element)
    elif (isinstance(t, tff.FederatedType) and t.placement == tff.CLIENTS
          and not t.all_equal):
      clients.append(len(v))
    else:
      rest[0] += _nbytes(v)

  walk(type_spec, value)
  return (max(clients) if clients else None), rest[0]


class ShardedContext(tff.framework.SyncContext):
  """Runs each call on the workers, splitting large cohorts into sub-rounds.

  A computation whose argument holds per-client values runs whole on the first
  worker when its clients fit one sub-round; otherwise TFF's
  `MergeableCompExecutionContext` runs it as sub-rounds (at least one per
  worker, each of at most `clients_per_subround` clients) over the workers,
  dynamically balanced, and merges their partial aggregates. Anything else
  (plain TensorFlow, no clients) runs on the first worker.
  """

  def __init__(self, connections: Sequence[runtime.Connection],
               clients_per_subround: int = 0):
    if not connections:
      raise ValueError('ShardedContext needs at least one worker.')
    self._contexts = [_OwnLoopContext(c.context(asynchronous=True), c.address)
                      for c in connections]
    self._single = connections[0].context(asynchronous=False)
    self.clients_per_subround = clients_per_subround
    self._forms: dict[Any, Any] = {}
    self._mergeable: dict[int, tff.framework.MergeableCompExecutionContext] = {}
    self.last_subrounds = 1  # of the latest call (for tests and logs)

  def subrounds(self, num_clients: int, state_bytes: int) -> int:
    """How many sub-rounds a call on `num_clients` clients runs as."""
    per = self.clients_per_subround
    if per <= 0:
      per = max(1, AUTO_SUBROUND_BYTES // max(
          1, BYTES_PER_CLIENT_PER_STATE_BYTE * state_bytes))
    return max(-(-num_clients // per), min(len(self._contexts), num_clients))

  def _mergeable_form(self, comp):
    if comp not in self._forms:
      try:
        self._forms[comp] = tff.backends.native.compile_to_mergeable_comp_form(comp)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('execution: %s cannot be split into sub-rounds (%s: %s); '
                        'it runs whole on the first worker.',
                        comp.type_signature, type(e).__name__, _first_line(e))
        self._forms[comp] = None
    return self._forms[comp]

  def invoke(self, comp, arg):
    parameter = getattr(comp.type_signature, 'parameter', None)
    subrounds = 1
    if parameter is not None and arg is not None:
      num_clients, state_bytes = client_split(parameter, arg)
      if num_clients:
        subrounds = self.subrounds(num_clients, state_bytes)
    form = self._mergeable_form(comp) if subrounds > 1 else None
    if form is None:
      self.last_subrounds = 1
      return self._single.invoke(comp, arg)
    if subrounds not in self._mergeable:
      self._mergeable[subrounds] = tff.framework.MergeableCompExecutionContext(
          async_contexts=self._contexts, num_subrounds=subrounds)
    self.last_subrounds = subrounds
    return self._mergeable[subrounds].invoke(form, arg)

  def close(self) -> None:
    for context in self._contexts:
      context.close()


# --- the managed pool -------------------------------------------------------


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


_TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)


def is_worker_error(error: BaseException) -> bool:
  """True for errors that a dying or unreachable worker raises."""
  for e in _chain(error):
    if isinstance(e, (runtime.WorkerUnavailableError,
                      tff.framework.RetryableError)):
      return True
    if isinstance(e, grpc.Call) and e.code() in _TRANSIENT_CODES:
      return True
  return False


class Execution:
  """Starts (or connects to) the workers and installs the TFF context.

  Use as a context manager; the workers it started stop on exit (and, as
  with every `runtime.WorkerProcess`, if Python dies).
  """

  def __init__(self, spec: 'ExecutionSpec | str' = 'local',
               max_concurrent_clients: int = -1,
               worker_devices: 'Sequence[str] | str' = (),
               clients_per_subround: int = 0,
               recycle_growth: float = DEFAULT_RECYCLE_GROWTH,
               max_restarts: int = DEFAULT_MAX_RESTARTS,
               health_timeout_s: float = runtime.HEALTH_TIMEOUT_S,
               extra_env: Optional[dict[str, str]] = None):
    self.spec = placement.parse_execution(spec) if isinstance(spec, str) else spec
    if isinstance(worker_devices, str):
      worker_devices = placement.parse_worker_devices(worker_devices)
    self.worker_devices = tuple(worker_devices)
    if self.spec.mode == 'remote' and self.worker_devices:
      raise ValueError('remote workers are pinned where they are started '
                       '(python -m tf_fedscale.worker --device=GPU:0 ...), not '
                       'with --worker_devices.')
    self.max_concurrent_clients = max_concurrent_clients
    self.clients_per_subround = clients_per_subround
    self.recycle_growth = recycle_growth
    self.recycles = 0
    self._rss_baseline: dict[int, list[int]] = {}  # pid -> RSS after its rounds
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
    self._installed = None
    self.events: list[str] = []  # what recovery did, in order

  # Lifecycle.

  def __enter__(self) -> 'Execution':
    self.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def start(self) -> None:
    runtime.install_exit_hooks()
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
    self.context = ShardedContext(self._connections, self.clients_per_subround)
    tff.framework.set_default_context(self.context)
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
        if isinstance(context, ShardedContext):
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
    """Restarts or drops the failed workers and rebuilds the context."""
    self._disconnect(close=False)
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
    else:
      survivors = []
      for worker in self.workers:
        if worker.address not in bad:
          survivors.append(worker)
          continue
        old = worker.describe()
        status = worker.exit_status
        if worker.restarts < self.max_restarts:
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
    self._connect()

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
        if not (is_worker_error(e) or self.unhealthy()):
          raise
        if attempt >= max_attempts:
          self._log('%s failed %d times; giving up: %s: %s', description,
                    attempt, type(e).__name__, _first_line(e))
          raise
        self._log('%s failed on a worker (%s: %s); recovering.', description,
                  type(e).__name__, _first_line(e))
        self.recover()
        attempt += 1
        if on_retry is not None:
          on_retry()
        self._log('retrying %s (attempt %d) on %d worker(s): %s.', description,
                  attempt, len(self.pool), ', '.join(self.pool))

  def recycle_grown_workers(self, when: str = 'between rounds') -> list[str]:
    """Restarts local workers whose memory grew past `recycle_growth`.

    Call between rounds (nothing in flight). A worker's baseline is the most
    it held after each of its first RECYCLE_WINDOW calls of this method; the
    workers hold no state across rounds, so a restart only costs a new
    process and re-warming its caches. Returns the restarted addresses.
    """
    if self.recycle_growth <= 0 or self.spec.mode == 'remote':
      return []
    grown = []
    for worker in self.workers:
      rss = _rss_bytes(worker.pid)
      if rss is None:
        continue
      seen = self._rss_baseline.setdefault(worker.pid, [])
      if len(seen) < RECYCLE_WINDOW:
        seen.append(rss)
      elif rss > max(seen) * (1 + self.recycle_growth):
        grown.append((worker, rss, max(seen)))
    if not grown:
      return []
    self._disconnect()
    restarted = []
    for worker, rss, baseline in grown:
      old = worker.describe()
      del self._rss_baseline[worker.pid]
      worker.restart(failure=False)
      self.recycles += 1
      restarted.append(worker.address)
      logging.info('execution: %s, worker %s held %.0f MB, %.0f%% over its %.0f MB '
                   'baseline; restarted it (pid %s).', when, old, rss / 2**20,
                   100 * (rss / baseline - 1), baseline / 2**20, worker.pid)
    self._connect()
    return restarted

  def protect(self, sim) -> None:
    """Makes `sim.run_round` (and round 0) survive worker failures.

    A round is a function of (state, round number) once the selector is
    rewound, so the failed round is simply run again from the same state.
    After each round, local workers whose memory grew are recycled.
    """
    run_round = sim.run_round
    evaluate_initial = sim.evaluate_initial

    def run_round_with_recovery(state):
      saved = copy.deepcopy(sim.selector.get_state())
      result = self.call(
          run_round, state, description=f'round {state.round_num + 1}',
          on_retry=lambda: sim.selector.set_state(copy.deepcopy(saved)))
      self.recycle_grown_workers(f'after round {state.round_num + 1}')
      return result

    def evaluate_initial_with_recovery(state):
      return self.call(evaluate_initial, state, description='round 0')

    sim.run_round = run_round_with_recovery
    sim.evaluate_initial = evaluate_initial_with_recovery


def _rss_bytes(pid: Optional[int]) -> Optional[int]:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except (OSError, TypeError):
    pass
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else ''


def from_config(config) -> Execution:
  """The Execution an experiment config asks for (`execution`, `worker_devices`,
  `max_concurrent_clients`, `clients_per_subround`)."""
  return Execution(config.get('execution', 'local'),
                   max_concurrent_clients=config.max_concurrent_clients,
                   recycle_growth=config.get('worker_recycle_growth',
                                             DEFAULT_RECYCLE_GROWTH),
                   worker_devices=config.get('worker_devices', ''),
                   clients_per_subround=config.get('clients_per_subround', 0))
