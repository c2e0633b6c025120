"""The driver: a round as a function of its state, and the program loop around it.

`Driver.run_round(state) -> (state, RoundResult)` is a pure step: the state
(`SimulationState`: TFF process state, virtual clock, selector state, the
hooks' state, round number, and for FedBuff the clients in flight) goes in,
the next state and the round's record come out. Nothing outside is changed:
the accountant holds no clock, the selector and the stateful hooks
(`hooks.StatefulHook`, e.g. the DP report's composed privacy loss) are loaded
from `state.selector_state` / `state.hook_state` before they are asked and
their new states are returned, and no file is written. Every random draw
comes from `np.random.default_rng([seed, round_num, draw])`, so the RNG
position is the round number. Running a round again from the same state,
e.g. after a worker failure, is calling `run_round` again.

`Driver.run` is the program loop: it calls rounds through an engine
(`engine.interface.Engine`, which restarts failed workers and calls again), writes each round's record (release
managers) and per-client rows (`metrics.ClientLog`), checkpoints the state, and
`Driver.restore` resumes from the newest checkpoint. Both training modes are
drivers and share all of this, the selection (`select`), the accountant, the
hooks and evaluation: `Simulation` here (synchronous rounds of an unmodified
TFF process) and `asynchronous.AsyncSimulation` (FedBuff server steps).

A synchronous round: the selector proposes online clients, the accountant
times them and keeps the finishers, the TFF process trains on the finishers
only (their ids go through the dataset computation, so the TFF worker builds
each dataset itself), the model is evaluated every `eval_every` rounds, and the
selector gets a `RoundFeedback` (timing, statuses, and per-client losses when
its process reports them, see `feedback.py`); `hooks.py` handlers run at round
start, per-client local work, client completion and round end.
"""

import abc
import copy
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import checkpoint as checkpoint_lib
from tf_fedscale.engine import compositions
from tf_fedscale.engine import interface
from tf_fedscale.engine import runtime
from tf_fedscale import evaluation as evaluation_lib
from tf_fedscale import feedback as feedback_lib
from tf_fedscale import hooks as hooks_lib
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics as metrics_lib
from tf_fedscale import payload
from tf_fedscale import population as population_lib
from tf_fedscale import selection

RoundCallback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class SimulationState:
  """Everything that changes from round to round: what a round takes and
  returns, and what a checkpoint holds."""

  round_num: int  # rounds (sync) or server steps (async) done
  process_state: Any  # the TFF process state; FedBuff: model and server states
  virtual_time_s: float
  selector_state: Mapping[str, Any]
  pending: Any = None  # FedBuff: clients in flight and the buffer (None in sync)
  # Stateful hooks' states, keyed `hook_<position>` (hooks.HookList.get_state).
  hook_state: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RoundResult:
  """What a round produced, for the program loop to write."""

  metrics: dict[str, Any]  # one row of metrics.csv (wall_clock_s: wall_clock.csv)
  client_rows: tuple = ()  # rows of the driver's client log
  feedback: Optional[selection.RoundFeedback] = None  # what the selector saw


def compose_with_client_data(
    process: tff.templates.IterativeProcess,
    train_data: tff.simulation.datasets.ClientData,
    source: Optional[compositions.ClientSource] = None,
) -> tff.templates.IterativeProcess:
  """`process` whose `next` takes client ids instead of datasets."""
  return compositions.compose(train_data.dataset_computation, process, source)


class Driver(abc.ABC):
  """What both training modes share: selection, accounting, hooks, evaluation,
  checkpointing and the program loop. Subclasses implement the round."""

  def __init__(
      self,
      population: population_lib.Population,
      selector: selection.Selector,
      accountant: accounting.LatencyAccountant,
      local_work: local_work_lib.LocalWork,
      *,
      seed: int,
      evaluation: Optional[evaluation_lib.FederatedEvaluation] = None,
      eval_every: int = 1,
      release_managers: Sequence[tff.program.ReleaseManager] = (),
      client_log: Optional[metrics_lib.ClientLog] = None,
      hooks: Sequence[hooks_lib.Hook] = (),
      idle_step_s: float = 60.0,
      max_idle_s: float = 7 * 24 * 3600.0,
      start_time_s: float = 0.0,
  ):
    """`start_time_s`: the virtual time of the first round."""
    if eval_every < 1:
      raise ValueError(f'eval_every must be >= 1, got {eval_every}.')
    runtime.release_tff_import_context_at_exit()  # a clean exit without a context
    self.population = population
    self.selector = selection.check_selector(selector)
    self.selector.bind(self.estimate_duration_s, self.estimate_samples)
    self.accountant = accountant
    self.local_work = local_work
    self.seed = seed
    self.evaluation = evaluation
    self.eval_every = eval_every
    self.release_managers = list(release_managers)
    self.client_log = client_log
    self.hooks = hooks_lib.HookList(hooks)
    # Round 0's selector and hook states, as given: `initialize` returns them
    # even after rounds have loaded other states into the objects.
    self.initial_selector_state = copy.deepcopy(self.selector.get_state())
    self.initial_hook_state = copy.deepcopy(self.hooks.get_state())
    self.idle_step_s = idle_step_s
    self.max_idle_s = max_idle_s
    self.start_time_s = float(start_time_s)

  # -- the round (subclasses) ---------------------------------------------------

  @abc.abstractmethod
  def initialize(self) -> SimulationState:
    """Round 0's state."""

  @abc.abstractmethod
  def run_round(self, state: SimulationState
                ) -> tuple[SimulationState, RoundResult]:
    """One round (or server step) from `state`; changes nothing else."""

  @abc.abstractmethod
  def model_weights(self, process_state: Any) -> tff.learning.models.ModelWeights:
    """The global model in `process_state`."""

  @abc.abstractmethod
  def empty_record(self, virtual_time_s: float) -> dict[str, Any]:
    """A metrics row with nothing trained yet."""

  @abc.abstractmethod
  def payload_bytes(self, process_state: Any) -> tuple[int, int]:
    """(download, upload) bytes per client."""

  def client_inputs(self, train_data: tff.simulation.datasets.ClientData,
                    loss_slots: int
                    ) -> tuple[Optional[feedback_lib.ClientTasks], Any,
                               compositions.ClientSource]:
    """(client tasks or None, what builds a client's data from what it is
    given, how that data is made from cacheable decoded data).

    Clients get tasks <id, slot, amount> instead of ids when the TFF
    computation reports per-client losses (`loss_slots` > 0) or a hook
    chooses per-client local work (feedback.py).
    """
    if self.selector.needs_client_loss and not loss_slots:
      raise ValueError(
          f'{type(self.selector).__name__} needs per-client training losses: build the '
          'model from feedback.loss_reporting_model_fn(model_fn, ...).')
    if loss_slots or self.hooks.chooses_local_work:
      tasks = feedback_lib.ClientTasks(train_data, self.local_work, loss_slots)
      return tasks, tasks, tasks.source
    return None, train_data.preprocess(self.local_work.preprocess), (
        compositions.ClientSource(train_data.dataset_computation,
                                  lambda raw, _: self.local_work.preprocess(raw)))

  def pending_checkpoint(self, pending: Any) -> Any:
    """`state.pending` as a nested structure of arrays (FedBuff overrides)."""
    return pending

  def pending_from_checkpoint(self, saved: Any) -> Any:
    return saved

  # -- shared pieces of a round -------------------------------------------------

  def load_state(self, state: SimulationState) -> None:
    """Makes the selector and the stateful hooks continue from `state` (from
    copies: the state stays as is)."""
    self.selector.set_state(copy.deepcopy(dict(state.selector_state)))
    self.hooks.set_state(state.hook_state)

  def select(self, round_num: int, virtual_time_s: float, draw: int) -> np.ndarray:
    """The selector's candidates, with the round's `draw`-th random stream."""
    rng = np.random.default_rng([self.seed, round_num, draw])
    return np.asarray(self.selector.select(round_num, virtual_time_s,
                                           self.population, rng), np.int64)

  def select_idling(self, round_num: int, virtual_time_s: float
                    ) -> tuple[np.ndarray, float]:
    """(candidates, when): idles the clock by `idle_step_s` while nobody is
    online, up to `max_idle_s`."""
    idle_s, draw = 0.0, 0
    while True:
      candidates = self.select(round_num, virtual_time_s + idle_s, draw)
      if len(candidates) or idle_s >= self.max_idle_s:
        return candidates, virtual_time_s + idle_s
      idle_s += self.idle_step_s
      draw += 1

  def estimate_duration_s(self, clients: np.ndarray) -> np.ndarray:
    """Expected download + compute + upload seconds of `clients` this round."""
    bytes_down, bytes_up = self.known_payload_bytes()
    clients = np.asarray(clients, np.int64)
    times = self.accountant.client_times(
        clients, self.local_work.samples(self.population.num_examples[clients]),
        bytes_down, bytes_up)
    return sum(times)

  def known_payload_bytes(self) -> tuple[int, int]:
    """The payload once known (it is sized from the first process state)."""
    return (0, 0)

  def estimate_samples(self, clients: np.ndarray) -> np.ndarray:
    """Examples each of `clients` trains on with the configured local work."""
    return self.local_work.samples(self.population.num_examples[np.asarray(clients)])

  def evaluate(self, record: dict[str, Any], round_num: int, process_state: Any) -> None:
    """Adds the test metrics to `record` every `eval_every` rounds."""
    if self.evaluation is not None and round_num % self.eval_every == 0:
      record.update(self.evaluation.evaluate(self.model_weights(process_state)))

  def evaluate_initial(self, state: SimulationState
                       ) -> tuple[SimulationState, RoundResult]:
    """Round 0: the initial model's accuracy, before any training."""
    wall_start = time.perf_counter()
    self.load_state(state)
    record = self.empty_record(state.virtual_time_s)
    self.evaluate(record, 0, state.process_state)
    self.hooks.on_round_end(0, record, None)
    record['wall_clock_s'] = time.perf_counter() - wall_start
    return (dataclasses.replace(state, hook_state=self.hooks.get_state()),
            RoundResult(record))

  # -- the program loop ---------------------------------------------------------

  def publish(self, round_num: int, result: RoundResult) -> None:
    """Writes a round's record and client rows (the only writes of a run)."""
    if self.client_log is not None and result.client_rows:
      self.client_log.append(result.client_rows)
    metrics_lib.release(self.release_managers, result.metrics, round_num)

  def run(self, state: SimulationState, rounds: int,
          on_round: Optional[RoundCallback] = None,
          checkpointer: Optional[checkpoint_lib.Checkpointer] = None,
          engine: Optional[interface.Engine] = None) -> SimulationState:
    """Runs until `state.round_num == rounds` (round 0 evaluates the start).

    Rounds run through `engine` (retried from the same state after a worker
    failure). With a `checkpointer`, saves whenever it is due and after the
    last round.
    """
    engine = engine or interface.InlineEngine()
    if state.round_num == 0:
      state, result = engine.call(self.evaluate_initial, state,
                                    description='round 0')
      self.publish(0, result)
      if on_round is not None:
        on_round({'round': 0, **result.metrics})
    while state.round_num < rounds:
      round_num = state.round_num + 1
      state, result = engine.call(self.run_round, state,
                                    description=f'round {round_num}')
      engine.recycle_grown_workers(f'after round {round_num}')
      self.publish(round_num, result)
      if checkpointer is not None and checkpointer.due(round_num, rounds):
        checkpointer.save(round_num, self.checkpoint(state))
      if on_round is not None:
        on_round({'round': round_num, **result.metrics})
    return state

  def checkpoint(self, state: SimulationState) -> dict[str, Any]:
    """`state` as a nested structure of arrays."""
    saved = {'process_state': state.process_state,
             'round_num': np.int64(state.round_num),
             'virtual_time_s': np.float64(state.virtual_time_s),
             'selector_state': dict(state.selector_state)}
    if state.pending is not None:
      saved['pending'] = self.pending_checkpoint(state.pending)
    if state.hook_state:  # absent without stateful hooks, as before they existed
      saved['hook_state'] = dict(state.hook_state)
    return saved

  def restore(self, checkpointer: checkpoint_lib.Checkpointer,
              round_num: Optional[int] = None) -> Optional[SimulationState]:
    """The state saved at `round_num` (default: the newest checkpoint), None
    when there is none (the run starts over); the client log is cut back to
    it. Raises checkpoint.CorruptCheckpointError when it cannot be read."""
    if round_num is None:
      versions = checkpointer.versions()
      round_num = versions[-1] if versions else None
    saved = (checkpointer.load_checked(round_num, self.checkpoint(self.initialize()))
             if round_num is not None else None)
    if self.client_log is not None:
      self.client_log.truncate_after(round_num or 0)   # round 0 has no client rows
    if saved is None:
      return None
    return SimulationState(
        int(saved['round_num']), saved['process_state'], float(saved['virtual_time_s']),
        saved['selector_state'],
        self.pending_from_checkpoint(saved['pending']) if 'pending' in saved else None,
        saved.get('hook_state', {}))


class Simulation(Driver):
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
      payload_bytes: Optional[tuple[int, int]] = None,
      initial_model_weights: Optional[Any] = None,
      **driver_kwargs: Any,
  ):
    if list(train_data.client_ids) != list(population.client_ids):
      raise ValueError('population.client_ids must list train_data.client_ids '
                       'in the same order.')
    super().__init__(population, selector, accountant, local_work, seed=seed,
                     **driver_kwargs)
    self._raw_process = process
    self._tasks, client_data, source = self.client_inputs(
        train_data, feedback_lib.reported_loss_slots(process))
    self._process = compose_with_client_data(process, client_data, source)
    self._payload_bytes = payload_bytes
    self._initial_model_weights = initial_model_weights

  @property
  def process(self) -> tff.templates.IterativeProcess:
    """The process the rounds run (its `next` takes client ids or tasks)."""
    return self._process

  def initialize(self) -> SimulationState:
    """Round 0; the model starts from `initial_model_weights` when given."""
    process_state = self._process.initialize()
    if self._initial_model_weights is not None:
      process_state = self._process.set_model_weights(
          process_state, self._initial_model_weights)
    return SimulationState(round_num=0, process_state=process_state,
                           virtual_time_s=self.start_time_s,
                           selector_state=copy.deepcopy(self.initial_selector_state),
                           hook_state=copy.deepcopy(self.initial_hook_state))

  def payload_bytes(self, process_state: Any) -> tuple[int, int]:
    """(download, upload) bytes per client, sized once from a process state."""
    if self._payload_bytes is None:
      if isinstance(self._raw_process, tff.learning.templates.LearningProcess):
        self._payload_bytes = payload.learning_process_payload(
            self._raw_process, process_state)
      else:
        size = payload.serialized_nbytes(process_state)
        self._payload_bytes = (size, size)
    return self._payload_bytes

  def known_payload_bytes(self) -> tuple[int, int]:
    return self._payload_bytes or (0, 0)

  def model_weights(self, process_state: Any) -> Any:
    return self._process.get_model_weights(process_state)

  def run_round(self, state: SimulationState
                ) -> tuple[SimulationState, RoundResult]:
    """One round from `state`; returns the new state and what to write."""
    wall_start = time.perf_counter()
    round_num = state.round_num + 1
    self.load_state(state)
    process_state = state.process_state
    started = self.hooks.on_round_start(round_num, state.virtual_time_s, process_state)
    process_state = process_state if started is None else started
    bytes_down, bytes_up = self.payload_bytes(process_state)
    candidates, start_s = self.select_idling(round_num, state.virtual_time_s)
    amounts = self.hooks.local_work(round_num, candidates, self.population)
    outcome = self.accountant.account(
        round_num, candidates,
        self.local_work.samples(self.population.num_examples[candidates], amounts),
        bytes_down, bytes_up, start_time_s=start_s)
    keep = self.hooks.on_client_completion(round_num, outcome)
    if keep is not None:
      outcome = hooks_lib.revise_outcome(
          outcome, keep, self.population.online_until_s(outcome.clients, outcome.start_time_s)
          - outcome.start_time_s, bytes_down, bytes_up, self.accountant.deadline_s)
    end_s = outcome.start_time_s + outcome.duration_s
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
    feedback = selection.RoundFeedback.from_outcome(
        outcome, *losses, num_examples=self.population.num_examples[outcome.clients])
    self.selector.observe(round_num, feedback)

    record = self._record(end_s, outcome, train)
    record.update(selection.round_metrics(self.selector))
    self.evaluate(record, round_num, process_state)
    self.hooks.on_round_end(round_num, record, feedback)
    record['wall_clock_s'] = time.perf_counter() - wall_start
    new_state = SimulationState(round_num, process_state, end_s,
                                self.selector.get_state(),
                                hook_state=self.hooks.get_state())
    return new_state, RoundResult(
        record, tuple(metrics_lib.timeline_rows(outcome, self.population.client_ids)),
        feedback)

  def empty_record(self, virtual_time_s: float) -> dict[str, Any]:
    return self._record(virtual_time_s, None, evaluation_lib.train_metrics(None))

  def _record(self, virtual_time_s: float,
              outcome: Optional[accounting.RoundOutcome],
              train: dict[str, float]) -> dict[str, Any]:
    """One row of metrics.csv (counts are zero when nobody was invited)."""
    status = outcome.status if outcome else np.zeros(0, np.int8)
    completed = status == accounting.Status.COMPLETED
    return {
        'virtual_time_s': virtual_time_s,
        'round_duration_s': outcome.duration_s if outcome else 0.0,
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
