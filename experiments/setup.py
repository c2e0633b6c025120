"""Builds a simulation from a validated config: task -> population -> selector
-> accountant -> TFF process -> metrics. Shared by every experiment binary."""

import dataclasses
import os
from collections.abc import Callable
from typing import Optional

import ml_collections

from experiments import config_util
from tasks import base as task_base
from tasks import registry
from tf_fedscale import accounting
from tf_fedscale import algorithms
from tf_fedscale import evaluation
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics
from tf_fedscale import population as population_lib
from tf_fedscale import runtime
from tf_fedscale import selection
from tf_fedscale import simulation
from traces import default as default_traces


def choices() -> dict[str, tuple[str, ...]]:
  """Allowed values of the name-valued settings."""
  return {
      'task': tuple(registry.TASKS),
      'algorithm': algorithms.ALGORITHMS,
      'selector': tuple(selection.SELECTORS),
      'client_mapping': population_lib.MAPPINGS,
  }


def build_population(config: ml_collections.ConfigDict,
                     task: task_base.Task) -> population_lib.Population:
  """The task's clients on the default generated traces."""
  num_clients = len(task.train_data.client_ids)
  return population_lib.Population.build(
      client_ids=task.train_data.client_ids,
      num_examples=task.num_train_examples,
      devices=default_traces.generate_devices(num_clients, config.trace_seed),
      availability=default_traces.generate_availability(num_clients, config.trace_seed),
      seed=config.seed, mapping=config.client_mapping)


@dataclasses.dataclass
class Experiment:
  """A wired simulation, ready to run into an output directory."""

  config: ml_collections.ConfigDict
  task: task_base.Task
  population: population_lib.Population
  local_work: local_work_lib.LocalWork

  def build_simulation(self, output_dir: Optional[str]) -> simulation.Simulation:
    config = self.config
    model_fn = self.task.model_fn()
    process = algorithms.build_process(
        config.algorithm, model_fn, config.client_lr, config.server_lr,
        proximal_strength=config.proximal_strength)
    eval_ids = evaluation.choose_eval_clients(
        self.task.test_data.client_ids, config.eval_clients, config.seed)
    return simulation.Simulation(
        process, self.task.train_data, self.population,
        selection.build_selector(config.selector, config.clients_per_round,
                                 config.overcommit),
        accounting.LatencyAccountant(
            self.population, clients_per_round=config.clients_per_round,
            deadline_s=config.deadline_s or None,
            backward_factor=config.backward_factor),
        self.local_work,
        seed=config.seed,
        evaluation=evaluation.FederatedEvaluation(
            model_fn, self.task.test_data, eval_ids, config.batch_size),
        eval_every=config.eval_every,
        release_managers=(metrics.build_release_managers(output_dir, config.tensorboard)
                          if output_dir else ()),
        timeline=(metrics.TimelineWriter(os.path.join(output_dir, 'clients.csv'),
                                         self.population.client_ids)
                  if output_dir else None),
    )

  def run(self, output_dir: Optional[str],
          on_round: Optional[Callable[[dict], None]] = None) -> simulation.SimulationState:
    """Runs all rounds on a managed local TFF worker."""
    with runtime.local_context(self.config.max_concurrent_clients):
      sim = self.build_simulation(output_dir)
      return sim.run(sim.initialize(), self.config.rounds, on_round)


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds task and population; raises UsageError."""
  config_util.validate(config, choices())
  try:
    task = registry.build_task(config.task, config.data_dir, config.seed)
  except (ValueError, FileNotFoundError) as e:
    raise config_util.UsageError(f'--task/--data_dir: {e}') from e
  population = build_population(config, task)
  online = len(population.online_clients(0.0))
  if config.clients_per_round > online:
    raise config_util.UsageError(
        f'--clients_per_round: {config.clients_per_round} exceeds the {online} of '
        f'{population.num_clients} clients online at virtual time 0; lower it.')
  local_work = local_work_lib.LocalWork(
      batch_size=config.batch_size, local_steps=config.local_steps or None,
      local_epochs=config.local_epochs or None, shuffle_seed=config.seed)
  return Experiment(config, task, population, local_work)
