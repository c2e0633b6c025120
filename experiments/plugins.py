"""Config -> the pluggable parts of a simulation: algorithm, aggregator, selector, hooks.

`build_plugins` turns the `--algorithm`, `--aggregator`, `--selector` and
related flags into the TFF process (with the per-client loss reporting that
Oort needs, and only then), the selector, the per-client payload the
accountant charges (the aggregator's encoded upload), and the hooks (the
client learning-rate decay, and the privacy report when DP is on).
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

import ml_collections
import tensorflow_federated as tff

from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale import feedback
from tf_fedscale import lr_schedule
from tf_fedscale import oort
from tf_fedscale import population as population_lib
from tf_fedscale import privacy
from tf_fedscale import selection
from tf_fedscale.tasks import base as task_base


class SelectorNames(tuple):
  """Registered selector names; also admits 'package.module:ClassName'."""

  def __contains__(self, name: Any) -> bool:
    if tuple.__contains__(self, name):
      return True
    if not (isinstance(name, str) and ':' in name):
      return False
    try:
      selection.resolve_selector_class(name)
    except ValueError:
      return False
    return True


def selector_names() -> SelectorNames:
  return SelectorNames(selection.SELECTORS)


@dataclasses.dataclass
class Plugins:
  process: Optional[tff.learning.templates.LearningProcess]  # None in async mode
  model_fn: Callable[[], tff.learning.models.VariableModel]  # what clients train
  selector: selection.Selector
  aggregator: aggregators.Aggregator
  payload_bytes: tuple[int, int]
  hooks: list[Any]


def build_selector(config: ml_collections.ConfigDict) -> selection.Selector:
  kwargs = {}
  if issubclass(selection.resolve_selector_class(config.selector), oort.OortSelector):
    kwargs = dict(exploration=config.oort_exploration,
                  exploration_min=min(config.oort_exploration, 0.3),
                  round_percentile=config.oort_round_percentile,
                  pacer_step=config.oort_pacer_step,
                  blacklist_rounds=config.oort_blacklist_rounds,
                  clip_bound=config.oort_clip_bound,
                  cut_off_util=config.oort_cut_off_util,
                  straggler_feedback=config.oort_straggler_feedback)
  return selection.build_selector(config.selector, config.clients_per_round,
                                  config.overcommit, **kwargs)


def build_plugins(config: ml_collections.ConfigDict, task: task_base.Task,
                  population: population_lib.Population) -> Plugins:
  """Process, selector, payload and hooks for `config` (already validated).

  In async mode there is no process (FedBuff builds its client work from
  `model_fn`, each client in its own call: one loss slot), and the updates
  aggregated at once are the buffer's.
  """
  selector = build_selector(config)
  asynchronous = config.mode == 'async'
  cohort = (config.buffer_size or config.clients_per_round) if asynchronous else (
      config.clients_per_round)
  aggregator = aggregators.build_aggregator(
      config.aggregator, clients_per_round=cohort,
      clip_norm=config.clip_norm, adaptive_clipping=config.adaptive_clipping,
      clip_quantile=config.clip_quantile, zeroing_norm=config.zeroing_norm,
      noise_multiplier=config.noise_multiplier,
      quantization_bits=config.quantization_bits,
      sparsify_fraction=config.sparsify_fraction, seed=config.seed)
  model_fn = task.model_fn()
  if selector.needs_client_loss:
    model_fn = feedback.loss_reporting_model_fn(
        model_fn, feedback.keras_per_example_loss(task.loss_fn),
        num_slots=1 if asynchronous else selector.num_candidates)
  process = None
  if not asynchronous:
    process = aggregator.prepare_process(algorithms.build_process(
        config.algorithm, model_fn, config.client_lr, config.server_lr,
        proximal_strength=config.proximal_strength,
        model_aggregator=aggregator.factory, qffl_q=config.qffl_q,
        adaptive_epsilon=config.adaptive_epsilon,
        initial_accumulator=config.adaptive_initial_accumulator or None,
        client_momentum=config.client_momentum,
        client_weight_decay=config.client_weight_decay))
  hooks = []
  if config.client_lr_decay != 1:
    hooks.append(lr_schedule.ClientLrDecay(
        process, config.client_lr, config.client_lr_decay,
        config.client_lr_decay_rounds, config.min_client_lr))
  if aggregator.is_private:
    hooks.append(privacy.PrivacyReport(config.noise_multiplier, selector, population,
                                       config.dp_delta))
  return Plugins(
      process=process, model_fn=model_fn, selector=selector, aggregator=aggregator,
      payload_bytes=algorithms.payload_bytes(config.algorithm, task.model_fn(),
                                             aggregator.upload_nbytes),
      hooks=hooks)
