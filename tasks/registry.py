"""Tasks by name: `--task=NAME --data_dir=PATH [--model=...] [--task_options=k=v,...]`.

Each `TaskSpec` knows how to build its task, its model variants (the first is
the default), its task options with their defaults, and `defaults`: the
hyper-parameters of the task's published benchmark configuration, which
`tf_fedscale.experiments.setup.apply_task_defaults` applies to every setting the user did
not set.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tf_fedscale.tasks import amazon
from tf_fedscale.tasks import base
from tf_fedscale.tasks import cifar100
from tf_fedscale.tasks import femnist
from tf_fedscale.tasks import google_speech
from tf_fedscale.tasks import openimage
from tf_fedscale.tasks import reddit
from tf_fedscale.tasks import shakespeare
from tf_fedscale.tasks import stackoverflow
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import synthetic
from tf_fedscale.tasks import tfds_task
from tf_fedscale import cli
from tf_fedscale import optimizers

TaskBuilder = Callable[..., base.Task]

# FedScale's benchmark configs (benchmark/configs/*/*.yml): FedAvg/FedYogi with
# fixed local steps, clients with fewer than 21 samples removed; and its
# config_parser.py defaults every config inherits: the client learning rate
# decays x0.98 every 10 rounds down to 5e-5, and FedYogi's tau is 1e-8; its
# clients train with SGD, momentum 0.9, weight decay 5e-4 (torch_client.py).
_FEDSCALE = dict(local_epochs=0, batch_size=20, client_lr=0.05, server_lr=1.0,
                 min_samples=21, client_lr_decay=0.98, client_lr_decay_rounds=10,
                 min_client_lr=5e-5, adaptive_epsilon=1e-8,
                 adaptive_initial_accumulator=1e-8,
                 client_momentum=optimizers.FEDSCALE_MOMENTUM,
                 client_weight_decay=optimizers.FEDSCALE_WEIGHT_DECAY)
# Adaptive Federated Optimization (Reddi et al., 2021), FedAvg's best client and
# server learning rates (google-research/federated optimization/docs/hyperparameters.md);
# one local epoch everywhere.
_FEDOPT = dict(algorithm='fedavg', local_steps=0, local_epochs=1, server_lr=1.0)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  build: TaskBuilder
  models: tuple[str, ...] = ()
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _synthetic(data_dir, seed, model='', min_samples=1, max_samples=0, cache_dir='',
               num_clients=1000, alpha=0.5, beta=0.5, shared_model=False):
  del data_dir, model, cache_dir
  task = synthetic.build(num_clients=num_clients, alpha=alpha, beta=beta, seed=seed,
                         shared_model=shared_model)
  keep = sources.size_mask(task.num_train_examples, min_samples, max_samples)
  if keep.all():
    return task
  ids = [c for c, k in zip(task.train_data.client_ids, keep) if k]
  return dataclasses.replace(
      task, train_data=task.train_data.from_clients_and_tf_fn(
          ids, task.train_data.serializable_dataset_fn),
      num_train_examples=task.num_train_examples[keep],
      train_positions=np.flatnonzero(keep))


TASKS: dict[str, TaskSpec] = {
    'synthetic': TaskSpec(
        _synthetic, options=dict(num_clients=1000, alpha=0.5, beta=0.5,
                                 shared_model=False)),
    'femnist': TaskSpec(
        femnist.build, models=femnist.MODELS,
        defaults=dict(_FEDSCALE, algorithm='fedavg', clients_per_round=50, local_steps=5,
                      rounds=1000, eval_every=10)),
    'emnist': TaskSpec(
        functools.partial(femnist.build, digits=True), models=femnist.MODELS,
        defaults=dict(_FEDOPT, clients_per_round=10, batch_size=20, rounds=1500,
                      client_lr=0.1)),
    'cifar100': TaskSpec(
        cifar100.build, models=cifar100.MODELS,
        options=dict(partition='pam', num_clients=500, alpha=0.1, beta=10.0,
                     samples_per_client=100, crop=24),
        defaults=dict(_FEDOPT, clients_per_round=10, batch_size=20, rounds=4000,
                      client_lr=0.1, server_lr=10 ** 0.5)),
    'shakespeare': TaskSpec(
        shakespeare.build, models=shakespeare.MODELS, options=dict(seq_len=80),
        defaults=dict(_FEDOPT, clients_per_round=10, batch_size=4, rounds=1200,
                      client_lr=1.0)),
    'stackoverflow_nwp': TaskSpec(
        functools.partial(stackoverflow.build, tag_prediction=False),
        models=stackoverflow.NWP_MODELS,
        options=dict(vocab_size=10000, seq_len=20, max_elements=1000),
        defaults=dict(_FEDOPT, clients_per_round=50, batch_size=16, rounds=1500,
                      client_lr=10 ** -0.5)),
    'stackoverflow_tag': TaskSpec(
        functools.partial(stackoverflow.build, tag_prediction=True),
        models=stackoverflow.TAG_MODELS,
        options=dict(vocab_size=10000, num_tags=500, max_elements=1000),
        defaults=dict(_FEDOPT, clients_per_round=10, batch_size=100, rounds=1500,
                      client_lr=100.0)),
    'google_speech': TaskSpec(
        google_speech.build, models=google_speech.MODELS,
        options=dict(features='logmel'),
        defaults=dict(_FEDSCALE, algorithm='fedscale-yogi', server_lr=3e-3,
                      clients_per_round=100, local_steps=30, rounds=5000, eval_every=30)),
    'openimage': TaskSpec(
        openimage.build, models=openimage.MODELS,
        options=dict(image_size=256, num_classes=596),
        # FedScale's client lr 0.05 is tuned for its batch-norm ShuffleNet; the
        # group-norm MobileNetV2 diverges at it (README, Tasks).
        defaults=dict(_FEDSCALE, algorithm='fedscale-yogi', server_lr=3e-3, client_lr=5e-4,
                      clients_per_round=100, local_steps=20, rounds=5000, eval_every=30)),
    # FedScale trains its `nlp` tasks with Adam (torch_client.py); here plain SGD
    # at FedOpt's tuned rate (README, where tf_fedscale differs).
    'reddit': TaskSpec(
        reddit.build, models=reddit.MODELS, options=dict(vocab_size=10000, seq_len=20),
        defaults=dict(_FEDSCALE, algorithm='fedavg', clients_per_round=100,
                      local_steps=30, rounds=5000, eval_every=30, client_lr=10 ** -0.5,
                      client_momentum=0.0, client_weight_decay=0.0)),
    'amazon': TaskSpec(
        amazon.build, models=amazon.MODELS,
        options=dict(vocab_size=10000, seq_len=64, num_classes=5),
        defaults=dict(_FEDSCALE, algorithm='fedavg', clients_per_round=100,
                      local_steps=20, client_lr=0.04, min_samples=1)),
    'tfds': TaskSpec(
        tfds_task.build, models=tfds_task.MODELS,
        options=dict(name='', partition='dirichlet', num_clients=100, alpha=0.5,
                     beta=10.0, samples_per_client=100, image_key='image',
                     label_key='label', coarse_key='coarse_label', train_split='train',
                     test_split='test')),
}


def _convert(option: str, text: str, default: Any) -> Any:
  try:
    if isinstance(default, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return text.lower() in ('true', '1')
    return type(default)(text)
  except ValueError:
    raise ValueError(f'--task_options: {option}={text!r} is not a '
                     f'{type(default).__name__}.') from None


def parse_options(name: str, text: str) -> dict[str, Any]:
  """`k=v,k=v` into typed task options (types from the spec's defaults)."""
  spec = TASKS[name]
  options = dict(spec.options)
  for item in filter(None, (s.strip() for s in (text or '').split(','))):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep and key in spec.options:
      raise ValueError(f'--task_options: option {key!r} has no value; write '
                       f'{key}=VALUE (default {spec.options[key]!r}).')
    if key not in spec.options:
      raise ValueError(f'--task_options: unknown option {item!r} for task {name}; '
                       f'options (with defaults): {dict(spec.options) or "none"}.')
    options[key] = _convert(key, value.strip(), spec.options[key])
  return options


def blame(error: Exception) -> str:
  """The error line of a `build_task` error: its own flag when it names one
  (`--min_samples: ...`), else --task/--data_dir (the data or the task)."""
  message = str(error)
  return message if message.startswith('--') else f'--task/--data_dir: {message}'


def build_task(name: str, data_dir: str, seed: int, *, model: str = '',
               min_samples: int = 1, max_samples: int = 0, cache_dir: str = '',
               options: str = '') -> base.Task:
  """The task `name`.

  Raises ValueError for unknown names, models or options and bad data, and
  FileNotFoundError (which files, where they go, where the dataset is
  published) when data is missing.
  """
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; choose from {sorted(TASKS)}.')
  spec = TASKS[name]
  if model and spec.models and model not in spec.models:
    raise ValueError(f'--model={model!r} is not a model of task {name}; choose from '
                     f'{list(spec.models)}.')
  if model and not spec.models:
    raise ValueError(f'task {name} has a fixed model; leave --model empty.')
  cache_problem = cli.output_dir_problem(cache_dir) if cache_dir else None
  if cache_problem:
    raise ValueError(f'--cache_dir: {cache_problem}')
  if min_samples < 0 or max_samples < 0 or (max_samples and max_samples < min_samples):
    raise ValueError(f'--min_samples/--max_samples: need 0 <= min_samples <= '
                     'max_samples (0: no maximum), got '
                     f'{min_samples} and {max_samples}.')
  return spec.build(data_dir=data_dir, seed=seed, model=model, min_samples=min_samples,
                    max_samples=max_samples, cache_dir=cache_dir,
                    **parse_options(name, options))
