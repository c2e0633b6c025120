"""Builds a simulation from a validated config: task -> population -> selector
-> accountant -> TFF process -> metrics. Shared by every experiment binary."""

import dataclasses
import os
from collections.abc import Callable, Collection
from typing import Optional

from absl import logging
import ml_collections
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale import asynchronous
from tf_fedscale import checkpoint
from tf_fedscale.engine import execution
from tf_fedscale.engine import inprocess_context
from tf_fedscale.engine import placement
from tf_fedscale import evaluation
from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import output_dir as output_dir_lib
from tf_fedscale.experiments import plugins as plugins_lib
from tf_fedscale import keras_cost
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import lr_schedule
from tf_fedscale import metrics
from tf_fedscale import optimizers
from tf_fedscale import population as population_lib
from tf_fedscale import privacy
from tf_fedscale import round_csv
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import base as task_base
from tf_fedscale.tasks import registry
from tf_fedscale.traces import compute_model
from tf_fedscale.traces import default as default_traces
from tf_fedscale.traces import loader as trace_loader


def choices() -> dict[str, tuple[str, ...]]:
  """Allowed values of the name-valued settings."""
  return {
      'task': tuple(registry.TASKS),
      'algorithm': algorithms.ALGORITHMS,
      'selector': plugins_lib.selector_names(),
      'aggregator': aggregators.AGGREGATORS,
      'client_mapping': population_lib.MAPPINGS,
      'mode': ('sync', 'async'),
      'staleness_weighting': asynchronous.STALENESS_WEIGHTINGS,
      'dp_sampling': privacy.DP_SAMPLING,
      'compute_model': ('auto', *compute_model.COMPUTE_MODELS),
  }


def _load_trace(flag: str, path: str, load: Callable):
  try:
    return load(path)
  except trace_loader.TraceError as e:
    raise config_util.UsageError(f'--{flag}: {e}') from e


def build_population(config: ml_collections.ConfigDict,
                     task: task_base.Task) -> population_lib.Population:
  """The task's clients on --device_trace/--availability_trace, or on the
  default generated traces (one row per client) where those are empty."""
  num_clients = len(task.train_data.client_ids)
  devices = (_load_trace('device_trace', config.device_trace, trace_loader.load_devices)
             if config.device_trace else
             default_traces.generate_devices(num_clients, config.trace_seed))
  availability = (_load_trace('availability_trace', config.availability_trace,
                              trace_loader.load_availability)
                  if config.availability_trace else
                  default_traces.generate_availability(num_clients, config.trace_seed))
  return population_lib.Population.build(
      client_ids=task.train_data.client_ids,
      num_examples=task.num_train_examples,
      devices=devices, availability=availability,
      seed=config.seed, mapping=config.client_mapping,
      positions=getattr(task, 'train_positions', None))


def apply_compute_model(config: ml_collections.ConfigDict, task: task_base.Task,
                        population: population_lib.Population
                        ) -> population_lib.Population:
  """The population with --compute_model=flops's model-aware compute speeds
  (traces/compute_model.py); unchanged under fedscale."""
  if config_util.resolved_compute_model(config) != 'flops':
    return population
  x_spec, _ = task.train_data.element_type_structure
  try:
    cost = keras_cost.keras_model_cost(task.keras_model_fn(), x_spec.shape)
  except ValueError as e:
    raise config_util.UsageError(
        f'--compute_model: flops cannot count the cost of task {config.task}\'s model '
        f'({e}); use --compute_model=fedscale.') from e
  factor = compute_model.flops_scale(cost, config.batch_size)
  logging.info('--compute_model=flops: %.3g training FLOPs, %d parameters, %d '
               'sequential steps per example; compute ms per sample x %.4g.',
               cost.training_flops, cost.params, cost.sequential_steps, factor)
  return dataclasses.replace(
      population, devices=compute_model.scale_devices(population.devices, factor))


@dataclasses.dataclass
class Experiment:
  """A wired simulation, ready to run into an output directory."""

  config: ml_collections.ConfigDict
  task: task_base.Task
  population: population_lib.Population
  local_work: local_work_lib.LocalWork
  start_time_s: float = 0.0  # virtual time of the first round

  def build_simulation(self, output_dir: Optional[str]) -> simulation.Driver:
    """The driver of `--mode`: synchronous rounds, or FedBuff server steps."""
    config = self.config
    model_fn = self.task.model_fn()
    plugins = plugins_lib.build_plugins(config, self.task, self.population)
    eval_ids = evaluation.choose_eval_clients(
        self.task.test_data.client_ids, config.eval_clients, config.seed)
    driver_kwargs = dict(
        seed=config.seed,
        evaluation=evaluation.FederatedEvaluation(
            model_fn, self.task.test_data, eval_ids, config.batch_size),
        eval_every=config.eval_every,
        initial_model_weights=self.initial_model_weights(),
        payload_bytes=plugins.payload_bytes,
        hooks=plugins.hooks,
        release_managers=(metrics.build_release_managers(output_dir, config.tensorboard)
                          if output_dir else ()),
        start_time_s=self.start_time_s)
    accountant = accounting.LatencyAccountant(
        self.population, clients_per_round=config.clients_per_round,
        deadline_s=config.deadline_s or None, backward_factor=config.backward_factor)
    if config.mode == 'async':
      return asynchronous.AsyncSimulation(
          plugins.model_fn, *async_optimizers(config),
          self.task.train_data, self.population, plugins.selector, accountant,
          self.local_work, async_config(config), aggregator=plugins.aggregator,
          client_log=(asynchronous.client_log(
              os.path.join(output_dir, output_dir_lib.ASYNC_UPDATES_FILE))
                      if output_dir else None),
          **driver_kwargs)
    return simulation.Simulation(
        plugins.process, self.task.train_data, self.population, plugins.selector,
        accountant, self.local_work,
        client_log=(metrics.ClientLog(os.path.join(output_dir,
                                                   output_dir_lib.CLIENTS_FILE),
                                      metrics.TIMELINE_COLUMNS)
                    if output_dir else None),
        **driver_kwargs)

  def initial_model_weights(self) -> tff.learning.models.ModelWeights:
    """The Keras model's initial weights, drawn from the run seed."""
    return seeding.initial_model_weights(self.task.keras_model_fn, self.config.seed)

  def run(self, output_dir: Optional[str],
          on_round: Optional[Callable[[dict], None]] = None,
          resume: bool = False) -> simulation.SimulationState:
    """Runs all rounds (server steps in async mode) on the `--execution`
    engine, checkpointing into `<output_dir>/checkpoints`; with `resume`,
    continues from the newest one through which every result file is whole
    (output_dir.resume_round), dropping what came after it. A round that
    fails on a dying worker is called again with the same state after the
    worker is restarted or dropped (tf_fedscale/engine/worker_pool.py)."""
    checkpointer = (checkpoint.Checkpointer(
        os.path.join(output_dir, output_dir_lib.CHECKPOINT_DIR),
        self.config.checkpoint_every)
                    if output_dir else None)
    with execution.from_config(self.config) as pool:
      sim = self.build_simulation(output_dir)
      state = None
      if resume:
        round_num = output_dir_lib.resume_round(output_dir, checkpointer.versions())
        state = sim.restore(checkpointer, round_num) if round_num is not None else None
        output_dir_lib.cut_after(output_dir, round_num)   # after the checkpoint loaded
        checkpointer.remove_after(round_num or 0)
      state = sim.run(state or sim.initialize(), self.config.rounds, on_round,
                      checkpointer, engine=pool)
      if output_dir:
        self.write_client_accuracy(
            sim.model_weights(state.process_state),
            os.path.join(output_dir, output_dir_lib.CLIENT_ACCURACY_FILE))
      return state

  def write_client_accuracy(self, model_weights: tff.learning.models.ModelWeights,
                            path: str) -> None:
    """Final accuracy of the model on each evaluated test client (a CSV)."""
    model = self.task.keras_model_fn()
    model_weights.assign_weights_to(model)
    metric = self.task.metrics_fn()[0]
    loss_fn = self.task.loss_fn()
    eval_ids = evaluation.choose_eval_clients(
        self.task.test_data.client_ids, self.config.eval_clients, self.config.seed)
    rows = [['client_id', 'num_examples', 'loss', 'accuracy']]
    for client_id in eval_ids:
      metric.reset_state()
      losses, count = [], 0
      for x, y in self.task.test_data.create_tf_dataset_for_client(client_id).batch(256):
        logits = model(x, training=False)
        metric.update_state(y, logits)
        losses.append(float(loss_fn(y, logits)) * len(y))
        count += len(y)
      if count:
        rows.append([client_id, count, round(sum(losses) / count, 6),
                     round(float(metric.result()), 6)])
    round_csv.create(path, rows[0], '\n', rows[1:])


def async_optimizers(config: ml_collections.ConfigDict
                     ) -> tuple[tff.learning.optimizers.Optimizer,
                                tff.learning.optimizers.Optimizer]:
  """FedBuff's (client, server) optimizers: SGD at --client_lr (with
  --client_momentum and --client_weight_decay), and the algorithm's server
  optimizer."""
  return (optimizers.client_sgd(config.client_lr, config.client_momentum,
                                config.client_weight_decay),
          algorithms.server_optimizer(config.algorithm, config.server_lr,
                                      config.adaptive_epsilon,
                                      config.adaptive_initial_accumulator or None))


def async_config(config: ml_collections.ConfigDict) -> asynchronous.AsyncConfig:
  """FedBuff's knobs; 0 means int(overcommit x clients_per_round) concurrent
  clients and a buffer of clients_per_round."""
  return asynchronous.AsyncConfig(
      max_concurrency=config.max_concurrency or selection.num_invited(
          config.clients_per_round, config.overcommit),
      buffer_size=config.buffer_size or config.clients_per_round,
      max_staleness=config.max_staleness,
      staleness_weighting=config.staleness_weighting)


_LOCAL_WORK = {'local_steps', 'local_epochs'}


def apply_task_defaults(config: ml_collections.ConfigDict,
                        explicit: Collection[str]) -> ml_collections.ConfigDict:
  """Copy of `config` with the task's published hyper-parameters
  (`registry.TASKS[task].defaults`) for every key not in `explicit`."""
  spec = registry.TASKS.get(config.task)
  if spec is None:
    return config   # validate() reports the unknown task
  explicit = set(explicit)
  if explicit & _LOCAL_WORK:   # one amount of local work: the user's choice wins whole
    explicit |= _LOCAL_WORK
  defaults = {k: v for k, v in spec.defaults.items() if k not in explicit}
  algorithm = defaults.get('algorithm', config.algorithm)
  if config.mode == 'async' or algorithm not in lr_schedule.DECAYABLE_ALGORITHMS:
    defaults.pop('client_lr_decay', None)  # they train at a constant rate (README)
  if algorithm not in algorithms.CLIENT_SGD_ALGORITHMS:  # their own client optimizer
    defaults.pop('client_momentum', None)
    defaults.pop('client_weight_decay', None)
  defaults['compute_model'] = config_util.resolved_compute_model(config)
  return config_util.apply_overrides(config, defaults)


def first_round_time_s(population: population_lib.Population,
                       clients_per_round: int) -> float:
  """When the first round starts: the first virtual time at which
  `clients_per_round` clients are online (logged when later than 0).
  Availability is a property of time, so only a population smaller than the
  cohort, or one nobody in which is ever online, is bad input."""
  if clients_per_round > population.num_clients:
    raise config_util.UsageError(
        f'--clients_per_round: {clients_per_round} exceeds the population of '
        f'{population.num_clients} clients; lower it.')
  start_s, online = population.first_time_online_s(clients_per_round)
  if online == 0:
    raise config_util.UsageError(
        '--availability_trace: none of the task\'s clients is ever online within the '
        'trace\'s period; use a trace in which they come online.')
  if online < clients_per_round:
    logging.warning('At most %d of %d clients are ever online at once, fewer than '
                    '--clients_per_round=%d: rounds train fewer clients. The clock '
                    'starts at %.0f s, when %d first are.', online,
                    population.num_clients, clients_per_round, start_s, online)
  elif start_s > 0:
    logging.info('%d clients are first online at once at virtual time %.0f s; the '
                 'clock starts there.', clients_per_round, start_s)
  return start_s


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds task and population; raises UsageError."""
  config_util.validate(config, choices())
  if config.aggregator == 'dp':
    try:
      privacy.check_selector(plugins_lib.build_selector(config))
    except ValueError as e:
      raise config_util.UsageError(f'--selector: {config.selector} with --aggregator=dp: '
                                   f'{e}') from e
  try:
    task = registry.build_task(
        config.task, config.data_dir, config.seed, model=config.model,
        min_samples=config.min_samples, max_samples=config.max_samples,
        cache_dir=config.cache_dir, options=config.task_options)
  except (ValueError, FileNotFoundError) as e:
    raise config_util.UsageError(registry.blame(e)) from e
  population = apply_compute_model(config, task, build_population(config, task))
  start_time_s = max(first_round_time_s(population, config.clients_per_round),
                     3600.0 * config.start_time_h)  # --start_time_h: not before
  if config.mode == 'async':
    _check_async_buffer(config, population.num_clients)
  local_work = local_work_lib.LocalWork(
      batch_size=config.batch_size, local_steps=config.local_steps or None,
      local_epochs=config.local_epochs or None, shuffle_seed=config.seed)
  return Experiment(config, task, population, local_work, start_time_s)


def _check_async_buffer(config: ml_collections.ConfigDict, num_clients: int) -> None:
  """Refuses a FedBuff buffer that would wait on more updates than there are
  clients: every buffered update is a model-sized tensor held in memory, and
  such a step would come after most of the population trained (FedBuff takes
  buffer_size <= concurrency; 10 of 1,000 in Nguyen et al. 2022)."""
  buffer_size = config.buffer_size or config.clients_per_round
  if buffer_size > num_clients:
    raise config_util.UsageError(
        f'--buffer_size: {buffer_size} updates per server step exceeds the '
        f'{num_clients} training clients, so a step would wait on every client '
        'training more than once while the buffer grows in memory; lower it '
        '(at most --max_concurrency is usual).')


def check_engine(experiment: Experiment) -> None:
  """--execution=inprocess[:N]: the run's process (async: the computations a
  server step calls) must have a MapReduceForm (raises UsageError before
  anything is written; compiling it takes ~1 s)."""
  config = experiment.config
  spec = placement.parse_execution(config.execution)
  if spec.mode != 'inprocess':
    return
  plugins = plugins_lib.build_plugins(config, experiment.task, experiment.population)
  if config.mode == 'async':
    computations = asynchronous.build_computations(
        plugins.model_fn, *async_optimizers(config), plugins.aggregator).called
  else:
    computations = (plugins.process.next,)
  try:
    for comp in computations:
      inprocess_context.map_reduce_form(comp)
  except inprocess_context.NoMapReduceFormError as e:
    raise config_util.UsageError(
        f'--execution: {spec} cannot run --algorithm={config.algorithm} with '
        f'--aggregator={config.aggregator} in this process ({e}); use '
        '--execution=local.') from e


def check_workers_reachable(config: ml_collections.ConfigDict,
                            timeout_s: float = 5.0) -> None:
  """With --execution=remote:..., connects to every worker (raises UsageError
  naming the first one unreachable), so a run never writes its output
  directory and then waits on a worker that is not there."""
  problem = placement.unreachable_worker(config.execution, timeout_s)
  if problem:
    raise config_util.UsageError(f'--execution: {problem}')
