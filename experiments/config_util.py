"""Experiment configuration: an ml_collections config file overridden by flags,
validated before anything touches the output directory."""

import importlib.util
import math
import os
from collections.abc import Mapping
from typing import Any

import ml_collections


class UsageError(Exception):
  """Bad input: printed as one line, exit status 2."""


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """Runs `get_config()` of the Python config file at `path`."""
  if not os.path.isfile(path):
    raise UsageError(f'--config: {path!r} is not a readable file; pass the path '
                     'of a config module such as experiments/configs/default.py.')
  try:
    spec = importlib.util.spec_from_file_location('_tf_fedscale_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise UsageError(f'--config: cannot load {path!r}: {type(e).__name__}: {e}. '
                     'It must define get_config() returning a ConfigDict.') from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f'--config: get_config() in {path!r} returned '
                     f'{type(config).__name__}, expected ml_collections.ConfigDict.')
  return config


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


def _require(condition: bool, flag: str, problem: str) -> None:
  if not condition:
    raise UsageError(f'--{flag}: {problem}')


def validate(config: ml_collections.ConfigDict, choices: Mapping[str, Any]) -> None:
  """Raises UsageError naming the first bad setting."""
  for key, allowed in choices.items():
    _require(config[key] in allowed, key,
             f'unknown value {config[key]!r}; choose from {sorted(allowed)}.')
  for key in ('rounds', 'clients_per_round', 'batch_size', 'eval_every'):
    _require(config[key] >= 1, key, f'must be a positive integer, got {config[key]}.')
  for key in ('client_lr', 'server_lr', 'backward_factor'):
    _require(math.isfinite(config[key]) and config[key] > 0, key,
             f'must be a positive number, got {config[key]}.')
  _require(config.overcommit >= 1.0, 'overcommit',
           f'must be >= 1.0, got {config.overcommit}.')
  _require(config.deadline_s >= 0, 'deadline_s',
           f'must be >= 0 (0 means no deadline), got {config.deadline_s}.')
  _require(config.eval_clients >= 0, 'eval_clients',
           f'must be >= 0 (0 means all), got {config.eval_clients}.')
  _require(config.proximal_strength >= 0, 'proximal_strength',
           f'must be >= 0, got {config.proximal_strength}.')
  steps, epochs = config.local_steps, config.local_epochs
  _require(steps >= 0 and epochs >= 0, 'local_steps',
           f'local_steps and local_epochs must be >= 0, got {steps} and {epochs}.')
  _require((steps > 0) != (epochs > 0), 'local_steps',
           f'set exactly one of --local_steps and --local_epochs (got {steps} '
           f'and {epochs}); the other must be 0.')
