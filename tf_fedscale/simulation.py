"""The driver: wires task data, population, selector, accountant and a TFF process.

Per round: the selector proposes online clients, the accountant times them and
keeps the finishers, the unmodified TFF process trains on the finishers only
(their ids go through the dataset computation, so the TFF worker builds each
dataset itself), the model is evaluated every `eval_every` rounds, and one
record per round is released. The selector then gets a `RoundFeedback`
(timing, statuses, and per-client losses when its process reports them, see
`feedback.py`); `hooks.py` handlers run at round start, per-client local work,
client completion and round end.
"""

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import checkpoint as checkpoint_lib
from tf_fedscale import evaluation as evaluation_lib
from tf_fedscale import feedback as feedback_lib
from tf_fedscale import hooks as hooks_lib
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics as metrics_lib
from tf_fedscale import payload
from tf_fedscale import population as population_lib
from tf_fedscale import selection

RoundCallback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class SimulationState:
  """Everything that changes from round to round (what a checkpoint holds)."""

  round_num: int
  process_state: Any
  virtual_time_s: float


def compose_with_client_data(
    process: tff.templates.IterativeProcess,
    train_data: tff.simulation.datasets.ClientData,
) -> tff.templates.IterativeProcess:
  """`process` whose `next` takes client ids instead of datasets."""
  if isinstance(process, tff.learning.templates.LearningProcess):
    return tff.simulation.compose_dataset_computation_with_learning_process(
        train_data.dataset_computation, process)
  return tff.simulation.compose_dataset_computation_with_iterative_process(
      train_data.dataset_computation, process)


class Simulation:
  """Runs an unmodified TFF process under trace-driven participation."""

  def __init__(
      self,
      process: tff.templates.IterativeProcess,
      train_data: tff.simulation.datasets.ClientData,
      population: population_lib.Population,
      selector: selection.Selector,
      accountant: accounting.LatencyAccountant,
      local_work: local_work_lib.LocalWork,
      *,
      seed: int,
      evaluation: Optional[evaluation_lib.FederatedEvaluation] = None,
      eval_every: int = 1,
      release_managers: Sequence[tff.program.ReleaseManager] = (),
      timeline: Optional[metrics_lib.TimelineWriter] = None,
      payload_bytes: Optional[tuple[int, int]] = None,
      initial_model_weights: Optional[Any] = None,
      idle_step_s: float = 60.0,
      max_idle_s: float = 7 * 24 * 3600.0,
      hooks: Sequence[hooks_lib.Hooks] = (),
  ):
    if list(train_data.client_ids) != list(population.client_ids):
      raise ValueError('population.client_ids must list train_data.client_ids '
                       'in the same order.')
    if eval_every < 1:
      raise ValueError(f'eval_every must be >= 1, got {eval_every}.')
    self._raw_process = process
    self.hooks = hooks_lib.HookList(hooks)
    # Client tasks <id, slot, amount> instead of ids when the process reports
    # per-client losses or a hook chooses per-client local work (feedback.py).
    loss_slots = feedback_lib.reported_loss_slots(process)
    if getattr(selector, 'needs_client_loss', False) and not loss_slots:
      raise ValueError(
          f'{type(selector).__name__} needs per-client training losses: build the '
          'process from feedback.loss_reporting_model_fn(model_fn, ...).')
    self._tasks = None
    if loss_slots or self.hooks.chooses_local_work:
      self._tasks = feedback_lib.ClientTasks(train_data, local_work, loss_slots)
    self._process = compose_with_client_data(
        process, self._tasks or train_data.preprocess(local_work.preprocess))
    if hasattr(selector, 'bind'):
      selector.bind(self.estimate_duration_s, self.estimate_samples)
    self.population = population
    self.selector = selector
    self.accountant = accountant
    self.local_work = local_work
    self.seed = seed
    self.evaluation = evaluation
    self.eval_every = eval_every
    self.release_managers = list(release_managers)
    self.timeline = timeline
    self._payload_bytes = payload_bytes
    self._initial_model_weights = initial_model_weights
    self.idle_step_s = idle_step_s
    self.max_idle_s = max_idle_s

  def initialize(self) -> SimulationState:
    """Round 0; the model starts from `initial_model_weights` when given."""
    process_state = self._process.initialize()
    if self._initial_model_weights is not None:
      process_state = self._process.set_model_weights(
          process_state, self._initial_model_weights)
    return SimulationState(round_num=0, process_state=process_state,
                           virtual_time_s=self.accountant.virtual_time_s)

  def restore(self, checkpointer: checkpoint_lib.Checkpointer
              ) -> Optional[SimulationState]:
    """The newest checkpoint's state (selector and timeline rewound), or None."""
    saved = checkpointer.load_latest(self._checkpoint(self.initialize()))
    if saved is None:
      return None
    round_num = int(saved['round_num'])
    self.selector.set_state(saved['selector_state'])
    if self.timeline is not None:
      self.timeline.truncate_after(round_num)
    return SimulationState(round_num, saved['process_state'],
                           float(saved['virtual_time_s']))

  def _checkpoint(self, state: SimulationState) -> dict[str, Any]:
    return {'process_state': state.process_state,
            'round_num': np.int64(state.round_num),
            'virtual_time_s': np.float64(state.virtual_time_s),
            'selector_state': self.selector.get_state()}

  def payload_bytes(self, process_state: Any) -> tuple[int, int]:
    """(download, upload) bytes per client."""
    if self._payload_bytes is not None:
      return self._payload_bytes
    if isinstance(self._raw_process, tff.learning.templates.LearningProcess):
      self._payload_bytes = payload.learning_process_payload(
          self._raw_process, process_state)
    else:
      size = payload.serialized_nbytes(process_state)
      self._payload_bytes = (size, size)
    return self._payload_bytes

  def estimate_duration_s(self, clients: np.ndarray) -> np.ndarray:
    """Expected download + compute + upload seconds of `clients` this round."""
    bytes_down, bytes_up = self._payload_bytes or (0, 0)
    clients = np.asarray(clients, np.int64)
    times = self.accountant.client_times(
        clients, self.local_work.samples(self.population.num_examples[clients]),
        bytes_down, bytes_up)
    return sum(times)

  def estimate_samples(self, clients: np.ndarray) -> np.ndarray:
    """Examples each of `clients` trains on with the configured local work."""
    return self.local_work.samples(self.population.num_examples[np.asarray(clients)])

  def model_weights(self, process_state: Any) -> Any:
    return self._process.get_model_weights(process_state)

  def _select(self, round_num: int) -> np.ndarray:
    """Candidates for the round, idling the clock while nobody is online."""
    idle_s = 0.0
    while True:
      rng = np.random.default_rng([self.seed, round_num, int(idle_s)])
      candidates = self.selector.select(
          round_num, self.accountant.virtual_time_s, self.population, rng)
      if len(candidates) or idle_s >= self.max_idle_s:
        return candidates
      self.accountant.virtual_time_s += self.idle_step_s
      idle_s += self.idle_step_s

  def run_round(self, state: SimulationState) -> tuple[SimulationState, dict[str, Any]]:
    """One round; returns the new state and the round's record."""
    wall_start = time.perf_counter()
    round_num = state.round_num + 1
    self.accountant.virtual_time_s = state.virtual_time_s
    process_state = state.process_state
    started = self.hooks.on_round_start(round_num, state.virtual_time_s, process_state)
    process_state = process_state if started is None else started
    bytes_down, bytes_up = self.payload_bytes(process_state)
    candidates = self._select(round_num)
    amounts = self.hooks.local_work(round_num, candidates, self.population)
    outcome = self.accountant.account(
        round_num, candidates,
        self.local_work.samples(self.population.num_examples[candidates], amounts),
        bytes_down, bytes_up)
    keep = self.hooks.on_client_completion(round_num, outcome)
    if keep is not None:
      outcome = hooks_lib.revise_outcome(
          outcome, keep, self.population.online_until_s(outcome.clients, outcome.start_time_s)
          - outcome.start_time_s, bytes_down, bytes_up, self.accountant.deadline_s)
      self.accountant.virtual_time_s = outcome.start_time_s + outcome.duration_s
    completed = outcome.status == accounting.Status.COMPLETED
    completed_ids = [self.population.client_ids[c] for c in outcome.completed]

    train = evaluation_lib.train_metrics(None)
    losses = (None, None)
    if completed_ids:
      client_data = completed_ids if self._tasks is None else self._tasks.arguments(
          completed_ids, None if amounts is None else amounts[completed])
      output = self._process.next(process_state, client_data)
      if isinstance(output, tff.learning.templates.LearningProcessOutput):
        process_state, round_metrics = output.state, output.metrics
      else:
        process_state, round_metrics = output
      train = evaluation_lib.train_metrics(round_metrics)
      if self._tasks is not None and self._tasks.loss_slots:
        losses = self._tasks.round_losses(round_metrics, completed)
    feedback = selection.RoundFeedback.from_outcome(outcome, *losses)
    self.selector.observe(round_num, feedback)

    record = self._record(outcome.duration_s, outcome, train)
    if self.evaluation is not None and round_num % self.eval_every == 0:
      record.update(self.evaluation.evaluate(self.model_weights(process_state)))
    self.hooks.on_round_end(round_num, record, feedback)
    record['wall_clock_s'] = time.perf_counter() - wall_start

    if self.timeline is not None:
      self.timeline.write(outcome)
    metrics_lib.release(self.release_managers, record, round_num)
    return SimulationState(round_num, process_state,
                           self.accountant.virtual_time_s), record

  def _record(self, duration_s: float,
              outcome: Optional[accounting.RoundOutcome],
              train: dict[str, float]) -> dict[str, Any]:
    """One row of metrics.csv (counts are zero when nobody was invited)."""
    status = outcome.status if outcome else np.zeros(0, np.int8)
    completed = status == accounting.Status.COMPLETED
    return {
        'virtual_time_s': self.accountant.virtual_time_s,
        'round_duration_s': duration_s,
        'selected': len(status),
        'completed': int(completed.sum()),
        'dropped': int(np.sum(status == accounting.Status.DROPPED_OFFLINE)),
        'stragglers': int(np.sum(status == accounting.Status.STRAGGLER)),
        'missed_deadline': int(np.sum(status == accounting.Status.MISSED_DEADLINE)),
        **train,
        'eval_loss': float('nan'),
        'eval_accuracy': float('nan'),
        'bytes_down': int(outcome.bytes_down.sum()) if outcome else 0,
        'bytes_up': int(outcome.bytes_up.sum()) if outcome else 0,
        'client_compute_s': float(outcome.compute_s[completed].sum()) if outcome else 0.0,
    }

  def evaluate_initial(self, state: SimulationState) -> dict[str, Any]:
    """Round 0: the initial model's accuracy, before any training."""
    wall_start = time.perf_counter()
    record = self._record(0.0, None, evaluation_lib.train_metrics(None))
    if self.evaluation is not None:
      record.update(self.evaluation.evaluate(self.model_weights(state.process_state)))
    self.hooks.on_round_end(0, record, None)
    record['wall_clock_s'] = time.perf_counter() - wall_start
    metrics_lib.release(self.release_managers, record, 0)
    return record

  def run(self, state: SimulationState, rounds: int,
          on_round: Optional[RoundCallback] = None,
          checkpointer: Optional[checkpoint_lib.Checkpointer] = None,
          ) -> SimulationState:
    """Runs until `state.round_num == rounds` (round 0 evaluates the start).

    With a `checkpointer`, saves whenever it is due and after the last round.
    """
    if state.round_num == 0:
      record = self.evaluate_initial(state)
      if on_round is not None:
        on_round({'round': 0, **record})
    while state.round_num < rounds:
      state, record = self.run_round(state)
      if checkpointer is not None and checkpointer.due(state.round_num, rounds):
        checkpointer.save(state.round_num, self._checkpoint(state))
      if on_round is not None:
        on_round({'round': state.round_num, **record})
    return state
