r"""Runs one trace-driven federated simulation.

  python -m tf_fedscale.experiments.run --output_dir=runs/demo
  python -m tf_fedscale.experiments.run --config=experiments/configs/default.py \
      --algorithm=fedyogi --clients_per_round=100 --output_dir=runs/yogi

Every key of the config is also a flag; flags given on the command line win.
Writes <output_dir>/metrics.csv (one row per round), clients.csv (each invited
client's timeline) and config.json (the resolved configuration), holding
<output_dir>/run.lock meanwhile; every flag is checked (and remote workers
reached) before the first file is written.
"""

import os
from collections.abc import Callable, Sequence

from absl import flags
from absl import logging
import ml_collections

# TensorFlow must be imported before absl's app.run: Keras imported lazily
# inside main() cannot build eager Sequential models.
from tf_fedscale import checkpoint
from tf_fedscale import cli
from tf_fedscale.engine import inprocess_engine
from tf_fedscale.engine import runtime
from tf_fedscale.experiments import config_util
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale.experiments import output_dir as output_dir_lib
from tf_fedscale.experiments import reporting
from tf_fedscale.experiments import setup
from tf_fedscale import output_files

_DEFAULTS = default_config.get_config()
_HELP = {
    'task': 'Dataset task name (tasks/registry.py).',
    'data_dir': 'Directory holding the task\'s files (unused by synthetic).',
    'model': 'Model variant of the task (empty: the task\'s default).',
    'min_samples': 'Drop training clients with fewer examples.',
    'max_samples': 'Drop training clients with more examples (0: no maximum).',
    'cache_dir': ('Where converted datasets are cached (empty: $TF_FEDSCALE_CACHE or '
                  '~/.cache/tf_fedscale).'),
    'task_options': 'Task options as key=value,... (see README, Tasks).',
    'algorithm': ('fedavg, fedprox, fedadam, fedyogi, fedscale-yogi (FedScale\'s Yogi: '
                  'no bias correction), fedadagrad, fedsgd, mime-lite or qffl.'),
    'selector': ('Participant selector: uniform, oort, fastest, or '
                 'package.module:ClassName of a tf_fedscale Selector subclass.'),
    'rounds': 'Number of rounds.',
    'clients_per_round': 'Updates aggregated per round.',
    'overcommit': 'Invite int(overcommit x clients_per_round) clients.',
    'deadline_s': 'Round deadline in virtual seconds (0: none).',
    'start_time_h': ('Virtual clock at round 1, in hours into the availability trace\'s '
                     'week (0: day 0, midnight).'),
    'eval_every': 'Evaluate every k rounds.',
    'eval_clients': 'Test clients evaluated (0: all).',
    'local_steps': 'Local SGD steps per client (0: use local_epochs).',
    'local_epochs': 'Local epochs per client (0: use local_steps).',
    'batch_size': 'Client batch size.',
    'client_lr': 'Client learning rate.',
    'client_momentum': ('Client SGD momentum, as torch\'s (FedScale\'s tasks: 0.9; '
                        'fedavg, fedprox and the adaptive algorithms).'),
    'client_weight_decay': ('Client SGD weight decay: weight_decay x w added to the '
                            'gradient, as torch\'s (FedScale\'s tasks: 5e-4).'),
    'server_lr': 'Server learning rate.',
    'proximal_strength': 'FedProx mu.',
    'backward_factor': 'Training cost / inference cost per sample.',
    'compute_model': ('Client compute time: fedscale (samples x the trace\'s ms per '
                      'sample x backward_factor, whatever the model), flops (scaled by '
                      'the model\'s counted training cost, fitted to FLASH\'s measured '
                      'phones) or auto (flops on the default generated devices, '
                      'fedscale on --device_trace).'),
    'client_mapping': 'Clients to trace rows: random (seeded) or modulo (FedScale).',
    'device_trace': ('Device speeds: native .csv/.npz or FedScale\'s '
                     'client_device_capacity pickle (unpickled only because you named '
                     'it); empty: the default generator.'),
    'availability_trace': ('Availability: native .csv/.npz or FedScale\'s '
                           'client_behave_trace pickle; empty: the default generator.'),
    'trace_seed': 'Seed of the default trace generator.',
    'seed': 'Seed of selection and everything else random.',
    'max_concurrent_clients': ('Bound on concurrent client computations per worker; '
                               'with inprocess, clients in flight per device (-1: '
                               'none; inprocess: 2 per GPU, the cores shared out on '
                               'a CPU).'),
    'execution': ('auto (default: inprocess, or local for runs with '
                  '--worker_devices or --clients_per_subround; a process without a '
                  'MapReduceForm runs on a TFF worker, logged), '
                  'local (one TFF worker), workers:N (N local workers sharing '
                  'each round\'s clients), remote:HOST:PORT[,HOST:PORT...] '
                  '(workers started with python -m tf_fedscale.engine.worker), inprocess '
                  '(the process\'s MapReduceForm in this Python process, on every '
                  'GPU TensorFlow sees, else the CPU) or inprocess:N (N GPUs, or N '
                  'logical CPU devices).'),
    'worker_devices': ('One device per local worker: GPU:0,GPU:1,... '
                       '(CUDA_VISIBLE_DEVICES; needs a CUDA-enabled worker binary) '
                       'or CPU:0-3,CPU:4-7 (core affinity); empty: split the cores.'),
    'clients_per_subround': ('Most clients per worker call; larger cohorts run as '
                             'merged sub-rounds (0: sized from the model, ~2 GB '
                             'per call).'),
    'worker_recycle_growth': ('Restart a local worker between rounds once its resident '
                              'memory grew this fraction over its first 10 rounds '
                              '(0: never).'),
    'data_cache_mb': ('inprocess: MB of decoded client datasets kept in memory '
                      'across rounds (-1: a quarter of the machine\'s memory; 0: '
                      'none).'),
    'tensorboard': 'Also write TensorBoard scalars.',
    'aggregator': ('Update aggregation: mean, clipping, zeroing, dp, secure, quantize, '
                   'topk or randk.'),
    'clip_norm': 'L2 clipping norm (clipping, dp), or its initial value if adaptive.',
    'adaptive_clipping': 'Adapt the clipping norm to --clip_quantile of update norms.',
    'clip_quantile': 'Target quantile of update norms for adaptive clipping.',
    'zeroing_norm': 'Zero updates with a larger L2 norm (0: adaptive).',
    'noise_multiplier': 'DP Gaussian noise stddev / clipping norm (--aggregator=dp).',
    'dp_delta': 'Delta of the (epsilon, delta) reported per round with --aggregator=dp.',
    'dp_sampling': ('How --aggregator=dp runs are sampled and accounted: fixed (the '
                    'invited clients drawn without replacement from those online, '
                    'REPLACE_ONE; see README, Aggregators).'),
    'quantization_bits': 'Bits per value with --aggregator=quantize.',
    'sparsify_fraction': ('Share of entries each client uploads with --aggregator=topk '
                          'or randk.'),
    'qffl_q': 'q of q-FFL (0 is FedAvg; larger is fairer).',
    'adaptive_epsilon': ('FedAdam/FedYogi/FedAdagrad: epsilon (tau) of the server '
                         'optimizer (FedScale\'s tasks: 1e-8, its yogi_tau).'),
    'adaptive_initial_accumulator': ('Adaptive server optimizers: initial accumulator '
                                     '(0: adaptive_epsilon squared, Reddi et al.).'),
    'client_lr_decay': ('Multiply the client learning rate by this every '
                        'client_lr_decay_rounds rounds (1: constant; FedScale\'s tasks: '
                        '0.98).'),
    'client_lr_decay_rounds': 'Rounds between client learning-rate decays.',
    'min_client_lr': 'Floor of the decayed client learning rate.',
    'oort_exploration': 'Oort: initial exploration share (decays x0.98 to 0.3).',
    'oort_round_percentile': 'Oort: initial percentile of durations preferred.',
    'oort_pacer_step': 'Oort: rounds between pacer updates.',
    'oort_blacklist_rounds': 'Oort: skip clients that trained more often (-1: never).',
    'oort_clip_bound': ('Oort: utilities are clipped at this quantile (FedScale\'s '
                        'clip_bound).'),
    'oort_cut_off_util': ('Oort: exploitation pool = scores >= this x the score at the '
                          'exploitation length (FedScale\'s cut_off_util).'),
    'oort_straggler_feedback': ('Oort: stragglers get the round\'s mean utility and '
                                'count as explored, as in FedScale (false: left as they '
                                'were).'),
    'checkpoint_every': 'Checkpoint every k rounds (and after the last).',
    'mode': 'sync (rounds) or async (FedBuff: --rounds counts server steps).',
    'max_concurrency': 'async: clients training at once (0: int(overcommit x '
                       'clients_per_round)).',
    'buffer_size': 'async: updates per server step (0: clients_per_round).',
    'max_staleness': 'async: drop updates staler than this many server steps.',
    'staleness_weighting': 'async: constant, or sqrt for 1/sqrt(1 + staleness).',
    'target_accuracy': 'Report the time to reach this test accuracy (0: none).',
}
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}
for _key, _value in _DEFAULTS.items():
  _DEFINE[type(_value)](_key, None, f'{_HELP[_key]} Default: {_value!r}.')

_CONFIG = flags.DEFINE_string('config', None, 'ml_collections config file (Python).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/latest', 'Where results go.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace results already in --output_dir.')
_RESUME = flags.DEFINE_bool(
    'resume', False, 'Continue the run in --output_dir from its newest checkpoint; '
    'the flags must match the run\'s config.json (only --rounds may change).')


def resolve_config() -> ml_collections.ConfigDict:
  """The config file (or the default) with command-line flags applied, then the
  task's published hyper-parameters for every setting neither set."""
  base = (config_util.load_config_file(_CONFIG.value, _DEFAULTS) if _CONFIG.value
          else _DEFAULTS)
  overrides = {k: flags.FLAGS[k].value for k in _DEFAULTS if flags.FLAGS[k].present}
  config = config_util.apply_overrides(base, overrides)
  explicit = set(overrides) | {k for k in base if k in _DEFAULTS and base[k] != _DEFAULTS[k]}
  return setup.apply_task_defaults(config, explicit)


def claim_output_dir(output_dir: str, recheck: Callable[[], None]) -> output_dir_lib.Lock:
  """Creates and locks `output_dir`, then runs `recheck` under the lock (another
  run may have written there since the first check)."""
  try:
    os.makedirs(output_dir, exist_ok=True)
    lock = output_dir_lib.Lock(output_dir)
    stale_pid = lock.acquire()
  except output_dir_lib.LockedError as e:
    cli.fail(f'--output_dir: {output_dir!r} is in use by pid {e.pid} (it holds {e.path}); '
             'wait for that run to end or choose another directory.')
  except output_dir_lib.NotALockError as e:
    cli.fail(f'--output_dir: {e}, so it is not used as the run\'s lock; remove it or '
             'choose another directory.')
  except OSError as e:
    cli.fail(f'--output_dir: cannot create or lock {output_dir!r} ({e.strerror or e}); '
             'choose another directory.')
  if stale_pid:
    logging.warning('took over %s: the run that wrote it (pid %d) ended without '
                    'removing it', lock.path, stale_pid)
  try:
    recheck()
  except config_util.UsageError as e:
    lock.release()
    cli.fail(str(e))
  return lock


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  runtime.install_exit_hooks()  # stop TFF workers on exit and SIGTERM
  output_dir, resume, overwrite = _OUTPUT_DIR.value, _RESUME.value, _OVERWRITE.value

  def check(config: ml_collections.ConfigDict) -> None:
    if resume:
      output_dir_lib.check_path(output_dir)
      output_dir_lib.check_resumable(output_dir, config)
    else:
      output_dir_lib.check_new(output_dir, overwrite)

  try:
    config = resolve_config()
    check(config)
    inprocess_engine.reserve_devices(config.execution)
    experiment = setup.build_experiment(config)
    setup.check_engine(experiment)
    setup.check_workers_reachable(config)
  except config_util.UsageError as e:
    cli.fail(str(e))
  lock = claim_output_dir(output_dir, lambda: check(config))
  try:
    if not resume:
      output_dir_lib.prepare(output_dir, config.to_dict())
    run(experiment, output_dir, resume)
  except output_files.WriteError as e:
    started = os.path.exists(os.path.join(output_dir, output_dir_lib.CONFIG_FILE))
    cli.fail(f'--output_dir: {e}; free space or make it writable, then '
             f'{"continue with --resume (the same flags)" if started else "run again"}.')
  except KeyboardInterrupt:
    cli.interrupted('continue with --resume (the same flags).')
  finally:
    lock.release()


def run(experiment: setup.Experiment, output_dir: str, resume: bool) -> None:
  """Runs the experiment into the claimed `output_dir`, then reports."""
  config = experiment.config
  progress = reporting.Progress(config.rounds)
  try:
    experiment.run(output_dir, progress.update, resume=resume)
  except config_util.UsageError as e:   # found on resume, before any round ran
    cli.fail(str(e))
  except checkpoint.CorruptCheckpointError as e:
    then = (f'it continues from round {e.previous[-1]}' if e.previous
            else 'with no earlier checkpoint it starts over at round 0')
    cli.fail(f'--resume: {e}; move {os.path.join(output_dir, "checkpoints", checkpoint.PREFIX)}'
             f'{e.version} aside and resume again: {then}.')
  finally:
    progress.close()
  target = config.target_accuracy or None
  try:
    written = reporting.write_report(output_dir, target)
  except reporting.RunFilesError as e:
    cli.fail(f'--output_dir: the report cannot be made: {e}')
  print(reporting.format_table(reporting.run_summary(output_dir, target)))
  print(f'results in {output_dir}/ (metrics.csv, clients.csv); report: {written}')


if __name__ == '__main__':
  cli.run(main)
