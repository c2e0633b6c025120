"""The engine wing: where TFF computations run.

Every engine implements `interface.Engine` (start, stop, call, recycle between
rounds, stats): `inprocess_engine.InProcessEngine` runs a process's
MapReduceForm as TF graphs in this Python process; `worker_pool.WorkerPool`
runs TFF's C++ workers (`local`, `workers:N`, `remote:...`). `execution.build`
maps `--execution` to one. The rest of tf_fedscale (the federated model:
selection, accounting, the driver) only sees `interface.Engine`.

Any TFF code runs on an engine unchanged:

    import tf_fedscale.engine
    with tf_fedscale.engine.build('auto'):
      state = process.initialize()
      result = process.next(state, client_datasets)

`build`, `Engine` and `EngineStats` are imported on first use (PEP 562), so
importing one engine module does not import every engine.
"""

import importlib

_EXPORTS = {'build': 'execution', 'Engine': 'interface', 'EngineStats': 'interface'}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
  globals()[name] = value
  return value
