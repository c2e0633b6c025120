"""TFF execution contexts whose C++ workers never outlive the Python process.

`import tensorflow_federated` installs a context that starts
`tensorflow_federated/data/worker_binary` on first use and never stops it: the
worker keeps the parent's stdout open and hangs any pipeline (CI, `| tee`) that
reads it. Here each worker is started eagerly from the calling thread with
stdout/stderr redirected, a parent-death signal (so SIGKILL of Python kills it
too), and an atexit plus SIGTERM hook that stops it on every normal path.
"""

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
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


def worker_binary_path() -> str:
  """Path of the C++ worker that ships inside the TFF pip package."""
  return os.path.join(os.path.dirname(tff.__file__), 'data', 'worker_binary')


def _die_with_parent() -> None:
  """Runs in the forked child: ask the kernel to SIGKILL it when we die."""
  libc = ctypes.CDLL('libc.so.6', use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerProcess:
  """One local TFF C++ worker serving gRPC on a loopback port."""

  def __init__(
      self,
      max_concurrent_computation_calls: int = -1,
      port: Optional[int] = None,
      env: Optional[dict[str, str]] = None,
  ):
    self.port = port or portpicker.pick_unused_port()
    self._max_calls = max_concurrent_computation_calls
    self._env = env
    self._process: Optional[subprocess.Popen] = None

  @property
  def address(self) -> str:
    return f'localhost:{self.port}'

  @property
  def pid(self) -> Optional[int]:
    return self._process.pid if self._process else None

  def is_alive(self) -> bool:
    return self._process is not None and self._process.poll() is None

  def start(self) -> None:
    """Starts the worker; it is killed by the kernel if this process dies."""
    binary = worker_binary_path()
    if not os.path.isfile(binary):
      raise RuntimeError(f'TFF worker binary not found at {binary!r}; '
                         'reinstall tensorflow-federated==0.87.0.')
    self._process = subprocess.Popen(
        [binary, f'--port={self.port}',
         f'--max_concurrent_computation_calls={self._max_calls}'],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        env=self._env,
    )
    _LIVE_WORKERS.add(self)

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


def _raise_system_exit(signum, frame) -> None:
  del frame
  raise SystemExit(128 + signum)


def install_exit_hooks() -> None:
  """Stops workers at exit, and turns SIGTERM into SystemExit so that happens.

  SIGINT already raises KeyboardInterrupt; SIGKILL is covered by the workers'
  parent-death signal.
  """
  atexit.register(stop_all_workers)
  if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _raise_system_exit)


def _wait_ready(stub: 'tff.framework.RemoteExecutorGrpcStub',
                worker: Optional[WorkerProcess], address: str) -> None:
  deadline = time.monotonic() + _READY_TIMEOUT_S
  while not stub.is_ready:
    if worker is not None and not worker.is_alive():
      raise RuntimeError(f'TFF worker at {address} exited before serving.')
    if time.monotonic() > deadline:
      raise RuntimeError(
          f'TFF worker at {address} not ready after {_READY_TIMEOUT_S} s.')
    time.sleep(0.05)


def _remote_executor_factory(
    stub: 'tff.framework.RemoteExecutorGrpcStub',
) -> 'tff.framework.ResourceManagingExecutorFactory':

  def stack_fn(cardinalities):
    cardinalities.setdefault(tff.CLIENTS, 0)
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor

  return tff.framework.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)


def connect(address: str, worker: Optional[WorkerProcess] = None,
            asynchronous: bool = False):
  """Returns a TFF execution context served by the worker at `address`."""
  channel = grpc.insecure_channel(address, _GRPC_OPTIONS)
  stub = tff.framework.RemoteExecutorGrpcStub(channel)
  _wait_ready(stub, worker, address)
  context_cls = (tff.framework.AsyncExecutionContext if asynchronous
                 else tff.framework.SyncExecutionContext)
  return context_cls(
      executor_fn=_remote_executor_factory(stub),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result,
  )


def start_local_workers(
    num_workers: int, max_concurrent_computation_calls: int = -1,
) -> list[WorkerProcess]:
  """Starts `num_workers` managed workers and returns them."""
  if num_workers < 1:
    raise ValueError(f'num_workers must be >= 1, got {num_workers}.')
  install_exit_hooks()
  workers = [WorkerProcess(max_concurrent_computation_calls)
             for _ in range(num_workers)]
  for worker in workers:
    worker.start()
  return workers


def install_local_context(max_concurrent_clients: int = -1) -> WorkerProcess:
  """Makes a managed single-worker C++ context TFF's default; returns the worker."""
  (worker,) = start_local_workers(1, max_concurrent_clients)
  tff.framework.set_default_context(connect(worker.address, worker))
  return worker


@contextlib.contextmanager
def local_context(max_concurrent_clients: int = -1) -> Iterator[WorkerProcess]:
  """`install_local_context` for a `with` block; the worker stops on exit."""
  worker = install_local_context(max_concurrent_clients)
  try:
    yield worker
  finally:
    worker.stop()


def worker_pids_with_env(marker: str) -> Sequence[int]:
  """Pids of live worker binaries whose environment contains `marker`.

  Tests give a run a unique environment variable and use this to prove that no
  worker it started survives it.
  """
  pids = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        if b'worker_binary' not in f.read():
          continue
      with open(f'/proc/{entry}/environ', 'rb') as f:
        if marker.encode() in f.read():
          pids.append(int(entry))
    except OSError:
      continue
  return pids

