r"""A TFF worker for `--execution=remote:HOST:PORT,...`, in the foreground.

  python -m tf_fedscale.engine.worker --port=8000
  python -m tf_fedscale.engine.worker --port=8000 --device=GPU:0 \
      --worker_binary=/opt/tff/worker_binary          # a CUDA-enabled build
  python -m tf_fedscale.engine.worker --port=8000 --device=CPU:0-7

Replaces itself (exec) with TFF's C++ executor service, `worker_binary`,
serving gRPC on `--port` until it is killed (SIGTERM/SIGINT). The pip
package's binary is CPU-only; `--worker_binary` (or $TF_FEDSCALE_WORKER_BINARY)
points at another build. `--device=GPU:i` sets CUDA_VISIBLE_DEVICES=i;
`--device=CPU:a-b` pins the worker to cores a..b.

The service is unauthenticated and unencrypted gRPC: run it on a trusted
network only.
"""

import importlib.util
import os
import sys
from collections.abc import Sequence

from absl import flags

from tf_fedscale import cli
from tf_fedscale.engine import placement

_PORT = flags.DEFINE_integer('port', None, 'Port to serve on.', required=True)
_MAX_CALLS = flags.DEFINE_integer(
    'max_concurrent_computation_calls', -1,
    'Bound on concurrent client computations on this worker (-1: none).')
_DEVICE = flags.DEFINE_string(
    'device', '', 'GPU:<index> (sets CUDA_VISIBLE_DEVICES) or CPU:<first>-<last> '
    '(pins to those cores); empty: not pinned.')
_BINARY = flags.DEFINE_string(
    'worker_binary', '', 'TFF worker binary (default: $TF_FEDSCALE_WORKER_BINARY, '
    'else the CPU-only one in the tensorflow-federated package).')

WORKER_BINARY_ENV = 'TF_FEDSCALE_WORKER_BINARY'  # = runtime.WORKER_BINARY_ENV


def default_binary() -> str:
  """The worker binary, found without importing TensorFlow."""
  custom = os.environ.get(WORKER_BINARY_ENV)
  if custom:
    return custom
  spec = importlib.util.find_spec('tensorflow_federated')
  if spec is None or not spec.origin:
    raise RuntimeError('tensorflow_federated is not installed.')
  return os.path.join(os.path.dirname(spec.origin), 'data', 'worker_binary')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; all options are --flags.')
  if not 0 < _PORT.value < 65536:
    cli.fail(f'--port: must be in 1..65535, got {_PORT.value}.')
  binary = _BINARY.value or default_binary()
  if not os.access(binary, os.X_OK):
    cli.fail(f'--worker_binary: {binary!r} is not an executable file.')
  env = dict(os.environ)
  if _DEVICE.value:
    try:
      where = placement.device_placement(
          _DEVICE.value.strip(), sorted(os.sched_getaffinity(0)))
    except ValueError as e:
      cli.fail(f'--device: {e}')
    env.update(where.env)
    if where.cpus:
      os.sched_setaffinity(0, where.cpus)
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(binary, [binary, f'--port={_PORT.value}',
                     f'--max_concurrent_computation_calls={_MAX_CALLS.value}'], env)


if __name__ == '__main__':
  cli.run(main)
