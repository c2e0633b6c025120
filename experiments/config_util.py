"""Experiment configuration: an ml_collections config file overridden by flags,
validated before anything touches the output directory."""

import math
import os
import types
from collections.abc import Mapping
from typing import Any

import ml_collections

from tf_fedscale import algorithms
from tf_fedscale.engine import placement
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale import lr_schedule
from tf_fedscale.traces import compute_model


ASYNC_ALGORITHMS = ('fedavg', 'fedadam', 'fedyogi', 'fedscale-yogi', 'fedadagrad')
ASYNC_ONLY = ('max_concurrency', 'buffer_size', 'max_staleness', 'staleness_weighting')


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


def load_config_file(path: str, defaults: ml_collections.ConfigDict
                     ) -> ml_collections.ConfigDict:
  """Runs `get_config()` of the Python config file at `path`; its result must
  hold every key of `defaults`, each of the same type (an int for a float)."""
  if not os.path.isfile(path):
    raise UsageError(f'--config: {path!r} is not a readable file; pass the path '
                     'of a config module such as experiments/configs/default.py.')
  try:
    # Executed from source, not imported: an import would write __pycache__/ beside
    # the user's file.
    with open(path, encoding='utf-8') as f:
      code = compile(f.read(), path, 'exec')
    module = types.ModuleType('_tf_fedscale_config')
    module.__file__ = path
    exec(code, module.__dict__)  # pylint: disable=exec-used
    config = module.get_config()
  except SystemExit as e:
    raise UsageError(f'--config: {path!r} called sys.exit({e.code!r}) instead of '
                     'returning a config from get_config().') from e
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'--config: cannot load {path!r}: {type(e).__name__}: {e}. '
                     'It must define get_config() returning a ConfigDict.') from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f'--config: get_config() in {path!r} returned '
                     f'{type(config).__name__}, expected ml_collections.ConfigDict.')
  _check_fields(path, config, defaults)
  return config


def _check_fields(path: str, config: ml_collections.ConfigDict,
                  defaults: ml_collections.ConfigDict) -> None:
  missing = [k for k in defaults if k not in config]
  unknown = [k for k in config if k not in defaults]
  if missing or unknown:
    raise UsageError(
        f'--config: {path!r} ' + '; '.join(filter(None, (
            missing and f'lacks {", ".join(missing)}',
            unknown and f'has unknown keys {", ".join(unknown)}'))) +
        '; start from experiments/configs/default.py (get_config() there).')
  for key, default in defaults.items():
    value, expected = config[key], type(default)
    # Exact types: a bool is not an int here; an int may stand for a float.
    allowed = (float, int) if expected is float else (expected,)
    if type(value) not in allowed:  # pylint: disable=unidiomatic-typecheck
      raise UsageError(f'--config: {key} in {path!r} is {value!r} '
                       f'({type(value).__name__}); it must be a {expected.__name__} '
                       f'such as {default!r}.')


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Copy of `config` with every non-None override set (flags win)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    if value is None:
      continue
    if key not in config:
      raise UsageError(f'--{key}: not a key of the config; add it to the config file.')
    with config.unlocked():
      config[key] = type(config[key])(value) if config[key] is not None else value
  return config


def resolved_compute_model(config: ml_collections.ConfigDict) -> str:
  """--compute_model=auto: flops on the generated default devices (calibrated
  on the reference workload), fedscale on a --device_trace file (model-agnostic
  milliseconds, FedScale's rule)."""
  if config.compute_model != 'auto':
    return config.compute_model
  return 'fedscale' if config.device_trace else 'flops'


def _require(condition: bool, flag: str, problem: str) -> None:
  if not condition:
    raise UsageError(f'--{flag}: {problem}')


def validate(config: ml_collections.ConfigDict, choices: Mapping[str, Any]) -> None:
  """Raises UsageError naming the first bad setting."""
  for key, allowed in choices.items():
    _require(config[key] in allowed, key,
             f'unknown value {config[key]!r}; choose from {sorted(allowed)}.')
  for key, value in config.items():
    _require(not isinstance(value, float) or math.isfinite(value), key,
             f'must be a finite number, got {value}.')
  for key in ('seed', 'trace_seed', 'min_samples', 'max_samples'):
    _require(config[key] >= 0, key, f'must be >= 0, got {config[key]}.')
  for key in ('rounds', 'clients_per_round', 'batch_size', 'eval_every',
              'checkpoint_every'):
    _require(config[key] >= 1, key, f'must be a positive integer, got {config[key]}.')
  for key in ('client_lr', 'server_lr', 'backward_factor'):
    _require(math.isfinite(config[key]) and config[key] > 0, key,
             f'must be a positive number, got {config[key]}.')
  _require(config.overcommit >= 1.0, 'overcommit',
           f'must be >= 1.0, got {config.overcommit}.')
  _require(config.deadline_s >= 0, 'deadline_s',
           f'must be >= 0 (0 means no deadline), got {config.deadline_s}.')
  _require(0 <= config.start_time_h < 168, 'start_time_h',
           f'must be in [0, 168) (hours into the trace week), got {config.start_time_h}.')
  _require(config.eval_clients >= 0, 'eval_clients',
           f'must be >= 0 (0 means all), got {config.eval_clients}.')
  _require(config.proximal_strength >= 0, 'proximal_strength',
           f'must be >= 0, got {config.proximal_strength}.')
  for key in ('max_concurrency', 'buffer_size', 'max_staleness'):
    _require(config[key] >= 0, key, f'must be >= 0, got {config[key]}.')
  _require(resolved_compute_model(config) != 'flops'
           or config.backward_factor == compute_model.CALIBRATED_BACKWARD_FACTOR,
           'backward_factor', '--compute_model=flops counts the backward pass in its '
           f'FLOPs (x3), got --backward_factor={config.backward_factor}; leave it at 3.0 '
           'or use --compute_model=fedscale.')
  _validate_mode(config)
  steps, epochs = config.local_steps, config.local_epochs
  _require(steps >= 0 and epochs >= 0, 'local_steps',
           f'local_steps and local_epochs must be >= 0, got {steps} and {epochs}.')
  _require((steps > 0) != (epochs > 0), 'local_steps',
           f'set exactly one of --local_steps and --local_epochs (got {steps} '
           f'and {epochs}); the other must be 0.')
  _validate_plugins(config)
  _validate_execution(config)


def _validate_mode(config: ml_collections.ConfigDict) -> None:
  """The one check of what a training mode cannot do (README, Asynchronous training)."""
  if config.mode == 'async':  # what FedBuff cannot do (tf_fedscale/asynchronous.py)
    _require(config.algorithm in ASYNC_ALGORITHMS, 'algorithm',
             f'--mode=async takes one of {ASYNC_ALGORITHMS} (a client work plus a '
             f'server optimizer), got {config.algorithm!r}.')
    _require(not config.deadline_s, 'deadline_s',
             f'--mode=async has no rounds to cut at a deadline, got {config.deadline_s}; '
             'drop it (--max_staleness bounds late updates).')
    return
  defaults = default_config.get_config()
  for key in ASYNC_ONLY:
    _require(config[key] == defaults[key], key,
             f'only --mode=async uses it (got {config[key]!r}, sync rounds would '
             'ignore it); add --mode=async or drop it.')


def _validate_execution(config: ml_collections.ConfigDict) -> None:
  """--execution and --worker_devices (tf_fedscale/engine/placement.py parses them)."""
  problem = placement.validate_flags(config.execution, config.worker_devices,
                                     config.clients_per_subround, config.data_cache_mb)
  if problem:
    raise UsageError(f'--{problem[0]}: {problem[1]}')
  _require(config.max_concurrent_clients == -1 or config.max_concurrent_clients >= 1,
           'max_concurrent_clients',
           f'must be -1 (no bound) or >= 1, got {config.max_concurrent_clients}.')
  _require(config.get('clients_per_subround', 0) >= 0, 'clients_per_subround',
           f'must be >= 0 (0: automatic), got {config.get("clients_per_subround")}.')
  _require(config.get('worker_recycle_growth', 0.0) >= 0, 'worker_recycle_growth',
           f'must be >= 0 (0: never), got {config.get("worker_recycle_growth")}.')
  _require(config.get('data_cache_mb', -1) >= -1, 'data_cache_mb',
           f'must be >= 0, or -1 for a quarter of the memory, got '
           f'{config.get("data_cache_mb")}.')


def _validate_plugins(config: ml_collections.ConfigDict) -> None:
  """Aggregator, algorithm and selector parameters."""
  for key in ('clip_norm', 'dp_delta', 'sparsify_fraction'):
    _require(math.isfinite(config[key]) and config[key] > 0, key,
             f'must be a positive number, got {config[key]}.')
  _require(0 < config.clip_quantile < 1, 'clip_quantile',
           f'must be in (0, 1), got {config.clip_quantile}.')
  _require(config.dp_delta < 1, 'dp_delta', f'must be < 1, got {config.dp_delta}.')
  _require(config.sparsify_fraction <= 1, 'sparsify_fraction',
           f'must be in (0, 1], got {config.sparsify_fraction}.')
  for key in ('zeroing_norm', 'noise_multiplier', 'qffl_q'):
    _require(math.isfinite(config[key]) and config[key] >= 0, key,
             f'must be >= 0, got {config[key]}.')
  _require(1 <= config.quantization_bits <= 16, 'quantization_bits',
           f'must be in [1, 16], got {config.quantization_bits}.')
  _require(0 <= config.oort_exploration <= 1, 'oort_exploration',
           f'must be in [0, 1], got {config.oort_exploration}.')
  _require(0 <= config.oort_round_percentile <= 100, 'oort_round_percentile',
           f'must be in [0, 100], got {config.oort_round_percentile}.')
  _require(config.oort_pacer_step >= 1, 'oort_pacer_step',
           f'must be a positive integer, got {config.oort_pacer_step}.')
  _require(math.isfinite(config.adaptive_epsilon) and config.adaptive_epsilon > 0,
           'adaptive_epsilon', f'must be a positive number, got {config.adaptive_epsilon}.')
  _require(config.adaptive_initial_accumulator >= 0, 'adaptive_initial_accumulator',
           f'must be >= 0 (0: adaptive_epsilon squared), got '
           f'{config.adaptive_initial_accumulator}.')
  if config.algorithm == 'fedscale-yogi':
    _require(config.adaptive_initial_accumulator in (0, config.adaptive_epsilon),
             'adaptive_initial_accumulator',
             'fedscale-yogi starts its accumulator at --adaptive_epsilon (FedScale\'s '
             f'tau), got {config.adaptive_initial_accumulator}; set it to 0 or '
             f'{config.adaptive_epsilon}.')
  _require(0 <= config.client_momentum < 1, 'client_momentum',
           f'must be in [0, 1), got {config.client_momentum}.')
  _require(math.isfinite(config.client_weight_decay) and config.client_weight_decay >= 0,
           'client_weight_decay', f'must be >= 0, got {config.client_weight_decay}.')
  for key in ('client_momentum', 'client_weight_decay'):
    if config[key]:
      _require(config.algorithm in algorithms.CLIENT_SGD_ALGORITHMS, key,
               f'--algorithm={config.algorithm} has its own client optimizer; '
               f'set --{key}=0 or use one of {", ".join(algorithms.CLIENT_SGD_ALGORITHMS)}.')
  _require(0 < config.client_lr_decay <= 1, 'client_lr_decay',
           f'must be in (0, 1] (1: no decay), got {config.client_lr_decay}.')
  _require(config.client_lr_decay_rounds >= 1, 'client_lr_decay_rounds',
           f'must be a positive integer, got {config.client_lr_decay_rounds}.')
  _require(config.min_client_lr >= 0, 'min_client_lr',
           f'must be >= 0, got {config.min_client_lr}.')
  if config.client_lr_decay != 1:
    _require(config.mode == 'sync', 'client_lr_decay',
             '--mode=async trains at a constant client learning rate; set '
             '--client_lr_decay=1.')
    _require(config.algorithm in lr_schedule.DECAYABLE_ALGORITHMS, 'client_lr_decay',
             f'--algorithm={config.algorithm} exposes no client learning rate to '
             f'decay (only {", ".join(lr_schedule.DECAYABLE_ALGORITHMS)} do); set '
             '--client_lr_decay=1.')
  for key in ('oort_clip_bound', 'oort_cut_off_util'):
    _require(0 <= config[key] <= 1, key, f'must be in [0, 1], got {config[key]}.')
  _require(config.oort_blacklist_rounds >= -1, 'oort_blacklist_rounds',
           f'must be >= 0, or -1 for no blacklist, got {config.oort_blacklist_rounds}.')
  if config.aggregator == 'dp':
    _require(config.algorithm not in ('qffl', 'mime-lite'), 'aggregator',
             f'dp is not supported with --algorithm={config.algorithm} (q-FFL needs '
             'weighted aggregation; Mime Lite would release a second, unaccounted '
             'full gradient).')
    _require(config.mode == 'sync', 'aggregator',
             'dp is not supported with --mode=async: FedBuff aggregates whichever '
             'updates arrive first, which no sampling event describes, so no epsilon '
             'would bound the run; use --mode=sync.')


# Where the run executes may change on resume (results then agree up to float
# rounding); what it computes may not.
RESUME_MAY_DIFFER = ('rounds', 'target_accuracy', 'execution', 'worker_devices',
                     'max_concurrent_clients', 'clients_per_subround',
                     'worker_recycle_growth', 'data_cache_mb')


def differing_keys(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                   may_differ: tuple[str, ...] = RESUME_MAY_DIFFER) -> list[str]:
  """Keys whose value in `config` differs from a run's saved config."""
  current = config.to_dict()
  keys = sorted(set(saved) | set(current))
  return [k for k in keys if k not in may_differ and saved.get(k) != current.get(k)]
