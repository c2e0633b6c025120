"""Asynchronous federated training (FedBuff) on the same traces and accountant.

An event-driven virtual clock: up to `max_concurrency` clients train at once.
A client starts from the model version current at its start, and its update
arrives at start + its accounted time (download, compute, upload), unless its
availability slot ends first (a drop-out). Arriving updates join a buffer; when
`buffer_size` are buffered the server averages them (example-weighted, times a
staleness weight) and applies one step of its optimizer. Updates staler than
`max_staleness` versions are dropped and counted (Nguyen et al. 2022, "Federated
Learning with Buffered Asynchronous Aggregation").

Client training and the server step are TFF computations from `tff.learning`
(`build_model_delta_client_work` and `build_apply_optimizer_finalizer`), so the
model, task and optimizers are those of the synchronous mode. The whole event
state (clock, clients in flight with their updates, buffer, server model and
optimizer state, selector state) is checkpointed every k server steps, so a
killed run resumes to the same result. With
max_concurrency = buffer_size = clients_per_round, no over-commitment and equal
client times, every buffer holds one synchronous round's clients, all with
staleness 0, and the result is synchronous FedAvg's.
"""

import csv
import dataclasses
import heapq
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import checkpoint as checkpoint_lib
from tf_fedscale import evaluation as evaluation_lib
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import metrics as metrics_lib
from tf_fedscale import payload
from tf_fedscale import population as population_lib
from tf_fedscale import selection

STALENESS_WEIGHTINGS = ('constant', 'sqrt')
UPDATE_COLUMNS = ('client_id', 'version_started', 'start_s', 'end_s', 'download_s',
                  'compute_s', 'upload_s', 'status', 'staleness', 'server_step')


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
  """FedBuff's knobs."""

  max_concurrency: int
  buffer_size: int
  max_staleness: int
  staleness_weighting: str = 'sqrt'

  def __post_init__(self):
    for name in ('max_concurrency', 'buffer_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}.')
    if self.max_staleness < 0:
      raise ValueError(f'max_staleness must be >= 0, got {self.max_staleness}.')
    staleness_weight(0, self.staleness_weighting)


@dataclasses.dataclass
class _Running:
  """A client in flight: what it started from and what it will deliver."""

  version: int
  start_s: float
  times: tuple[float, float, float]  # download, compute, upload
  update: Any
  weight: float
  loss: float
  accuracy: float


EVENT_KINDS = ('arrive', 'dropped_offline')

# How TFF computations are called: `invoke(fn, *args, description=...)`;
# `execution.Execution.call` retries them on a restarted worker. Each call here
# is a pure function of its arguments, so running it again is safe.
Invoke = Callable[..., Any]


def _call(fn: Callable[..., Any], *args, description: str = '') -> Any:
  del description
  return fn(*args)


@dataclasses.dataclass
class AsyncState:
  """Everything that changes as the event clock runs (what a checkpoint holds,
  with the server model, its optimizer state and the selector's state)."""

  now_s: float
  version: int = 0  # server steps applied
  draw: int = 0  # selector calls since the last server step
  last_step_s: float = 0.0
  running: dict[int, _Running] = dataclasses.field(default_factory=dict)
  events: list = dataclasses.field(default_factory=list)  # heap of (end_s, seq, kind, client)
  buffer: list[tuple[_Running, int]] = dataclasses.field(default_factory=list)
  stats: dict = dataclasses.field(default_factory=lambda: _fresh_stats())
  updates_rows: int = 0  # rows of async_updates.csv written so far


class AsyncSimulation:
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
      evaluation: Optional[evaluation_lib.FederatedEvaluation] = None,
      eval_every: int = 1,
      release_managers: Sequence[tff.program.ReleaseManager] = (),
      updates_path: Optional[str] = None,
      idle_step_s: float = 60.0,
      invoke: Optional[Invoke] = None,
  ):
    client_work = tff.learning.templates.build_model_delta_client_work(
        model_fn, client_optimizer, tff.learning.ClientWeighting.NUM_EXAMPLES)
    self._train = tff.simulation.compose_dataset_computation_with_computation(
        train_data.preprocess(local_work.preprocess).dataset_computation,
        client_work.next)
    self._client_work_state = client_work.initialize()
    weights_type = tff.learning.models.weights_type_from_model(model_fn)
    self._finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        server_optimizer, weights_type)
    self._finalizer_state = self._finalizer.initialize()
    self.weights = initial_model_weights
    self.population = population
    self.selector = selector
    self.accountant = accountant
    self.local_work = local_work
    self.config = config
    self.seed = seed
    self.evaluation = evaluation
    self.eval_every = eval_every
    self.release_managers = list(release_managers)
    self.idle_step_s = idle_step_s
    self._invoke = invoke or _call
    self._bytes_down = payload.serialized_nbytes(initial_model_weights)
    self._bytes_up = (payload.serialized_nbytes(initial_model_weights.trainable)
                      + payload.serialized_nbytes(tf.constant(0.0)))
    self._updates_path = updates_path
    if updates_path and not os.path.exists(updates_path):
      with open(updates_path, 'w', newline='') as f:
        csv.writer(f, lineterminator='\n').writerow(UPDATE_COLUMNS)

  def _train_clients(self, clients: np.ndarray) -> list[tuple[Any, float, float, float]]:
    """(update, weight, loss, accuracy) of each client, from the current model."""
    results = []
    for client in clients:  # one call per client: its metrics are its own
      client_id = self.population.client_ids[client]
      output = self._invoke(self._train, self._client_work_state, [self.weights],
                            [client_id], description=f'training client {client_id}')
      (result,) = output.result
      train = evaluation_lib.train_metrics(
          {'client_work': output.measurements})
      update = [np.asarray(u) for u in tf.nest.flatten(result.update)]
      results.append((update, float(result.update_weight),
                      train['train_loss'], train['train_accuracy']))
    return results

  def _start_clients(self, count: int, state: AsyncState) -> None:
    """Invites up to `count` online clients that are not already training."""
    now_s, running, stats = state.now_s, state.running, state.stats
    rng = np.random.default_rng([self.seed, state.version + 1, state.draw])
    state.draw += 1
    candidates = self.selector.select(state.version + 1, now_s, self.population, rng)
    fresh = np.array([c for c in candidates if int(c) not in running], np.int64)[:count]
    if not len(fresh):
      return
    samples = self.local_work.samples(self.population.num_examples[fresh])
    down, compute, up = self.accountant.client_times(
        fresh, samples, self._bytes_down, self._bytes_up)
    online_for = self.population.online_until_s(fresh, now_s) - now_s
    for i, (client, trained) in enumerate(zip(fresh, self._train_clients(fresh))):
      finish = down[i] + compute[i] + up[i]
      ends = now_s + min(finish, online_for[i])
      running[int(client)] = _Running(state.version, now_s,
                                      (down[i], compute[i], up[i]), *trained)
      kind = 'arrive' if finish <= online_for[i] else 'dropped_offline'
      heapq.heappush(state.events, (ends, stats['sequence'], kind, int(client)))
      stats['sequence'] += 1
      stats['selected'] += 1
      stats['bytes_down'] += int(round(self._bytes_down * min(
          1.0, (ends - now_s) / down[i] if down[i] > 0 else 1.0)))

  def _log_update(self, state: AsyncState, client: int, job: _Running, status: str,
                  staleness: int, step: int) -> None:
    if not self._updates_path:
      return
    state.updates_rows += 1
    end_s = state.now_s
    with open(self._updates_path, 'a', newline='') as f:
      csv.writer(f, lineterminator='\n').writerow([
          self.population.client_ids[client], job.version, round(job.start_s, 3),
          round(end_s, 3), *(round(t, 3) for t in job.times), status, staleness, step])

  def _server_step(self, buffer: list[tuple[_Running, int]]) -> None:
    """Applies the staleness-weighted mean of the buffered updates."""
    weights = np.array([job.weight * staleness_weight(s, self.config.staleness_weighting)
                        for job, s in buffer])
    weights = weights / weights.sum()
    mean_update = tf.nest.map_structure(
        lambda *u: np.tensordot(weights, np.stack(u), axes=1).astype(u[0].dtype),
        *[job.update for job, _ in buffer])
    output = self._invoke(self._finalizer.next, self._finalizer_state, self.weights,
                          mean_update, description='the server step')
    self._finalizer_state, self.weights = output.state, output.result

  def _evaluate(self, record: dict, step: int) -> None:
    if self.evaluation is not None and step % self.eval_every == 0:
      record.update(self._invoke(self.evaluation.evaluate, self.weights,
                                 description=f'evaluation at step {step}'))

  def initial_state(self) -> AsyncState:
    """Step 0: nobody training yet, the clock at 0."""
    return AsyncState(now_s=0.0, last_step_s=0.0)

  def run(self, state: AsyncState, server_steps: int,
          on_step: Optional[Callable[[dict], None]] = None,
          checkpointer: Optional[checkpoint_lib.Checkpointer] = None) -> AsyncState:
    """Runs until `server_steps` server updates have been applied.

    Each pass of the loop does one thing: a server step when `buffer_size`
    updates wait, else (once every event due now has been handled) refills the
    free training slots, else handles the next event. So a checkpoint, saved
    after a due server step, resumes exactly where the run was.
    """
    if state.version == 0:
      record = _empty_record(state.now_s)
      self._evaluate(record, 0)
      metrics_lib.release(self.release_managers, record, 0)
      if on_step:
        on_step({'round': 0, **record})
    wall_start = time.perf_counter()
    while state.version < server_steps:
      if len(state.buffer) >= self.config.buffer_size:
        self._apply_buffer(state, wall_start, on_step)
        if checkpointer is not None and checkpointer.due(state.version, server_steps):
          checkpointer.save(state.version, self._checkpoint(state))
        wall_start = time.perf_counter()
        continue
      if not state.events or state.events[0][0] != state.now_s:
        free = self.config.max_concurrency - len(state.running)
        if free > 0:
          self._start_clients(free, state)
        if not state.events:  # nobody online: idle the clock
          state.now_s += self.idle_step_s
          continue
      state.now_s, _, kind, client = heapq.heappop(state.events)
      self._handle(state, kind, client)
    return state

  def _handle(self, state: AsyncState, kind: str, client: int) -> None:
    """A client's update arrives (buffered or too stale) or its device left."""
    job = state.running.pop(client)
    staleness = state.version - job.version
    if kind == 'dropped_offline':
      state.stats['dropped'] += 1
      self._log_update(state, client, job, kind, staleness, -1)
    elif staleness > self.config.max_staleness:
      state.stats['stale_dropped'] += 1
      self._log_update(state, client, job, 'stale', staleness, -1)
    else:
      state.buffer.append((job, staleness))
      state.stats['bytes_up'] += self._bytes_up
      state.stats['client_compute_s'] += job.times[1]
      self._log_update(state, client, job, 'applied', staleness, state.version + 1)

  def _apply_buffer(self, state: AsyncState, wall_start: float,
                    on_step: Optional[Callable[[dict], None]]) -> None:
    """One server step on the first `buffer_size` buffered updates."""
    size = self.config.buffer_size
    applied, state.buffer = state.buffer[:size], state.buffer[size:]
    self._server_step(applied)
    state.version += 1
    state.draw = 0
    record = self._step_record(applied, state.stats, state.now_s, state.last_step_s)
    record['server_steps_per_hour'] = state.version / max(state.now_s / 3600.0, 1e-9)
    self._evaluate(record, state.version)
    record['wall_clock_s'] = time.perf_counter() - wall_start
    metrics_lib.release(self.release_managers, record, state.version)
    if on_step:
      on_step({'round': state.version, **record})
    state.stats, state.last_step_s = _fresh_stats(state.stats), state.now_s

  # Checkpoints: variable-length collections as arrays with a leading axis.

  def _jobs(self, jobs: Sequence[_Running]) -> dict[str, Any]:
    shapes = [np.shape(w) for w in self.weights.trainable]
    dtypes = [np.asarray(w).dtype for w in self.weights.trainable]
    return {
        'version': np.array([j.version for j in jobs], np.int64),
        'start_s': np.array([j.start_s for j in jobs], np.float64),
        'times_s': np.array([j.times for j in jobs], np.float64).reshape(-1, 3),
        'weight': np.array([j.weight for j in jobs], np.float64),
        'loss': np.array([j.loss for j in jobs], np.float64),
        'accuracy': np.array([j.accuracy for j in jobs], np.float64),
        'update': [np.stack([j.update[i] for j in jobs]) if jobs
                   else np.zeros((0, *shape), dtype)
                   for i, (shape, dtype) in enumerate(zip(shapes, dtypes))],
    }

  @staticmethod
  def _unjobs(saved: dict[str, Any]) -> list[_Running]:
    return [_Running(int(saved['version'][i]), float(saved['start_s'][i]),
                     tuple(float(t) for t in saved['times_s'][i]),
                     [np.asarray(u[i]) for u in saved['update']],
                     float(saved['weight'][i]), float(saved['loss'][i]),
                     float(saved['accuracy'][i]))
            for i in range(len(saved['version']))]

  def _checkpoint(self, state: AsyncState) -> dict[str, Any]:
    events = sorted(state.events)
    clients = [client for _, _, _, client in events]
    return {
        'now_s': np.float64(state.now_s), 'version': np.int64(state.version),
        'draw': np.int64(state.draw), 'last_step_s': np.float64(state.last_step_s),
        'updates_rows': np.int64(state.updates_rows),
        'stats': {k: np.float64(v) for k, v in state.stats.items()},
        'events': {'end_s': np.array([e[0] for e in events], np.float64),
                   'sequence': np.array([e[1] for e in events], np.int64),
                   'kind': np.array([EVENT_KINDS.index(e[2]) for e in events], np.int64),
                   'client': np.array(clients, np.int64)},
        'running': self._jobs([state.running[c] for c in clients]),
        'buffer': self._jobs([job for job, _ in state.buffer]),
        'buffer_staleness': np.array([s for _, s in state.buffer], np.int64),
        'trainable': [np.asarray(w) for w in self.weights.trainable],
        'non_trainable': [np.asarray(w) for w in self.weights.non_trainable],
        'finalizer_state': self._finalizer_state,
        'selector_state': self.selector.get_state(),
    }

  def restore(self, checkpointer: checkpoint_lib.Checkpointer) -> Optional[AsyncState]:
    """The newest checkpoint's state (model, selector, update log rewound), or None."""
    saved = checkpointer.load_latest(self._checkpoint(self.initial_state()))
    if saved is None:
      return None
    self.weights = tff.learning.models.ModelWeights(
        trainable=list(saved['trainable']), non_trainable=list(saved['non_trainable']))
    self._finalizer_state = saved['finalizer_state']
    self.selector.set_state(saved['selector_state'])
    events = saved['events']
    clients = [int(c) for c in events['client']]
    state = AsyncState(
        now_s=float(saved['now_s']), version=int(saved['version']),
        draw=int(saved['draw']), last_step_s=float(saved['last_step_s']),
        running=dict(zip(clients, self._unjobs(saved['running']))),
        events=[(float(t), int(q), EVENT_KINDS[int(k)], c) for t, q, k, c in zip(
            events['end_s'], events['sequence'], events['kind'], clients)],
        buffer=list(zip(self._unjobs(saved['buffer']),
                        (int(s) for s in saved['buffer_staleness']))),
        stats={k: (float(v) if k == 'client_compute_s' else int(v))
               for k, v in saved['stats'].items()},
        updates_rows=int(saved['updates_rows']))
    heapq.heapify(state.events)
    if self._updates_path:
      metrics_lib.keep_csv_rows(self._updates_path, lambda i, row: i < state.updates_rows)
    return state

  def _step_record(self, applied, stats, now_s: float, last_step_s: float) -> dict:
    weights = np.array([job.weight for job, _ in applied])
    losses = np.array([job.loss for job, _ in applied])
    accuracies = np.array([job.accuracy for job, _ in applied])
    staleness = np.array([s for _, s in applied])
    record = _empty_record(now_s)
    record.update({
        'round_duration_s': now_s - last_step_s,
        'selected': stats['selected'],
        'completed': len(applied),
        'dropped': stats['dropped'],
        'stale_dropped': stats['stale_dropped'],
        'train_loss': float(np.average(losses, weights=weights)),
        'train_accuracy': float(np.average(accuracies, weights=weights)),
        'bytes_down': stats['bytes_down'],
        'bytes_up': stats['bytes_up'],
        'client_compute_s': stats['client_compute_s'],
        'staleness_mean': float(staleness.mean()),
        'staleness_max': int(staleness.max()),
    })
    return record


def _fresh_stats(previous: Optional[dict] = None) -> dict:
  stats = {'selected': 0, 'dropped': 0, 'stale_dropped': 0, 'bytes_down': 0,
           'bytes_up': 0, 'client_compute_s': 0.0, 'sequence': 0}
  if previous:
    stats['sequence'] = previous['sequence']
  return stats


def _empty_record(now_s: float) -> dict:
  """The per-step record, in the synchronous columns plus FedBuff's."""
  return {
      'virtual_time_s': now_s, 'round_duration_s': 0.0, 'selected': 0,
      'completed': 0, 'dropped': 0, 'stragglers': 0, 'missed_deadline': 0,
      'stale_dropped': 0, 'train_loss': float('nan'), 'train_accuracy': float('nan'),
      'eval_loss': float('nan'), 'eval_accuracy': float('nan'), 'bytes_down': 0,
      'bytes_up': 0, 'client_compute_s': 0.0, 'staleness_mean': float('nan'),
      'staleness_max': 0, 'server_steps_per_hour': 0.0, 'wall_clock_s': 0.0,
  }

