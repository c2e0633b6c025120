"""The engine wing: where TFF computations run.

Every engine implements `interface.Engine` (start, stop, call, recycle between
rounds, stats): `inprocess_engine.InProcessEngine` runs a process's
MapReduceForm as TF graphs in this Python process; `worker_pool.WorkerPool`
runs TFF's C++ workers (`local`, `workers:N`, `remote:...`). `execution.build`
maps `--execution` to one. The rest of tf_fedscale (the federated model:
selection, accounting, the driver) only sees `interface.Engine`.
"""
