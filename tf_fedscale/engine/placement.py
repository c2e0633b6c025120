"""`--execution` and `--worker_devices`: parsing and where local workers run.

Pure Python (no TensorFlow import), so flag validation and
`python -m tf_fedscale.engine.worker` stay fast; `tf_fedscale.engine.worker_pool` builds the
contexts.
"""

import dataclasses
import os
import re
import socket
from collections.abc import Sequence
from typing import Optional

MODES = ('auto', 'local', 'workers', 'remote', 'inprocess')
EXECUTION_HELP = ('auto (default: inprocess where it can serve the run, else local), '
                  'local, workers:N (N local workers), '
                  'remote:HOST:PORT[,HOST:PORT...], inprocess (this Python process, '
                  'every GPU else the CPU) or inprocess:N (N devices)')


@dataclasses.dataclass(frozen=True)
class ExecutionSpec:
  """A parsed `--execution` value."""

  mode: str
  num_workers: int = 1  # inprocess: devices (0: every GPU, else the CPU)
  addresses: tuple[str, ...] = ()

  def __str__(self) -> str:
    if self.mode == 'auto':
      return 'auto'
    if self.mode == 'inprocess':
      return f'inprocess:{self.num_workers}' if self.num_workers else 'inprocess'
    if self.mode == 'workers':
      return f'workers:{self.num_workers}'
    if self.mode == 'remote':
      return 'remote:' + ','.join(self.addresses)
    return 'local'


def parse_execution(value: str) -> ExecutionSpec:
  """Parses `--execution`; raises ValueError saying what is expected."""
  text = (value or '').strip()
  if text in ('auto', 'local'):
    return ExecutionSpec(text)
  if text == 'inprocess':
    return ExecutionSpec('inprocess', num_workers=0)
  mode, _, rest = text.partition(':')
  if mode == 'inprocess':
    if not re.fullmatch(r'[0-9]+', rest) or int(rest) < 1:
      raise ValueError(f'inprocess:N needs a whole number N >= 1, got {value!r}.')
    return ExecutionSpec('inprocess', num_workers=int(rest))
  if mode == 'workers':
    if not re.fullmatch(r'[0-9]+', rest) or int(rest) < 1:
      raise ValueError(f'workers:N needs a whole number N >= 1, got {value!r}.')
    return ExecutionSpec('workers', num_workers=int(rest))
  if mode == 'remote':
    addresses = tuple(a.strip() for a in rest.split(','))
    if not rest or not all(addresses):
      raise ValueError(f'remote: needs HOST:PORT[,HOST:PORT...], got {value!r}.')
    for address in addresses:
      _check_address(address)
    if len(set(addresses)) != len(addresses):
      raise ValueError(f'remote: lists a worker twice in {value!r}.')
    return ExecutionSpec('remote', num_workers=len(addresses), addresses=addresses)
  raise ValueError(f'expected {EXECUTION_HELP}, got {value!r}.')


def _check_address(address: str) -> None:
  host, sep, port = address.rpartition(':')
  if not sep or not host or not re.fullmatch(r'[0-9]+', port) or not (
      0 < int(port) < 65536):
    raise ValueError(f'remote worker {address!r} is not HOST:PORT '
                     '(PORT in 1..65535).')


# --- device placement -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where one local worker runs: its extra environment and CPU share."""

  device: str  # 'GPU:1', 'CPU:0-3', or 'all' (not pinned)
  env: dict[str, str] = dataclasses.field(default_factory=dict)
  cpus: Optional[tuple[int, ...]] = None


_DEVICE_RE = re.compile(r'(GPU):([0-9]+)|(CPU):([0-9]+)(?:-([0-9]+))?')


def parse_worker_devices(value: str) -> tuple[str, ...]:
  """`GPU:0,GPU:1` or `CPU:0-3,CPU:4-7` (or empty); raises ValueError."""
  if not value or not value.strip():
    return ()
  devices = tuple(d.strip() for d in value.split(','))
  for device in devices:
    match = _DEVICE_RE.fullmatch(device)
    if not match:
      raise ValueError(f'device {device!r} is not GPU:<index>, CPU:<core> or '
                       'CPU:<first>-<last>.')
    if match.group(3) and match.group(5) and int(match.group(5)) < int(
        match.group(4)):
      raise ValueError(f'device {device!r}: the last core comes before the first.')
  return devices


def device_placement(device: str, available_cpus: Sequence[int]) -> Placement:
  """The environment and affinity that pin a worker to `device`.

  GPU:i sets CUDA_VISIBLE_DEVICES=i (the worker sees that GPU as its only
  one); CPU:a-b pins the worker to cores a..b and hides the GPUs.
  """
  match = _DEVICE_RE.fullmatch(device)
  if not match:
    raise ValueError(f'unknown device {device!r}.')
  if match.group(1):
    return Placement(device, {'CUDA_VISIBLE_DEVICES': match.group(2)}, None)
  first = int(match.group(4))
  last = int(match.group(5)) if match.group(5) else first
  cpus = tuple(range(first, last + 1))
  missing = sorted(set(cpus) - set(available_cpus))
  if missing:
    raise ValueError(f'device {device!r}: cores {missing} are not available to '
                     f'this process (it may use {sorted(available_cpus)}).')
  return Placement(device, {'CUDA_VISIBLE_DEVICES': ''}, cpus)


def plan_placements(num_workers: int, worker_devices: Sequence[str] = (),
                    available_cpus: Optional[Sequence[int]] = None
                    ) -> list[Placement]:
  """One placement per local worker.

  With `worker_devices`, one device each (their number must match). Without,
  a single worker is not pinned and several split this process's cores into
  contiguous shares (round-robin single cores when there are more workers
  than cores).
  """
  cpus = sorted(available_cpus if available_cpus is not None
                else os.sched_getaffinity(0))
  if worker_devices:
    if len(worker_devices) != num_workers:
      raise ValueError(f'{len(worker_devices)} devices given for {num_workers} '
                       'local worker(s); give exactly one device per worker.')
    return [device_placement(d, cpus) for d in worker_devices]
  if num_workers == 1:
    return [Placement('all')]
  placements = []
  for i in range(num_workers):
    if num_workers <= len(cpus):
      lo, hi = i * len(cpus) // num_workers, (i + 1) * len(cpus) // num_workers
      share = tuple(cpus[lo:hi])
    else:
      share = (cpus[i % len(cpus)],)
    name = f'CPU:{share[0]}' + (f'-{share[-1]}' if len(share) > 1 else '')
    placements.append(Placement(name, {}, share))
  return placements


def resolve(spec: ExecutionSpec, worker_devices: Sequence[str] = (),
            clients_per_subround: int = 0) -> tuple[ExecutionSpec, str]:
  """The engine `auto` stands for in this run, and why ('' unless `auto`).

  `auto` is the in-process engine on every device, for synchronous rounds and
  async server steps alike (no TFF worker, GPUs used), unless the run asks
  for what only TFF workers do: `--worker_devices` (pins workers) or
  `--clients_per_subround` (sizes worker calls).
  """
  if spec.mode != 'auto':
    return spec, ''
  if worker_devices:
    workers = len(worker_devices)
    return (ExecutionSpec('workers', num_workers=workers) if workers > 1 else
            ExecutionSpec('local')), '--worker_devices pins TFF workers'
  if clients_per_subround:
    return ExecutionSpec('local'), '--clients_per_subround sizes TFF worker calls'
  return ExecutionSpec('inprocess', num_workers=0), (
      'the in-process engine is the faster one; processes without a MapReduceForm '
      'run on a TFF worker')


def validate_flags(execution: str, worker_devices: str, clients_per_subround: int = 0,
                   data_cache_mb: int = -1) -> Optional[tuple[str, str]]:
  """(flag, problem) for a malformed `--execution`/`--worker_devices`, or a
  flag the chosen engine does not use; else None."""
  try:
    asked = parse_execution(execution)
  except ValueError as e:
    return 'execution', str(e)
  try:
    devices = parse_worker_devices(worker_devices)
  except ValueError as e:
    return 'worker_devices', str(e)
  spec, reason = resolve(asked, devices, clients_per_subround)
  if spec.mode == 'inprocess':
    if devices:
      return 'worker_devices', ('pins TFF workers; --execution=inprocess trains on '
                                'the devices TensorFlow sees (inprocess:N for N of '
                                'them); leave it empty.')
    if clients_per_subround:
      return 'clients_per_subround', ('sizes TFF worker calls; --execution=inprocess '
                                      'runs every client in this process; leave it 0.')
    return None
  if data_cache_mb != -1:
    chosen = f' (auto chose {spec}: {reason})' if reason else ''
    return 'data_cache_mb', ('only --execution=inprocess caches client data (TFF '
                             f'workers build it themselves); leave it -1 with '
                             f'--execution={spec}{chosen}.')
  if spec.mode == 'remote' and devices:
    return 'worker_devices', ('remote workers are pinned where they are started '
                              '(python -m tf_fedscale.engine.worker --device=...); leave '
                              'it empty with --execution=remote:...')
  if devices and len(devices) != spec.num_workers:
    return 'worker_devices', (f'{len(devices)} device(s) for {spec.num_workers} '
                              f'worker(s) of --execution={spec}; give one each.')
  try:
    plan_placements(spec.num_workers, devices)
  except ValueError as e:
    return 'worker_devices', str(e)
  return None


def unreachable_worker(execution: str, timeout_s: float = 5.0) -> Optional[str]:
  """For `--execution=remote:...`, the first worker that refuses or does not
  answer a TCP connection within `timeout_s` (as a problem text), else None."""
  spec = parse_execution(execution)
  for address in spec.addresses:
    host, _, port = address.rpartition(':')
    try:
      with socket.create_connection((host.strip('[]'), int(port)), timeout=timeout_s):
        pass
    except OSError as e:
      return (f'remote worker {address} is not reachable ({e.strerror or e}); start it '
              'with python -m tf_fedscale.engine.worker --port=PORT, or fix HOST:PORT.')
  return None
