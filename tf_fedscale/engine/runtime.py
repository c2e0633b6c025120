"""TFF execution contexts whose C++ workers never outlive the Python process.

`import tensorflow_federated` installs a context that starts
`tensorflow_federated/data/worker_binary` on first use and never stops it: the
worker keeps the parent's stdout open and hangs any pipeline (CI, `| tee`) that
reads it. Here each worker is started eagerly from the calling thread with
stdout/stderr redirected, a parent-death signal (so SIGKILL of Python kills it
too), and exit hooks (atexit, SIGTERM) that stop it on every normal path.

Importing this module changes nothing process-wide: the exit hooks are installed by
the binaries (`install_exit_hooks`) or only while a context is entered (`exit_hooks`,
used by `local_context` and the worker pool) and restored when it exits.

TFF's import-time context: `import tensorflow_federated` installs a context
whose `ServiceManager.__del__` runs at interpreter teardown, after its module's
globals are gone, and prints "Exception ignored in ServiceManager.__del__" at
every exit of every program that imported TFF and never replaced that context.
The library releases it only once it uses TFF: the first time it installs a
context of its own (`install_default_context`) it collects the replaced one on
the spot, and the objects that run TFF computations outside such a context (a
`Driver`, a `Checkpointer`) call `release_tff_import_context_at_exit` when
built, which registers one atexit handler for that release, removed again as
soon as the library has released the context itself.
"""

import atexit
import contextlib
import ctypes
import gc
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

import grpc
import portpicker
import tensorflow_federated as tff

_PR_SET_PDEATHSIG = 1
_GRPC_OPTIONS = [
    ('grpc.max_message_length', 2 * 1000 * 1000 * 1000),
    ('grpc.max_receive_message_length', 2 * 1000 * 1000 * 1000),
    ('grpc.max_send_message_length', 2 * 1000 * 1000 * 1000),
]
_READY_TIMEOUT_S = 60.0
# How long a worker may stay unreachable before a call on it fails for good
# (instead of TFF's endless retry of UNAVAILABLE).
HEALTH_TIMEOUT_S = 10.0
# A CUDA-enabled (or otherwise custom) worker binary; the pip one is CPU-only.
WORKER_BINARY_ENV = 'TF_FEDSCALE_WORKER_BINARY'


class WorkerUnavailableError(RuntimeError):
  """A TFF worker died or stopped answering (not retried by TFF).

  TFF's contexts retry gRPC UNAVAILABLE forever; the executor factories here
  check the worker before each (re)connection and raise this instead, so the
  caller (`tf_fedscale.engine.worker_pool`) can restart or drop the worker.
  """

  def __init__(self, address: str, reason: str):
    super().__init__(f'TFF worker at {address} {reason}')
    self.address = address


def worker_binary_path() -> str:
  """The C++ worker: $TF_FEDSCALE_WORKER_BINARY, else the one in the TFF package."""
  custom = os.environ.get(WORKER_BINARY_ENV)
  if custom:
    return custom
  return os.path.join(os.path.dirname(tff.__file__), 'data', 'worker_binary')


def _die_with_parent() -> None:
  """Runs in the forked child: ask the kernel to SIGKILL it when we die."""
  libc = ctypes.CDLL('libc.so.6', use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(cpus: Optional[frozenset[int]]):
  """preexec_fn: parent-death signal, then the CPU share (if any)."""

  def setup() -> None:
    _die_with_parent()
    if cpus:
      os.sched_setaffinity(0, cpus)

  return setup


class WorkerProcess:
  """One local TFF C++ worker serving gRPC on a loopback port.

  `env` replaces the environment (default: this process's); `extra_env` is set
  on top of it (e.g. CUDA_VISIBLE_DEVICES for a GPU); `cpus` pins the worker to
  those cores (sched_setaffinity in the child, so TensorFlow sizes its thread
  pools to the share).
  """

  def __init__(
      self,
      max_concurrent_computation_calls: int = -1,
      port: Optional[int] = None,
      env: Optional[dict[str, str]] = None,
      extra_env: Optional[Mapping[str, str]] = None,
      cpus: Optional[Sequence[int]] = None,
  ):
    self.port = port or portpicker.pick_unused_port()
    self._max_calls = max_concurrent_computation_calls
    self._env = env
    self.extra_env = dict(extra_env or {})
    self.cpus = frozenset(cpus) if cpus else None
    self._process: Optional[subprocess.Popen] = None
    self.restarts = 0

  @property
  def address(self) -> str:
    return f'localhost:{self.port}'

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process else None

  def is_alive(self) -> bool:
    return self._process is not None and self._process.poll() is None

  @property
  def exit_status(self) -> Optional[int]:
    """The exit status (negative: killed by that signal), None while running."""
    return self._process.poll() if self._process else None

  def describe(self) -> str:
    return f'{self.address} (pid {self.pid})'

  def start(self) -> None:
    """Starts the worker; it is killed by the kernel if this process dies."""
    binary = worker_binary_path()
    if not os.path.isfile(binary):
      raise RuntimeError(
          f'TFF worker binary not found at {binary!r}; reinstall '
          f'tensorflow-federated==0.87.0 or fix ${WORKER_BINARY_ENV}.')
    env = dict(os.environ if self._env is None else self._env)
    env.update(self.extra_env)
    # One malloc arena per core of the worker's share (glibc's default is 8 per
    # core): the worker's resident memory creeps up more slowly over rounds
    # (measured: +17 MB instead of +29 MB over 55 rounds of 200 clients).
    env.setdefault('MALLOC_ARENA_MAX',
                   str(max(2, len(self.cpus or os.sched_getaffinity(0)))))
    self._process = subprocess.Popen(
        [binary, f'--port={self.port}',
         f'--max_concurrent_computation_calls={self._max_calls}'],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_child_setup(self.cpus),
        env=env,
    )
    _LIVE_WORKERS.add(self)

  def restart(self, failure: bool = True) -> None:
    """Stops the worker (if still running) and starts it on a fresh port;
    `restarts` counts the restarts after failures."""
    self.stop()
    self.port = portpicker.pick_unused_port()
    self.restarts += int(failure)
    self.start()

  def stop(self) -> None:
    """Stops the worker (idempotent)."""
    _LIVE_WORKERS.discard(self)
    if self._process is None or self._process.poll() is not None:
      return
    self._process.terminate()
    try:
      self._process.wait(timeout=5)
    except subprocess.TimeoutExpired:
      self._process.kill()
      self._process.wait()


_LIVE_WORKERS: set[WorkerProcess] = set()


def stop_all_workers() -> None:
  """Stops every worker this process started."""
  for worker in list(_LIVE_WORKERS):
    worker.stop()


class NoWorkerContext(tff.framework.SyncContext):
  """Installed where no managed worker serves TFF: a clear error, not a dead
  channel or an unmanaged worker."""

  def invoke(self, comp, arg):
    raise RuntimeError(
        'No tf_fedscale engine serves TFF computations here; run them inside '
        '`with execution.build(...)` or `runtime.local_context()`.')


def _drop_tff_import_context() -> None:
  """Releases the context `import tensorflow_federated` installed while the
  interpreter is whole: its ServiceManager's __del__ otherwise runs at
  teardown, after `subprocess` is gone, and prints a traceback on every exit."""
  tff.framework.set_default_context(NoWorkerContext())
  gc.collect()


_release_lock = threading.Lock()
_import_context_released = False  # the library installed a context of its own
_release_at_exit_registered = False


def release_tff_import_context_at_exit() -> None:
  """Makes TFF's import-time context go before interpreter teardown (see the
  module docstring): one atexit handler per process, registered on first call
  and only while the library has not replaced that context itself."""
  global _release_at_exit_registered
  with _release_lock:
    if not _import_context_released and not _release_at_exit_registered:
      atexit.register(_drop_tff_import_context)
      _release_at_exit_registered = True


def install_default_context(context: tff.framework.SyncContext) -> None:
  """Makes `context` TFF's default. The first time, the context it replaces
  (TFF's import-time one) is collected now, and the atexit handler of
  `release_tff_import_context_at_exit`, no longer needed, is removed."""
  global _import_context_released, _release_at_exit_registered
  tff.framework.set_default_context(context)
  with _release_lock:
    if _import_context_released:
      return
    _import_context_released = True
    gc.collect()
    if _release_at_exit_registered:
      atexit.unregister(_drop_tff_import_context)
      _release_at_exit_registered = False


def _at_exit() -> None:
  stop_all_workers()
  _drop_tff_import_context()


def _raise_system_exit(signum, frame) -> None:
  del frame
  raise SystemExit(128 + signum)


def install_exit_hooks() -> None:
  """For a program's entry point: for the rest of the process, stop workers at
  exit and turn SIGTERM into SystemExit so that happens.

  SIGINT already raises KeyboardInterrupt; SIGKILL is covered by the workers'
  parent-death signal. A SIGTERM handler the program set itself is kept.
  """
  atexit.register(_at_exit)
  if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _raise_system_exit)


_hooks_lock = threading.Lock()
_hooks_depth = 0
_saved_sigterm = None


@contextlib.contextmanager
def exit_hooks() -> Iterator[None]:
  """The exit hooks of `install_exit_hooks`, only while entered (nests).

  On the outermost exit the atexit handler is removed and the SIGTERM handler
  that was there before is restored, so a library user's program (a notebook, a
  server) keeps its own behaviour. Signal handlers belong to the main thread: in
  another thread only the atexit part applies.
  """
  global _hooks_depth, _saved_sigterm
  with _hooks_lock:
    _hooks_depth += 1
    if _hooks_depth == 1:
      atexit.register(_at_exit)
      if threading.current_thread() is threading.main_thread():
        _saved_sigterm = signal.getsignal(signal.SIGTERM)
        if _saved_sigterm in (signal.SIG_DFL, None):
          signal.signal(signal.SIGTERM, _raise_system_exit)
  try:
    yield
  finally:
    with _hooks_lock:
      _hooks_depth -= 1
      if _hooks_depth == 0:
        atexit.unregister(_at_exit)
        if (_saved_sigterm in (signal.SIG_DFL, None) and
            threading.current_thread() is threading.main_thread() and
            signal.getsignal(signal.SIGTERM) is _raise_system_exit):
          signal.signal(signal.SIGTERM, _saved_sigterm or signal.SIG_DFL)
        _saved_sigterm = None


def _channel_ready(channel: grpc.Channel, timeout_s: float) -> bool:
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout_s)
    return True
  except grpc.FutureTimeoutError:
    return False


def probe(address: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
  """True if a gRPC server answers at `address` within `timeout_s`."""
  channel = grpc.insecure_channel(address, _GRPC_OPTIONS)
  try:
    return _channel_ready(channel, timeout_s)
  finally:
    channel.close()


class Connection:
  """A gRPC channel to one worker, and TFF contexts over it.

  Each executor the contexts create first checks the worker (alive, and
  reachable within `health_timeout_s`) and raises `WorkerUnavailableError`
  otherwise; TFF creates executors again after every failed call, so a dead
  worker ends the call instead of being retried forever.
  """

  def __init__(self, address: str, worker: Optional[WorkerProcess] = None,
               health_timeout_s: float = HEALTH_TIMEOUT_S,
               ready_timeout_s: float = _READY_TIMEOUT_S):
    self.address = address
    self.worker = worker
    self.health_timeout_s = health_timeout_s
    self.channel = grpc.insecure_channel(address, _GRPC_OPTIONS)
    self.stub = tff.framework.RemoteExecutorGrpcStub(self.channel)
    self._wait_ready(ready_timeout_s)

  def _wait_ready(self, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not self.stub.is_ready:
      if self.worker is not None and not self.worker.is_alive():
        raise WorkerUnavailableError(self.address, 'exited before serving.')
      if time.monotonic() > deadline:
        raise WorkerUnavailableError(self.address,
                                     f'not ready after {timeout_s:g} s.')
      time.sleep(0.05)

  def check_health(self) -> None:
    """Raises WorkerUnavailableError if the worker is dead or unreachable."""
    if self.worker is not None and not self.worker.is_alive():
      raise WorkerUnavailableError(
          self.address, f'exited (status {self.worker.exit_status}).')
    # The stub's own connectivity callback first: a READY channel needs no
    # second subscription (whose poller can race a later close()).
    if not self.stub.is_ready and not _channel_ready(self.channel,
                                                     self.health_timeout_s):
      raise WorkerUnavailableError(
          self.address, f'unreachable for {self.health_timeout_s:g} s.')

  def executor_factory(self) -> 'tff.framework.ResourceManagingExecutorFactory':

    def stack_fn(cardinalities):
      self.check_health()
      cardinalities.setdefault(tff.CLIENTS, 0)
      executor = tff.framework.RemoteExecutor(self.stub)
      executor.set_cardinalities(cardinalities)
      return executor

    return tff.framework.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)

  def context(self, asynchronous: bool = False):
    """A new TFF execution context (sync or async) over this connection."""
    context_cls = (tff.framework.AsyncExecutionContext if asynchronous
                   else tff.framework.SyncExecutionContext)
    return context_cls(
        executor_fn=self.executor_factory(),
        compiler_fn=tff.backends.native.desugar_and_transform_to_native,
        transform_args=tff.tensorflow.transform_args,
        transform_result=tff.tensorflow.transform_result,
    )

  def close(self) -> None:
    """Closes the channel; calls still in flight on it fail (CANCELLED)."""
    self.channel.close()


def connect(address: str, worker: Optional[WorkerProcess] = None,
            asynchronous: bool = False):
  """Returns a TFF execution context served by the worker at `address`."""
  return Connection(address, worker).context(asynchronous)


def start_local_workers(
    num_workers: int, max_concurrent_computation_calls: int = -1,
) -> list[WorkerProcess]:
  """Starts `num_workers` managed workers and returns them."""
  if num_workers < 1:
    raise ValueError(f'num_workers must be >= 1, got {num_workers}.')
  workers = [WorkerProcess(max_concurrent_computation_calls)
             for _ in range(num_workers)]
  for worker in workers:
    worker.start()
  return workers


def _install_worker_context(max_concurrent_clients: int) -> WorkerProcess:
  (worker,) = start_local_workers(1, max_concurrent_clients)
  install_default_context(connect(worker.address, worker))
  return worker


def install_local_context(max_concurrent_clients: int = -1) -> WorkerProcess:
  """Makes a managed single-worker C++ context TFF's default; returns the worker.

  The worker lives until `worker.stop()` or the end of the process (an atexit
  handler registered for this worker, and its parent-death signal).
  """
  worker = _install_worker_context(max_concurrent_clients)
  atexit.register(worker.stop)
  return worker


@contextlib.contextmanager
def local_context(max_concurrent_clients: int = -1) -> Iterator[WorkerProcess]:
  """A managed single-worker context for a `with` block: the worker stops and
  TFF's context is left without a worker on exit; the exit hooks hold while
  entered."""
  with exit_hooks():
    worker = _install_worker_context(max_concurrent_clients)
    try:
      yield worker
    finally:
      worker.stop()
      tff.framework.set_default_context(NoWorkerContext())

