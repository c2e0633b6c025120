"""Default experiment: FedAvg on the embedded Synthetic(0.5, 0.5) task, default traces.

A config file is a Python module with `get_config()` returning a
`ml_collections.ConfigDict`; flags given on the command line override it.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      task='synthetic',
      data_dir='',
      # Task details (tasks/registry.py). tf_fedscale.experiments.run also gives the task's
      # published hyper-parameters to every setting not set explicitly.
      model='',
      min_samples=1,
      max_samples=0,
      cache_dir='',
      task_options='',
      algorithm='fedavg',
      selector='uniform',
      rounds=30,
      clients_per_round=50,
      overcommit=1.3,
      deadline_s=0.0,
      start_time_h=0.0,
      eval_every=5,
      eval_clients=200,
      local_steps=20,
      local_epochs=0,
      batch_size=10,
      client_lr=0.05,
      server_lr=1.0,
      client_momentum=0.0,
      client_weight_decay=0.0,
      proximal_strength=0.01,
      backward_factor=3.0,
      # auto: flops on the default generated devices, fedscale on --device_trace.
      compute_model='auto',
      client_mapping='random',
      # Traces: '' = the embedded default generator (traces/default.py).
      device_trace='',
      availability_trace='',
      trace_seed=0,
      seed=0,
      max_concurrent_clients=-1,
      # Execution (tf_fedscale/engine/execution.py): auto (inprocess where it can
      # serve the run, else local), local, workers:N,
      # remote:HOST:PORT,... or inprocess[:N]; worker_devices pins local
      # workers (GPU:0,GPU:1); data_cache_mb bounds inprocess's client data cache.
      execution='auto',
      worker_devices='',
      clients_per_subround=0,
      worker_recycle_growth=0.10,
      data_cache_mb=-1,
      tensorboard=False,
      # Aggregation plug-ins (tf_fedscale/aggregators.py).
      aggregator='mean',
      clip_norm=1.0,
      adaptive_clipping=False,
      clip_quantile=0.5,
      zeroing_norm=0.0,
      noise_multiplier=1.0,
      dp_delta=1e-5,
      dp_sampling='fixed',
      quantization_bits=8,
      sparsify_fraction=0.1,
      # Algorithms and selection.
      qffl_q=1.0,
      adaptive_epsilon=1e-3,
      adaptive_initial_accumulator=0.0,
      client_lr_decay=1.0,
      client_lr_decay_rounds=10,
      min_client_lr=5e-5,
      oort_exploration=0.9,
      oort_round_percentile=30.0,
      oort_pacer_step=20,
      oort_blacklist_rounds=-1,
      oort_clip_bound=0.9,
      oort_cut_off_util=0.05,
      oort_straggler_feedback=True,
      checkpoint_every=10,
      # Asynchronous training (FedBuff), --mode=async.
      mode='sync',
      max_concurrency=0,
      buffer_size=0,
      max_staleness=5,
      staleness_weighting='sqrt',
      target_accuracy=0.0,
  ))
