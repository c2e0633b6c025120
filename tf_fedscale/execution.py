"""Choosing where rounds run: `--execution=local|workers:N|remote:...`.

The engine behind each mode is the managed worker pool (`worker_pool`: one
or more TFF C++ workers, their context in `sharded_context`, failure recovery
and memory recycling); flag parsing and device placement are in `placement`.
This module maps an experiment's flags or config to an engine and picks the
TFF training loop that suits the devices.
"""

from collections.abc import Sequence

import tensorflow_federated as tff

from tf_fedscale import memory_recycling
from tf_fedscale import placement
from tf_fedscale import worker_pool

DEFAULT_RECYCLE_GROWTH = memory_recycling.DEFAULT_RECYCLE_GROWTH
validate_flags = placement.validate_flags
Execution = worker_pool.WorkerPool


def loop_implementation(worker_devices: Sequence[str] = ()
                        ) -> 'tff.learning.LoopImplementation':
  """TFF's advice: DATASET_ITERATOR with several GPUs, DATASET_REDUCE otherwise."""
  gpus = {d for d in worker_devices if d.startswith('GPU:')}
  if len(gpus) > 1:
    return tff.learning.LoopImplementation.DATASET_ITERATOR
  return tff.learning.LoopImplementation.DATASET_REDUCE


def from_config(config) -> worker_pool.WorkerPool:
  """The engine an experiment config asks for (`execution`, `worker_devices`,
  `max_concurrent_clients`, `clients_per_subround`, `worker_recycle_growth`)."""
  return worker_pool.WorkerPool(
      config.get('execution', 'local'),
      max_concurrent_clients=config.max_concurrent_clients,
      recycle_growth=config.get('worker_recycle_growth', DEFAULT_RECYCLE_GROWTH),
      worker_devices=config.get('worker_devices', ''),
      clients_per_subround=config.get('clients_per_subround', 0))
