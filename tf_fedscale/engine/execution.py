"""Choosing where rounds run: `--execution=auto|local|workers:N|remote:...|inprocess[:N]`.

Two engines: the managed pool of TFF C++ workers (`worker_pool`: one or more
workers, their context in `sharded_context`, failure recovery and memory
recycling) for `local`, `workers:N` and `remote:...`, and the in-process
engine (`inprocess_engine`: the process's MapReduceForm run as TF graphs in
this Python process) for `inprocess` and `inprocess:N`. Flag parsing and
device placement are in `placement`. This module maps an experiment's flags
or config to an engine, refusing the flags that engine does not use; `auto`
(the default) is the in-process engine where it can serve the run, falling
back to a TFF worker, with a logged line, for a process it cannot run.
"""

from absl import logging

from tf_fedscale.engine import inprocess_engine
from tf_fedscale.engine import interface
from tf_fedscale.engine import memory_recycling
from tf_fedscale.engine import placement
from tf_fedscale.engine import worker_pool

DEFAULT_RECYCLE_GROWTH = memory_recycling.DEFAULT_RECYCLE_GROWTH
validate_flags = placement.validate_flags


def build(execution: str = 'auto', max_concurrent_clients: int = -1,
          worker_devices: str = '', clients_per_subround: int = 0,
          recycle_growth: float = DEFAULT_RECYCLE_GROWTH,
          data_cache_mb: int = -1) -> interface.Engine:
  """The engine `--execution` names (not started: use it as a context manager).

  `auto` is resolved here (`placement.resolve`) and its choice logged; an
  in-process engine chosen by `auto` runs computations without an in-process
  form on a TFF worker, one asked for explicitly refuses them.
  Raises ValueError('--flag: problem') for a flag the engine does not use.
  """
  problem = placement.validate_flags(execution, worker_devices, clients_per_subround,
                                     data_cache_mb)
  if problem:
    raise ValueError(f'--{problem[0]}: {problem[1]}')
  spec, chosen_because = placement.resolve(
      placement.parse_execution(execution),
      placement.parse_worker_devices(worker_devices), clients_per_subround)
  if chosen_because:
    logging.info('execution: auto chose %s (%s).', spec, chosen_because)
  if spec.mode == 'inprocess':
    return inprocess_engine.InProcessEngine(
        spec, max_concurrent_clients=max_concurrent_clients,
        data_cache_mb=data_cache_mb, recycle_growth=recycle_growth,
        strict=not chosen_because)
  return worker_pool.WorkerPool(
      spec, max_concurrent_clients=max_concurrent_clients,
      worker_devices=worker_devices, clients_per_subround=clients_per_subround,
      recycle_growth=recycle_growth)


def from_config(config) -> interface.Engine:
  """The engine an experiment config asks for (`execution`, `worker_devices`,
  `max_concurrent_clients`, `clients_per_subround`, `worker_recycle_growth`,
  `data_cache_mb`)."""
  return build(config.get('execution', 'auto'),
               max_concurrent_clients=config.max_concurrent_clients,
               worker_devices=config.get('worker_devices', ''),
               clients_per_subround=config.get('clients_per_subround', 0),
               recycle_growth=config.get('worker_recycle_growth', DEFAULT_RECYCLE_GROWTH),
               data_cache_mb=config.get('data_cache_mb', -1))
