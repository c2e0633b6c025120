"""Asynchronous federated training (FedBuff) as a `simulation.Driver`.

An event-driven virtual clock: up to `max_concurrency` clients train at once.
A client starts from the model version current at its start, and its update
arrives at start + its accounted time (download, compute, upload), unless its
availability slot ends first (a drop-out). Arriving updates join a buffer; when
`buffer_size` are buffered the server aggregates them and applies one step of
its optimizer. Updates staler than `max_staleness` versions are dropped and
counted (Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous
Aggregation").

A "round" of this driver is one server step: `run_round(state)` runs the
event clock from `state` until the next server step is applied, and returns
the new state (model, server optimizer and aggregator states, the clients in
flight with their updates, the buffer, the selector's state, the clock) and
the step's record. Everything else is the synchronous mode's (`Driver`): the
selector (loaded from the state, fed back after every step with the clients
whose updates arrived or whose devices left), the latency accountant, the
per-client loss reporting Oort needs (`feedback.py`), the `local_work` and
`on_round_end` hooks, evaluation, checkpoints, retries and the files.

Aggregation is the run's `aggregators.Aggregator`: its TFF factory aggregates
the buffered updates (so clipping, zeroing, secure sum and
compression work as in synchronous rounds), weighted by examples times the
staleness weight. Client training and the server step are TFF
computations built from `tff.learning` (`build_model_delta_client_work`,
`build_apply_optimizer_finalizer`) in the shape that has a MapReduceForm
(`client_training`, called with one client, and `server_step`, with the
buffered updates as its clients), so they run on every engine, the in-process
one included (tests/inprocess_engine_test.py compares them). With
max_concurrency = buffer_size = clients_per_round, no over-commitment and
equal client times, every buffer holds one synchronous round's clients, all
with staleness 0, and the result is synchronous FedAvg's.

Not supported here, refused when the driver is built: hooks that start a
round (`on_round_start`: there is no round, and the server state is not a TFF
process state) or choose a cohort's finishers (`on_client_completion`: updates
arrive one by one), a round deadline, and DP aggregation (the buffer holds
whichever updates arrive first, which no sampling event describes, so no
epsilon would bound the run; `tf_fedscale.privacy`).
"""

import collections
import copy
import dataclasses
import heapq
import math
import time
from collections.abc import Callable
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import aggregators
from tf_fedscale import algorithms
from tf_fedscale.engine import compositions
from tf_fedscale import evaluation as evaluation_lib
from tf_fedscale import feedback as feedback_lib
from tf_fedscale import hooks as hooks_lib
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics as metrics_lib
from tf_fedscale import payload
from tf_fedscale import population as population_lib
from tf_fedscale import selection
from tf_fedscale import simulation

STALENESS_WEIGHTINGS = ('constant', 'sqrt')
UPDATE_COLUMNS = ('round', 'client_id', 'version_started', 'start_s', 'end_s',
                  'download_s', 'compute_s', 'upload_s', 'status', 'staleness',
                  'server_step')
EVENT_KINDS = ('arrive', 'dropped_offline')
UNSUPPORTED_HOOKS = (hooks_lib.RoundStartHook, hooks_lib.ClientCompletionHook)


def staleness_weight(staleness: int, weighting: str) -> float:
  """1 for 'constant'; 1/sqrt(1 + staleness) for 'sqrt' (FedBuff)."""
  if weighting == 'constant':
    return 1.0
  if weighting == 'sqrt':
    return 1.0 / math.sqrt(1.0 + staleness)
  raise ValueError(f'Unknown staleness weighting {weighting!r}; '
                   f'use one of {STALENESS_WEIGHTINGS}.')


@dataclasses.dataclass(frozen=True)
class AsyncConfig:
  """FedBuff's knobs, and how often a server step that keeps waiting for its
  buffer says so (a warning line every `progress_every_results` client
  results or `progress_every_s` virtual seconds without a step, whichever
  comes first), so a slowly filling buffer never looks like a hung run."""

  max_concurrency: int
  buffer_size: int
  max_staleness: int
  staleness_weighting: str = 'sqrt'
  progress_every_results: int = 500
  progress_every_s: float = 3600.0

  def __post_init__(self):
    for name in ('max_concurrency', 'buffer_size', 'progress_every_results'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}.')
    if not self.progress_every_s > 0:
      raise ValueError(f'progress_every_s must be > 0, got {self.progress_every_s}.')
    if self.max_staleness < 0:
      raise ValueError(f'max_staleness must be >= 0, got {self.max_staleness}.')
    staleness_weight(0, self.staleness_weighting)


@dataclasses.dataclass(frozen=True)
class _Job:
  """A client in flight: what it started from and what it will deliver."""

  version: int
  start_s: float
  times: tuple[float, float, float]  # download, compute, upload
  samples: int
  bytes_down: int  # what it received before it finished or left
  update: Any  # list of arrays, shaped like the trainable weights
  weight: float
  loss: float
  accuracy: float
  loss_sq_sum: float  # NaN unless the client work reports losses
  loss_count: float


@dataclasses.dataclass(frozen=True)
class Pending:
  """The event clock between server steps (`SimulationState.pending`)."""

  running: dict[int, _Job]  # by client
  events: tuple  # heap of (end_s, sequence, kind, client)
  buffer: tuple  # (job, staleness) in arrival order
  sequence: int  # events scheduled so far (ties resolve in order)


@dataclasses.dataclass(frozen=True)
class _Handled:
  """A client whose update arrived (or device left) during the step."""

  client: int
  job: _Job
  status: int  # accounting.Status
  end_s: float


def client_training(client_work: tff.learning.templates.ClientWorkProcess,
                    weights_type: tff.Type) -> tff.Computation:
  """`(<model_weights, client_work>@SERVER, data@CLIENTS) -> (the same state,
  <update, update_weight, measurements>@SERVER)`: `client_work.next` from the
  server's model, its results summed over the clients.

  Called with one client, the sums are that client's own values; the shape
  (state in and out, client data, server outputs) has a MapReduceForm, so
  the in-process engine runs it like the TFF workers do.
  """
  state_type = tff.FederatedType(tff.StructType([
      ('model_weights', weights_type),
      ('client_work', client_work.initialize.type_signature.result.member),
  ]), tff.SERVER)

  @tff.federated_computation(state_type, client_work.next.type_signature.parameter[2])
  def train(state, data):
    output = client_work.next(state.client_work,
                              tff.federated_broadcast(state.model_weights), data)
    return state, tff.federated_zip(collections.OrderedDict(
        update=tff.federated_sum(output.result.update),
        update_weight=tff.federated_sum(output.result.update_weight),
        measurements=output.measurements))

  return train


def server_step(aggregation: tff.templates.AggregationProcess,
                finalizer: tff.learning.templates.FinalizerProcess,
                weights_type: tff.Type) -> tff.Computation:
  """`(<aggregator, finalizer, model_weights>@SERVER, <update, weight>@CLIENTS)
  -> (the new state, <aggregator, finalizer> measurements@SERVER)`: the
  buffered updates (one per client) aggregated, then applied by the server
  optimizer, in one call of a shape with a MapReduceForm."""
  state_type = tff.FederatedType(tff.StructType([
      ('aggregator', aggregation.initialize.type_signature.result.member),
      ('finalizer', finalizer.initialize.type_signature.result.member),
      ('model_weights', weights_type),
  ]), tff.SERVER)
  buffered_type = tff.FederatedType(tff.StructType([
      ('update', weights_type.trainable), ('weight', tff.TensorType(np.float32)),
  ]), tff.CLIENTS)

  @tff.federated_computation(state_type, buffered_type)
  def step(state, buffered):
    aggregated = aggregation.next(state.aggregator, buffered.update, buffered.weight)
    applied = finalizer.next(state.finalizer, state.model_weights, aggregated.result)
    new_state = tff.federated_zip(collections.OrderedDict(
        aggregator=aggregated.state, finalizer=applied.state,
        model_weights=applied.result))
    return new_state, tff.federated_zip(collections.OrderedDict(
        aggregator=aggregated.measurements, finalizer=applied.measurements))

  return step


@dataclasses.dataclass(frozen=True)
class Computations:
  """FedBuff's TFF processes, and the two computations it calls (`train` per
  client, `server_step` per step), both of a shape with a MapReduceForm."""

  client_work: tff.learning.templates.ClientWorkProcess
  finalizer: tff.learning.templates.FinalizerProcess
  aggregation: tff.templates.AggregationProcess
  train: tff.Computation  # `client_training`, over client datasets
  server_step: tff.Computation  # `server_step`, prepared by the aggregator

  @property
  def called(self) -> tuple[tff.Computation, tff.Computation]:
    """The computations a server step calls with clients."""
    return self.train, self.server_step


def build_computations(model_fn: Callable[[], tff.learning.models.VariableModel],
                       client_optimizer: tff.learning.optimizers.Optimizer,
                       server_optimizer: tff.learning.optimizers.Optimizer,
                       aggregator: aggregators.Aggregator) -> Computations:
  """Client training with `client_optimizer` (updates weighted by examples),
  the buffered updates aggregated by `aggregator` and applied with
  `server_optimizer`."""
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  client_work = tff.learning.templates.build_model_delta_client_work(
      model_fn, client_optimizer, tff.learning.ClientWeighting.NUM_EXAMPLES,
      loop_implementation=algorithms.LOOP)
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      server_optimizer, weights_type)
  aggregation = aggregator.factory.create(weights_type.trainable,
                                          tff.TensorType(np.float32))
  return Computations(
      client_work, finalizer, aggregation, client_training(client_work, weights_type),
      aggregator.prepare_computation(server_step(aggregation, finalizer, weights_type)))


class AsyncSimulation(simulation.Driver):
  """Runs FedBuff over a population, a selector and a latency accountant."""

  def __init__(
      self,
      model_fn: Callable[[], tff.learning.models.VariableModel],
      client_optimizer: tff.learning.optimizers.Optimizer,
      server_optimizer: tff.learning.optimizers.Optimizer,
      train_data: tff.simulation.datasets.ClientData,
      population: population_lib.Population,
      selector: selection.Selector,
      accountant: accounting.LatencyAccountant,
      local_work: local_work_lib.LocalWork,
      config: AsyncConfig,
      *,
      seed: int,
      initial_model_weights: tff.learning.models.ModelWeights,
      aggregator: Optional[aggregators.Aggregator] = None,
      payload_bytes: Optional[tuple[int, int]] = None,
      **driver_kwargs: Any,
  ):
    """`model_fn` may be `feedback.loss_reporting_model_fn(..., num_slots=1)`
    (needed by selectors that learn from losses, e.g. Oort)."""
    super().__init__(population, selector, accountant, local_work, seed=seed,
                     **driver_kwargs)
    refused = [type(h).__name__ for h in self.hooks.hooks
               if isinstance(h, UNSUPPORTED_HOOKS)]
    if refused:
      raise ValueError(
          f'hooks {refused} implement on_round_start or on_client_completion, which '
          'asynchronous training cannot call (no rounds, updates arrive one by one).')
    if accountant.deadline_s is not None:
      raise ValueError(f'asynchronous training has no rounds to cut: the accountant '
                       f'has deadline_s={accountant.deadline_s}; build it without one.')
    if aggregator is not None and aggregator.is_private:
      raise ValueError(
          f'asynchronous training cannot run the DP aggregator {aggregator.name!r}: '
          'the buffer holds whichever updates arrive first, which no sampling event '
          'describes, so no epsilon would bound the run.')
    self.config = config
    self.aggregator = aggregator or aggregators.build_aggregator('mean')
    self.computations = build_computations(model_fn, client_optimizer,
                                           server_optimizer, self.aggregator)
    loss_slots = feedback_lib.reported_loss_slots(self.computations.client_work)
    if loss_slots > 1:
      raise ValueError(f'each client trains in its own call: build the model with '
                       f'num_slots=1, got {loss_slots}.')
    self._tasks, client_data, source = self.client_inputs(train_data, loss_slots)
    self._train = compositions.compose_computation(
        client_data.dataset_computation, self.computations.train, source)
    self._client_work_state = self.computations.client_work.initialize()
    self._aggregator_state = self.aggregator.prepare_computation(
        self.computations.aggregation.initialize)()
    self._initial_weights = initial_model_weights
    self._payload_bytes = payload_bytes or (
        payload.serialized_nbytes(initial_model_weights),
        self.aggregator.upload_nbytes(initial_model_weights.trainable))

  # -- state ---------------------------------------------------------------------

  def initialize(self) -> simulation.SimulationState:
    """Step 0: the initial model, nobody training yet, the clock at the start."""
    process_state = {
        'trainable': [np.asarray(w) for w in self._initial_weights.trainable],
        'non_trainable': [np.asarray(w) for w in self._initial_weights.non_trainable],
        'finalizer_state': self.computations.finalizer.initialize(),
        'aggregator_state': self._aggregator_state,
    }
    return simulation.SimulationState(
        0, process_state, self.start_time_s,
        copy.deepcopy(self.initial_selector_state),
        Pending(running={}, events=(), buffer=(), sequence=0),
        copy.deepcopy(self.initial_hook_state))

  def model_weights(self, process_state: Any) -> tff.learning.models.ModelWeights:
    return tff.learning.models.ModelWeights(
        trainable=list(process_state['trainable']),
        non_trainable=list(process_state['non_trainable']))

  def payload_bytes(self, process_state: Any) -> tuple[int, int]:
    del process_state
    return self._payload_bytes

  def known_payload_bytes(self) -> tuple[int, int]:
    return self._payload_bytes

  def empty_record(self, virtual_time_s: float) -> dict[str, Any]:
    """The per-step record, in the synchronous columns plus FedBuff's."""
    return {
        'virtual_time_s': virtual_time_s, 'round_duration_s': 0.0, 'selected': 0,
        'completed': 0, 'dropped': 0, 'stragglers': 0, 'missed_deadline': 0,
        'stale_dropped': 0, 'train_loss': float('nan'), 'train_accuracy': float('nan'),
        'eval_loss': float('nan'), 'eval_accuracy': float('nan'), 'bytes_down': 0,
        'bytes_up': 0, 'client_compute_s': 0.0, 'staleness_mean': float('nan'),
        'staleness_max': 0, 'server_steps_per_hour': 0.0, 'wall_clock_s': 0.0,
    }

  # -- one server step -------------------------------------------------------------

  def run_round(self, state: simulation.SimulationState
                ) -> tuple[simulation.SimulationState, simulation.RoundResult]:
    """Runs the event clock from `state` until the next server step.

    Each pass of the loop does one thing: (once every event due now has been
    handled) refills the free training slots, else handles the next event;
    the step is applied as soon as `buffer_size` updates wait.
    """
    wall_start = time.perf_counter()
    step = state.round_num + 1
    self.load_state(state)
    pending = state.pending
    running, events = dict(pending.running), list(pending.events)
    buffer, sequence = list(pending.buffer), pending.sequence
    now_s, idle_s, draw = state.virtual_time_s, 0.0, 0
    started, handled = [], []
    reported_results, reported_s = 0, now_s
    while len(buffer) < self.config.buffer_size:
      if (len(handled) - reported_results >= self.config.progress_every_results
          or now_s - reported_s >= self.config.progress_every_s):
        self._report_waiting(step, state.virtual_time_s, now_s, len(buffer), handled,
                             len(running))
        reported_results, reported_s = len(handled), now_s
      if not events or events[0][0] != now_s:
        free = self.config.max_concurrency - len(running)
        if free > 0:
          fresh = self._fresh_clients(step, now_s, draw, free, running)
          draw += 1
          for client, job, end_s, kind in self._start(fresh, now_s, state):
            running[client] = job
            heapq.heappush(events, (end_s, sequence, kind, client))
            sequence += 1
            started.append(job)
        if not events:  # nobody online: idle the clock
          if idle_s >= self.max_idle_s:
            raise RuntimeError(f'no client came online for {idle_s:.0f} virtual '
                               f'seconds after {now_s - idle_s:.0f} s.')
          now_s += self.idle_step_s
          idle_s += self.idle_step_s
          continue
      now_s, _, kind, client = heapq.heappop(events)
      idle_s = 0.0
      job = running.pop(client)
      staleness = state.round_num - job.version
      if kind == 'dropped_offline':
        status = accounting.Status.DROPPED_OFFLINE
      elif staleness > self.config.max_staleness:
        status = accounting.Status.STRAGGLER
      else:
        status = accounting.Status.COMPLETED
        buffer.append((job, staleness))
      handled.append(_Handled(client, job, status, now_s))

    size = self.config.buffer_size
    applied, buffer = buffer[:size], buffer[size:]
    process_state = self._server_step(state.process_state, applied)
    feedback = self._feedback(step, state.virtual_time_s, now_s, handled)
    self.selector.observe(step, feedback)
    record = self._record(step, state.virtual_time_s, now_s, started, handled, applied)
    record.update(selection.round_metrics(self.selector))
    self.evaluate(record, step, process_state)
    self.hooks.on_round_end(step, record, feedback)
    record['wall_clock_s'] = time.perf_counter() - wall_start
    new_state = simulation.SimulationState(
        step, process_state, now_s, self.selector.get_state(),
        Pending(running, tuple(events), tuple(buffer), sequence),
        self.hooks.get_state())
    rows = tuple(self._row(step, h, state.round_num) for h in handled)
    return new_state, simulation.RoundResult(record, rows, feedback)

  def _report_waiting(self, step: int, since_s: float, now_s: float, buffered: int,
                      handled: list[_Handled], training: int) -> None:
    """One line: the step is still waiting, how full its buffer is, and why."""
    statuses = collections.Counter(h.status for h in handled)
    logging.warning(
        'async: server step %d is waiting for its buffer: %d of %d updates after %d '
        'client results (%d dropped offline, %d too stale) in %.1f virtual s (virtual '
        'time %.1f s); %d clients training.', step, buffered, self.config.buffer_size,
        len(handled), statuses[accounting.Status.DROPPED_OFFLINE],
        statuses[accounting.Status.STRAGGLER], now_s - since_s, now_s, training)

  def _fresh_clients(self, step: int, now_s: float, draw: int, count: int,
                     running: dict[int, _Job]) -> np.ndarray:
    """Up to `count` of the selector's candidates that are not training."""
    candidates = self.select(step, now_s, draw)
    return np.array([c for c in candidates if int(c) not in running], np.int64)[:count]

  def _start(self, clients: np.ndarray, now_s: float,
             state: simulation.SimulationState) -> list[tuple[int, _Job, float, str]]:
    """Trains `clients` from the current model; when and how each one ends."""
    if not len(clients):
      return []
    amounts = self.hooks.local_work(state.round_num + 1, clients, self.population)
    samples = self.local_work.samples(self.population.num_examples[clients], amounts)
    bytes_down, bytes_up = self._payload_bytes
    down, compute, up = self.accountant.client_times(clients, samples, bytes_down,
                                                     bytes_up)
    online_for = self.population.online_until_s(clients, now_s) - now_s
    weights = self.model_weights(state.process_state)
    started = []
    for i, client in enumerate(clients):  # one call per client: its metrics are its own
      finish = down[i] + compute[i] + up[i]
      ends_after = min(finish, online_for[i])
      received = min(1.0, ends_after / down[i]) if down[i] > 0 else 1.0
      job = _Job(state.round_num, now_s, (down[i], compute[i], up[i]), int(samples[i]),
                 int(round(bytes_down * received)),
                 *self._train_client(int(client), weights,
                                     None if amounts is None else amounts[i]))
      kind = 'arrive' if finish <= online_for[i] else 'dropped_offline'
      started.append((int(client), job, now_s + ends_after, kind))
    return started

  def _train_client(self, client: int, weights: tff.learning.models.ModelWeights,
                    amount: Optional[int]) -> tuple:
    """(update, weight, loss, accuracy, loss_sq_sum, loss_count) of one client."""
    client_id = self.population.client_ids[client]
    argument = [client_id] if self._tasks is None else self._tasks.arguments(
        [client_id], None if amount is None else np.array([amount]))
    _, result = self._train(collections.OrderedDict(
        model_weights=weights, client_work=self._client_work_state), argument)
    measurements = result['measurements']
    train = evaluation_lib.train_metrics({'client_work': measurements})
    sq_sum, count = (np.full(1, np.nan), np.zeros(1))
    if self._tasks is not None and self._tasks.loss_slots:
      sq_sum, count = self._tasks.losses(measurements, 1)
    update = [np.asarray(u) for u in tf.nest.flatten(result['update'])]
    return (update, float(result['update_weight']), train['train_loss'],
            train['train_accuracy'], float(sq_sum[0]), float(count[0]))

  def _server_step(self, process_state: dict[str, Any],
                   applied: list[tuple[_Job, int]]) -> dict[str, Any]:
    """Aggregates the buffered updates with the aggregator and applies them
    (`server_step`, one call)."""
    scale = [staleness_weight(s, self.config.staleness_weighting) for _, s in applied]
    updates = [job.update for job, _ in applied]
    weights = [np.float32(job.weight * w) for (job, _), w in zip(applied, scale)]
    new_state, _ = self.computations.server_step(
        collections.OrderedDict(aggregator=process_state['aggregator_state'],
                                finalizer=process_state['finalizer_state'],
                                model_weights=self.model_weights(process_state)),
        [collections.OrderedDict(update=u, weight=w) for u, w in zip(updates, weights)])
    model_weights = new_state['model_weights']
    return {'trainable': [np.asarray(w) for w in model_weights.trainable],
            'non_trainable': [np.asarray(w) for w in model_weights.non_trainable],
            'finalizer_state': new_state['finalizer'],
            'aggregator_state': new_state['aggregator']}

  def _feedback(self, step: int, start_s: float, now_s: float,
                handled: list[_Handled]) -> selection.RoundFeedback:
    """What the selector learns from a step: every client that ended in it."""
    jobs = [h.job for h in handled]
    status = np.array([h.status for h in handled], np.int8)
    uploaded = status != accounting.Status.DROPPED_OFFLINE
    outcome = accounting.RoundOutcome(
        step, start_s, now_s - start_s,
        np.array([h.client for h in handled], np.int64),
        np.array([j.samples for j in jobs], np.int64),
        *(np.array([j.times[k] for j in jobs], np.float64) for k in range(3)),
        np.array([h.end_s - start_s for h in handled], np.float64), status,
        np.array([j.bytes_down for j in jobs], np.int64),
        np.where(uploaded, self._payload_bytes[1], 0).astype(np.int64))
    return selection.RoundFeedback.from_outcome(
        outcome, np.array([j.loss_sq_sum for j in jobs], np.float64),
        np.array([j.loss_count for j in jobs], np.float64),
        self.population.num_examples[outcome.clients])

  def _record(self, step: int, start_s: float, now_s: float, started: list[_Job],
              handled: list[_Handled], applied: list[tuple[_Job, int]]) -> dict:
    weights = np.array([job.weight for job, _ in applied])
    staleness = np.array([s for _, s in applied])
    record = self.empty_record(now_s)
    record.update({
        'round_duration_s': now_s - start_s,
        'selected': len(started),
        'completed': len(applied),
        'dropped': sum(h.status == accounting.Status.DROPPED_OFFLINE for h in handled),
        'stale_dropped': sum(h.status == accounting.Status.STRAGGLER for h in handled),
        'train_loss': float(np.average([j.loss for j, _ in applied], weights=weights)),
        'train_accuracy': float(np.average([j.accuracy for j, _ in applied],
                                           weights=weights)),
        'bytes_down': sum(job.bytes_down for job in started),
        'bytes_up': self._payload_bytes[1] * sum(
            h.status == accounting.Status.COMPLETED for h in handled),
        'client_compute_s': float(sum(h.job.times[1] for h in handled
                                      if h.status == accounting.Status.COMPLETED)),
        'staleness_mean': float(staleness.mean()),
        'staleness_max': int(staleness.max()),
        'server_steps_per_hour': step / max(now_s / 3600.0, 1e-9),
    })
    return record

  def _row(self, step: int, handled: _Handled, version: int) -> tuple:
    """A row of async_updates.csv (`UPDATE_COLUMNS`)."""
    job = handled.job
    staleness = version - job.version
    if handled.status == accounting.Status.DROPPED_OFFLINE:
      status, server_step = 'dropped_offline', -1
    elif handled.status == accounting.Status.STRAGGLER:
      status, server_step = 'stale', -1
    else:
      status, server_step = 'applied', step
    return (step, self.population.client_ids[handled.client], job.version,
            round(job.start_s, 3), round(handled.end_s, 3),
            *(round(t, 3) for t in job.times), status, staleness, server_step)

  # -- checkpoints: variable-length collections as arrays with a leading axis ------

  def _jobs(self, jobs: list[_Job]) -> dict[str, Any]:
    trainable = self._initial_weights.trainable
    return {
        'version': np.array([j.version for j in jobs], np.int64),
        'start_s': np.array([j.start_s for j in jobs], np.float64),
        'times_s': np.array([j.times for j in jobs], np.float64).reshape(-1, 3),
        'samples': np.array([j.samples for j in jobs], np.int64),
        'bytes_down': np.array([j.bytes_down for j in jobs], np.int64),
        'weight': np.array([j.weight for j in jobs], np.float64),
        'loss': np.array([j.loss for j in jobs], np.float64),
        'accuracy': np.array([j.accuracy for j in jobs], np.float64),
        'loss_sq_sum': np.array([j.loss_sq_sum for j in jobs], np.float64),
        'loss_count': np.array([j.loss_count for j in jobs], np.float64),
        'update': [np.stack([j.update[i] for j in jobs]) if jobs
                   else np.zeros((0, *np.shape(w)), np.asarray(w).dtype)
                   for i, w in enumerate(trainable)],
    }

  @staticmethod
  def _unjobs(saved: dict[str, Any]) -> list[_Job]:
    return [_Job(int(saved['version'][i]), float(saved['start_s'][i]),
                 tuple(float(t) for t in saved['times_s'][i]),
                 int(saved['samples'][i]), int(saved['bytes_down'][i]),
                 [np.asarray(u[i]) for u in saved['update']],
                 float(saved['weight'][i]), float(saved['loss'][i]),
                 float(saved['accuracy'][i]), float(saved['loss_sq_sum'][i]),
                 float(saved['loss_count'][i]))
            for i in range(len(saved['version']))]

  def pending_checkpoint(self, pending: Pending) -> dict[str, Any]:
    events = sorted(pending.events)
    clients = [client for _, _, _, client in events]
    return {
        'sequence': np.int64(pending.sequence),
        'events': {'end_s': np.array([e[0] for e in events], np.float64),
                   'sequence': np.array([e[1] for e in events], np.int64),
                   'kind': np.array([EVENT_KINDS.index(e[2]) for e in events], np.int64),
                   'client': np.array(clients, np.int64)},
        'running': self._jobs([pending.running[c] for c in clients]),
        'buffer': self._jobs([job for job, _ in pending.buffer]),
        'buffer_staleness': np.array([s for _, s in pending.buffer], np.int64),
    }

  def pending_from_checkpoint(self, saved: dict[str, Any]) -> Pending:
    events = saved['events']
    clients = [int(c) for c in events['client']]
    heap = [(float(t), int(q), EVENT_KINDS[int(k)], c) for t, q, k, c in zip(
        events['end_s'], events['sequence'], events['kind'], clients)]
    heapq.heapify(heap)
    return Pending(
        running=dict(zip(clients, self._unjobs(saved['running']))), events=tuple(heap),
        buffer=tuple(zip(self._unjobs(saved['buffer']),
                         (int(s) for s in saved['buffer_staleness']))),
        sequence=int(saved['sequence']))


def client_log(path: str) -> metrics_lib.ClientLog:
  """`async_updates.csv`: every client update (versions, times, staleness, fate)."""
  return metrics_lib.ClientLog(path, UPDATE_COLUMNS)
