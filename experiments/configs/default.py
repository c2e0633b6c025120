"""Default experiment: FedAvg on the embedded Synthetic(0.5, 0.5) task, default traces.

A config file is a Python module with `get_config()` returning a
`ml_collections.ConfigDict`; flags given on the command line override it.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      task='synthetic',
      data_dir='',
      algorithm='fedavg',
      selector='uniform',
      rounds=30,
      clients_per_round=50,
      overcommit=1.3,
      deadline_s=0.0,
      eval_every=5,
      eval_clients=200,
      local_steps=0,
      local_epochs=1,
      batch_size=10,
      client_lr=0.05,
      server_lr=1.0,
      proximal_strength=0.01,
      backward_factor=3.0,
      client_mapping='random',
      trace_seed=0,
      seed=0,
      max_concurrent_clients=-1,
      tensorboard=False,
  ))
