r"""How close a tf_fedscale round is to the cost of its SGD: one process, one run.

  python -m tf_fedscale.experiments.benchmark                        # femnist_cnn, 100 clients
  python -m tf_fedscale.experiments.benchmark --workload=synthetic --clients_per_round=1000 \
      --rounds=300 --what=tf_fedscale                    # memory over rounds
  python -m tf_fedscale.experiments.benchmark --workload=population  # 2,000,000 clients
  python -m tf_fedscale.experiments.benchmark --execution=workers:2  # any --execution

Training workloads measure, round by round, interleaved and in rotating order
(so a change of machine load hits all alike), on the same model, initial weights, client
data, cohort (client ids of round r: r x clients_per_round, ...) and SGD work (clients x
local steps x batch):
  sgd_bound    the lower reference: every client's batches materialized as tensors
               before the timing starts, one compiled SGD step per batch, as many
               clients at once as there are cores (--bound_lanes; threads with a model
               copy each, as the engines also train several clients at once), then
               the example-weighted mean update (plain TF at its fastest here);
  serial_tf    one tf.function walks every client's tf.data pipeline (built by the
               same dataset function) one client after another, then the mean update;
  raw_tff      `process.next(state, client_ids)` of `build_weighted_fed_avg`
               composed with the dataset computation, no tf_fedscale;
  tf_fedscale  `Simulation.run_round`: selection (of the same cohort), latency
               accounting, the process's `next`, bookkeeping, on an always-online
               population of identical devices.
raw_tff and tf_fedscale run on the `--execution` context (default `auto`: the
in-process engine; with `inprocess`, raw TFF runs in-process too). Each prints one JSON line per round (round 0 is an
untimed warm-up: tracing and compilation) with `seconds` (wall), `cpu_seconds`
(this process plus the local workers) and `rss_bytes` (the same processes), then
a `summary` line with medians, ratios, the resident-memory growth from the
first to the last round, and `round1_max_weight_diff`: the largest difference
between the measures' weights after the first round (the benchmark fails when
it exceeds 1e-4: they must train the same thing).

`--workload=population` (numpy only) times selection plus accounting for a
population of `--population` clients on the default traces: lines with
`what: generate_population` (building it, once) and `what: select_account`.
"""

import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from absl import flags
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import accounting
from tf_fedscale import algorithms
from tf_fedscale import availability as availability_lib
from tf_fedscale import cli
from tf_fedscale.engine import execution as execution_lib
from tf_fedscale.engine import inprocess_engine
from tf_fedscale.engine import interface
from tf_fedscale.engine import runtime
from tf_fedscale import local_work as local_work_lib
from tf_fedscale import population as population_lib
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import base as task_base
from tf_fedscale.tasks import models
from tf_fedscale.tasks import synthetic
from tf_fedscale.traces import default as default_traces

WORKLOADS = ('femnist_cnn', 'synthetic', 'population')
MEASURES = ('sgd_bound', 'serial_tf', 'raw_tff', 'tf_fedscale')
WEIGHT_TOLERANCE = 1e-4
FEMNIST_CLASSES = 62

_WORKLOAD = flags.DEFINE_enum('workload', 'femnist_cnn', WORKLOADS, 'What to run.')
_CLIENTS = flags.DEFINE_integer(
    'clients_per_round', None,
    'Clients per round (default 100; population: 1000 kept of '
    'int(overcommit x 1000) selected).')
_ROUNDS = flags.DEFINE_integer('rounds', None,
                               'Timed rounds (default 3; population: 50).')
_WHAT = flags.DEFINE_list('what', list(MEASURES),
                          'Which of sgd_bound, serial_tf, raw_tff, tf_fedscale to run.')
_EXECUTION = flags.DEFINE_string('execution', 'auto',
                                 execution_lib.placement.EXECUTION_HELP + '.')
_WORKER_DEVICES = flags.DEFINE_string('worker_devices', '',
                                      'Devices of local workers (GPU:0,GPU:1 ...).')
_MAX_CONCURRENT = flags.DEFINE_integer(
    'max_concurrent_clients', -1, 'Bound on concurrent client computations per '
    'worker (-1: none).')
_SUBROUND = flags.DEFINE_integer(
    'clients_per_subround', 0, 'Most clients per worker call (0: automatic).')
_RECYCLE = flags.DEFINE_float(
    'recycle_growth', execution_lib.DEFAULT_RECYCLE_GROWTH,
    'Restart a local worker between rounds once its memory grew this much over '
    'its baseline (0: never).')
_DATA_CACHE = flags.DEFINE_integer(
    'data_cache_mb', -1, '--execution=inprocess: MB of client data kept in memory '
    '(-1: a quarter of the machine\'s memory; 0: none).')
_BOUND_LANES = flags.DEFINE_integer(
    'bound_lanes', 0, 'sgd_bound: clients trained at once (0: one per core).')
_LOCAL_STEPS = flags.DEFINE_integer('local_steps', 5, 'Local SGD steps per client.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 20, 'Client batch size.')
_CLIENT_LR = flags.DEFINE_float('client_lr', 0.02, 'Client learning rate.')
_NUM_CLIENTS = flags.DEFINE_integer(
    'num_clients', 0, 'Clients in the training population (0: 2 x clients_per_round, '
    'at least 1000).')
_POPULATION = flags.DEFINE_integer('population', 2_000_000,
                                   'Clients of --workload=population.')
_OVERCOMMIT = flags.DEFINE_float('overcommit', 1.3,
                                 '--workload=population: selected / kept.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of data, model and selection.')


# --- workloads --------------------------------------------------------------


def femnist_cnn_task(num_clients: int, examples_per_client: int,
                     seed: int) -> task_base.Task:
  """FEMNIST-shaped random data (28x28x1, 62 classes) and the 2-conv CNN.

  Each client's examples are drawn inside TF from stateless seeds, so the
  dataset function is serializable and the TFF worker builds them from ids.
  """
  client_ids = [str(i) for i in range(num_clients)]

  def dataset_fn(client_id: tf.Tensor) -> tf.data.Dataset:
    index = tf.strings.to_number(client_id, tf.int64)
    key = tf.stack([tf.constant(seed, tf.int64), index])
    x = tf.random.stateless_uniform([examples_per_client, 28, 28, 1], key)
    y = tf.random.stateless_uniform([examples_per_client], key + 1,
                                    maxval=FEMNIST_CLASSES, dtype=tf.int32)
    return tf.data.Dataset.from_tensor_slices((x, y))

  data = tff.simulation.datasets.ClientData.from_clients_and_tf_fn(
      client_ids, dataset_fn)

  def keras_model_fn() -> tf.keras.Model:
    return models.femnist_cnn(FEMNIST_CLASSES)

  return task_base.Task(
      name='femnist_cnn', train_data=data, test_data=data,
      num_train_examples=np.full(num_clients, examples_per_client, np.int64),
      keras_model_fn=keras_model_fn,
      loss_fn=lambda: tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics_fn=lambda: [tf.keras.metrics.SparseCategoricalAccuracy()])


def build_task(workload: str, num_clients: int, work: local_work_lib.LocalWork,
               seed: int) -> task_base.Task:
  if workload == 'femnist_cnn':
    return femnist_cnn_task(num_clients, work.local_steps * work.batch_size, seed)
  return synthetic.build(num_clients=num_clients, seed=seed)


# --- the three measurements -------------------------------------------------


def build_sgd_bound_round(task: task_base.Task, work: local_work_lib.LocalWork,
                          client_lr: float, initial: tff.learning.models.ModelWeights,
                          lanes: int) -> tuple[Callable[[Sequence[str]], Any],
                                               tf.keras.Model,
                                               Callable[[Sequence[str]], None]]:
  """The lower reference: data in memory, one compiled SGD step per batch,
  `lanes` clients training at once (each lane a thread with its own model
  copy: the engines also train several clients at once, so a one-client-at-a-
  time loop would not be the fastest way to do the same work).

  Returns (round function, model, `materialize(client_ids)`: decodes those
  clients' batches into tensors, to call before timing).
  """
  if lanes < 1:
    raise ValueError(f'lanes must be >= 1, got {lanes}.')
  loss_fn = task.loss_fn()
  dataset_fn = task.train_data.preprocess(work.preprocess).serializable_dataset_fn
  x_spec, y_spec = dataset_fn(tf.constant(task.train_data.client_ids[0])).element_spec

  def compiled_step(model: tf.keras.Model) -> Callable[[tf.Tensor, tf.Tensor], None]:
    variables = model.trainable_variables

    @tf.function(input_signature=[x_spec, y_spec])
    def step(x: tf.Tensor, y: tf.Tensor) -> None:
      with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
      for v, g in zip(variables, tape.gradient(loss, variables)):
        v.assign_sub(client_lr * g)

    step.get_concrete_function()  # traced before TFF builds models in v1 graphs
    return step

  models = [task.keras_model_fn() for _ in range(lanes)]
  for model in models:
    initial.assign_weights_to(model)
  steps = [compiled_step(model) for model in models]
  batches: dict[str, list[tuple[tf.Tensor, tf.Tensor]]] = {}

  def materialize(client_ids: Sequence[str]) -> None:
    for c in client_ids:
      if c not in batches:
        batches[c] = list(dataset_fn(tf.constant(c)))

  def train_lane(lane: int, client_ids: Sequence[str], start: list[tf.Tensor],
                 out: list[Any]) -> None:
    """Example-weighted sum of the lane's clients' updates, and their examples."""
    variables = models[lane].trainable_variables
    update_sum = [tf.zeros_like(w) for w in start]
    total = 0
    for c in client_ids:
      for v, w in zip(variables, start):
        v.assign(w)
      examples = 0
      for x, y in batches[c]:
        steps[lane](x, y)
        examples += int(y.shape[0])
      update_sum = [s + examples * (v - w)
                    for s, v, w in zip(update_sum, variables, start)]
      total += examples
    out[lane] = (update_sum, total)

  def round_fn(client_ids: Sequence[str]) -> None:
    start = [tf.identity(v) for v in models[0].trainable_variables]
    out: list[Any] = [None] * lanes
    threads = [threading.Thread(target=train_lane,
                                args=(i, client_ids[i::lanes], start, out))
               for i in range(lanes)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    update_sum = [tf.add_n(parts) for parts in zip(*(u for u, _ in out))]
    total = sum(t for _, t in out)
    for v, w, s in zip(models[0].trainable_variables, start, update_sum):
      v.assign(w + s / total)  # the round's model; lanes start each client from it

  return round_fn, models[0], materialize


def build_serial_tf_round(task: task_base.Task, work: local_work_lib.LocalWork,
                          client_lr: float, initial: tff.learning.models.ModelWeights
                          ) -> tuple[Callable[[Sequence[str]], Any], tf.keras.Model]:
  """One tf.function: every client's pipeline walked in turn, then the mean update."""
  model = task.keras_model_fn()
  initial.assign_weights_to(model)
  loss_fn = task.loss_fn()
  dataset_fn = task.train_data.preprocess(work.preprocess).serializable_dataset_fn
  variables = model.trainable_variables

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def round_fn(client_ids: tf.Tensor) -> tf.Tensor:
    start = [tf.identity(v) for v in variables]
    update_sum = [tf.zeros_like(v) for v in variables]
    total = tf.constant(0.0)
    for i in tf.range(tf.shape(client_ids)[0]):
      for v, w in zip(variables, start):
        v.assign(w)
      examples = tf.constant(0.0)
      for x, y in dataset_fn(client_ids[i]):
        with tf.GradientTape() as tape:
          loss = loss_fn(y, model(x, training=True))
        for v, g in zip(variables, tape.gradient(loss, variables)):
          v.assign_sub(client_lr * g)
        examples += tf.cast(tf.shape(y)[0], tf.float32)
      update_sum = [s + examples * (v - w)
                    for s, v, w in zip(update_sum, variables, start)]
      total += examples
    for v, w, s in zip(variables, start, update_sum):
      v.assign(w + s / total)
    return total

  # Traced now: TFF later builds Keras models inside v1 graphs, after which
  # Keras refuses to trace models made outside them.
  round_fn.get_concrete_function()
  return (lambda ids: round_fn(tf.constant(list(ids)))), model


def build_raw_tff(task: task_base.Task, work: local_work_lib.LocalWork,
                  client_lr: float, initial: tff.learning.models.ModelWeights):
  """Plain TFF: FedAvg composed with the dataset computation."""
  process = tff.learning.algorithms.build_weighted_fed_avg(
      task.model_fn(),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=client_lr),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0))
  composed = tff.simulation.compose_dataset_computation_with_learning_process(
      task.train_data.preprocess(work.preprocess).dataset_computation, process)
  state = composed.set_model_weights(composed.initialize(), initial)
  return composed, state


def ideal_population(client_ids: Sequence[str], num_examples: np.ndarray,
                     seed: int) -> population_lib.Population:
  """Always online, identical devices: every invited client finishes."""
  n = len(client_ids)
  return population_lib.Population.build(
      client_ids, num_examples,
      population_lib.DeviceProfiles.uniform(n, 40.0, 20_000.0, 6_000.0),
      availability_lib.AvailabilityTrace.always(n), seed=seed)


class CohortSelector(selection.BaseSelector):
  """Invites the benchmark's cohort of each round, so all measures train it."""

  def __init__(self, cohort_indices: Callable[[int], np.ndarray], clients_per_round: int):
    super().__init__(clients_per_round)
    self._cohort_indices = cohort_indices

  def select(self, round_num, virtual_time_s, population, rng):
    del virtual_time_s, population, rng
    return self._cohort_indices(round_num - 1)  # Simulation counts from 1


def build_tf_fedscale(task: task_base.Task, work: local_work_lib.LocalWork,
                      client_lr: float, clients_per_round: int, seed: int,
                      initial: tff.learning.models.ModelWeights,
                      cohort_indices: Callable[[int], np.ndarray]
                      ) -> simulation.Simulation:
  pop = ideal_population(task.train_data.client_ids, task.num_train_examples, seed)
  process = algorithms.build_process('fedavg', task.model_fn(), client_lr, 1.0)
  return simulation.Simulation(
      process, task.train_data, pop,
      CohortSelector(cohort_indices, clients_per_round),
      accounting.LatencyAccountant(pop, clients_per_round=clients_per_round),
      work, seed=seed, initial_model_weights=initial)


# --- process accounting -----------------------------------------------------


def _proc_cpu_seconds(pid: int) -> float:
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _proc_rss_bytes(pid: int, field: str = 'VmRSS') -> int:
  """Resident bytes (VmRSS), or the peak so far with field='VmHWM'."""
  with open(f'/proc/{pid}/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024
  return 0


class Meter:
  """CPU seconds and resident bytes of this process plus its local workers."""

  def __init__(self, execution: Optional[interface.Engine] = None):
    self.execution = execution

  def pids(self) -> list[int]:
    workers = self.execution.stats().worker_pids if self.execution else ()
    return [os.getpid(), *workers]

  def cpu_seconds(self) -> float:
    """CPU seconds of this process and its workers, retired ones included."""
    retired = self.execution.stats().retired if self.execution else ()
    total = sum(r.cpu_seconds for r in retired)
    for pid in self.pids():
      try:
        total += _proc_cpu_seconds(pid)
      except OSError:
        pass
    return total

  def rss_bytes(self, field: str = 'VmRSS') -> int:
    total = 0
    for pid in self.pids():
      try:
        total += _proc_rss_bytes(pid, field)
      except OSError:
        pass
    return total


def emit(record: dict[str, Any]) -> None:
  print(json.dumps(record, sort_keys=False), flush=True)


def _timed(meter: Meter, fn: Callable[[], Any]) -> tuple[float, float, float]:
  """(wall seconds, CPU seconds of all, CPU seconds of this process) of fn()."""
  own0, cpu0 = _proc_cpu_seconds(os.getpid()), meter.cpu_seconds()
  t0 = time.perf_counter()
  fn()
  return (time.perf_counter() - t0, meter.cpu_seconds() - cpu0,
          _proc_cpu_seconds(os.getpid()) - own0)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return round(a / b, 4) if a is not None and b else None


def _max_weight_diff(weight_lists: Sequence[Sequence[np.ndarray]]) -> float:
  """Largest absolute difference between the first list of weights and the others."""
  first = weight_lists[0]
  return max((float(np.max(np.abs(a - b))) for other in weight_lists[1:]
              for a, b in zip(first, other)), default=0.0)


def run_training(workload: str, clients_per_round: int, rounds: int,
                 what: Sequence[str]) -> dict[str, Any]:
  """The interleaved rounds of the measures in `what`; returns the summary."""
  work = local_work_lib.LocalWork(batch_size=_BATCH_SIZE.value,
                                  local_steps=_LOCAL_STEPS.value,
                                  shuffle_seed=_SEED.value)
  num_clients = _NUM_CLIENTS.value or max(1000, 2 * clients_per_round)
  if _BOUND_LANES.value < 0:
    cli.fail(f'--bound_lanes: {_BOUND_LANES.value} clients at once; give 1 or more, '
             'or 0 for one per core.')
  if num_clients < clients_per_round:
    cli.fail(f'--num_clients: {num_clients} is below '
             f'--clients_per_round={clients_per_round}.')
  task = build_task(workload, num_clients, work, _SEED.value)
  initial = seeding.initial_model_weights(task.keras_model_fn, _SEED.value)
  base = {'workload': workload, 'clients_per_round': clients_per_round,
          'local_steps': work.local_steps, 'batch_size': work.batch_size}
  client_ids = task.train_data.client_ids

  def cohort_indices(round_num: int) -> np.ndarray:
    first = round_num * clients_per_round
    return (first + np.arange(clients_per_round)) % num_clients

  def cohort(round_num: int) -> list[str]:
    return [client_ids[i] for i in cohort_indices(round_num)]

  times = {w: [] for w in what}
  cpus = {w: [] for w in what}
  rss = {w: [] for w in what}
  summary = dict(base, what='summary', rounds=rounds)
  steps = {}
  weights = {}  # measure -> its trainable weights now
  # First: before TFF traces any Keras model.
  if 'sgd_bound' in what:
    bound_round, bound_model, materialize = build_sgd_bound_round(
        task, work, _CLIENT_LR.value, initial,
        _BOUND_LANES.value or len(os.sched_getaffinity(0)))
    for round_num in range(rounds + 1):  # the data is in memory before timing
      materialize(cohort(round_num))
    steps['sgd_bound'] = lambda r: bound_round(cohort(r))
    weights['sgd_bound'] = lambda: bound_model.trainable_variables
  if 'serial_tf' in what:
    serial_round, serial_model = build_serial_tf_round(task, work, _CLIENT_LR.value,
                                                       initial)
    steps['serial_tf'] = lambda r: serial_round(cohort(r))
    weights['serial_tf'] = lambda: serial_model.trainable_variables
  with execution_lib.build(_EXECUTION.value, _MAX_CONCURRENT.value,
                           _WORKER_DEVICES.value,
                           clients_per_subround=_SUBROUND.value,
                           recycle_growth=_RECYCLE.value,
                           data_cache_mb=_DATA_CACHE.value) as execution:
    meter = Meter(execution)
    context = {'execution': str(execution.spec)}
    summary.update(context)  # the engine run (what auto chose)
    if 'raw_tff' in what:
      composed, raw = build_raw_tff(task, work, _CLIENT_LR.value, initial)
      raw_state = [raw]

      def raw_step(r):
        raw_state[0] = composed.next(raw_state[0], cohort(r)).state

      steps['raw_tff'] = raw_step
      weights['raw_tff'] = lambda: composed.get_model_weights(raw_state[0]).trainable
    if 'tf_fedscale' in what:
      sim = build_tf_fedscale(task, work, _CLIENT_LR.value, clients_per_round,
                              _SEED.value, initial, cohort_indices)
      sim_state = [sim.initialize()]

      def sim_step(r):
        sim_state[0], result = execution.call(sim.run_round, sim_state[0],
                                              description=f'round {r}')
        execution.recycle_grown_workers(f'after round {r}')
        record = result.metrics
        if record['completed'] != clients_per_round:
          raise RuntimeError(f'{record["completed"]} clients trained, expected '
                             f'{clients_per_round}.')

      steps['tf_fedscale'] = sim_step
      weights['tf_fedscale'] = lambda: sim.model_weights(
          sim_state[0].process_state).trainable

    for round_num in range(rounds + 1):
      # Warm-up in the given order, then rotate it so that no measurement always
      # runs right after another one (worker caches, thread pools winding down).
      shift = max(0, round_num - 1) % len(what)
      for name in what[shift:] + what[:shift]:
        seconds, cpu, python_cpu = _timed(meter, lambda: steps[name](round_num))
        record = dict(base, what=name, round=round_num,
                      seconds=round(seconds, 4), cpu_seconds=round(cpu, 3),
                      python_cpu_seconds=round(python_cpu, 3),
                      rss_bytes=meter.rss_bytes(),
                      python_rss_bytes=_proc_rss_bytes(os.getpid()))
        if name in ('raw_tff', 'tf_fedscale'):
          record.update(context, subrounds=execution.stats().subrounds or 1)
        if round_num == 0:
          record['warmup'] = True
        else:
          times[name].append(seconds)
          cpus[name].append(cpu)
        rss[name].append(record['rss_bytes'])
        emit(record)
      if round_num == 0:
        diff = _max_weight_diff([[np.asarray(w) for w in weights[name]()]
                                 for name in what])
        summary['round1_max_weight_diff'] = diff
        if diff > WEIGHT_TOLERANCE:
          cli.fail(f'the measures disagree after round 1 (max weight difference '
                   f'{diff:.3g} > {WEIGHT_TOLERANCE}): they do not train the same thing.')
    stats = execution.stats()
    summary['recovery_events'] = len(stats.events)
    summary['worker_recycles'] = stats.recycles
    summary['peak_rss_bytes'] = meter.rss_bytes('VmHWM')  # per-process peaks, summed
    summary['recycled_worker_peak_rss_bytes'] = max(
        (r.peak_rss_bytes for r in stats.retired), default=0)

  for name in what:
    summary[f'{name}_seconds'] = round(statistics.median(times[name]), 4)
    summary[f'{name}_cpu_seconds'] = round(statistics.median(cpus[name]), 3)
  pairs = (('serial_tf', 'sgd_bound'), ('raw_tff', 'sgd_bound'),
           ('tf_fedscale', 'sgd_bound'), ('tf_fedscale', 'raw_tff'))
  for a, b in pairs:
    if a in what and b in what:
      summary[f'{a}_over_{b}'] = _ratio(summary[f'{a}_seconds'],
                                        summary[f'{b}_seconds'])
      summary[f'{a}_over_{b}_cpu'] = _ratio(summary[f'{a}_cpu_seconds'],
                                            summary[f'{b}_cpu_seconds'])
  last = what[-1]
  # Memory after the first timed round vs after the last one.
  first_rss, last_rss = rss[last][1], rss[last][-1]
  summary.update(rss_first_bytes=first_rss, rss_last_bytes=last_rss,
                 rss_growth=round(last_rss / first_rss - 1, 4))
  summary.update(machine())
  emit(summary)
  return summary


# --- population: selection and accounting at scale --------------------------


def _ids_nbytes(client_ids: list[str]) -> int:
  return sys.getsizeof(client_ids) + sum(sys.getsizeof(c) for c in client_ids)


def run_population(num_clients: int, clients_per_round: int, rounds: int,
                   overcommit: float) -> dict[str, Any]:
  """Times select + account per round on a population of `num_clients`."""
  meter = Meter()
  seed = _SEED.value
  rss0 = meter.rss_bytes()
  t0 = time.perf_counter()
  devices = default_traces.generate_devices(num_clients, seed)
  t_devices = time.perf_counter() - t0
  availability = default_traces.generate_availability(num_clients, seed)
  t_availability = time.perf_counter() - t0 - t_devices
  client_ids = [str(i) for i in range(num_clients)]
  num_examples = np.random.default_rng([seed, 3]).integers(
      20, 400, num_clients).astype(np.int64)
  pop = population_lib.Population.build(client_ids, num_examples, devices,
                                        availability, seed=seed)
  generate_s = time.perf_counter() - t0
  population_bytes = pop.nbytes + _ids_nbytes(client_ids)
  base = {'workload': 'population', 'population': num_clients,
          'clients_per_round': clients_per_round,
          'selected': selection.num_invited(clients_per_round, overcommit)}
  emit(dict(base, what='generate_population', seconds=round(generate_s, 3),
            devices_seconds=round(t_devices, 3),
            availability_seconds=round(t_availability, 3),
            population_bytes=population_bytes, arrays_bytes=pop.nbytes,
            rss_bytes=meter.rss_bytes(), rss_added_bytes=meter.rss_bytes() - rss0))

  work = local_work_lib.LocalWork(batch_size=20, local_steps=5)
  selector = selection.UniformSelector(clients_per_round, overcommit=overcommit)
  accountant = accounting.LatencyAccountant(pop, clients_per_round=clients_per_round)
  bytes_down, bytes_up = 1_000_000, 1_000_000
  per_round = []
  virtual_time_s = 0.0
  for round_num in range(1, rounds + 1):
    t = time.perf_counter()
    rng = np.random.default_rng([seed, round_num])
    candidates = selector.select(round_num, virtual_time_s, pop, rng)
    while not len(candidates):  # nobody online: idle, as Simulation does
      virtual_time_s += 60.0
      candidates = selector.select(round_num, virtual_time_s, pop, rng)
    outcome = accountant.account(round_num, candidates,
                                 work.samples(pop.num_examples[candidates]),
                                 bytes_down, bytes_up, start_time_s=virtual_time_s)
    virtual_time_s += outcome.duration_s
    selector.observe(round_num, selection.RoundFeedback.from_outcome(outcome))
    completed_ids = [pop.client_ids[c] for c in outcome.completed]
    seconds = time.perf_counter() - t
    per_round.append(seconds)
    emit(dict(base, what='select_account', round=round_num,
              seconds_per_round=round(seconds, 5), invited=len(candidates),
              completed=len(completed_ids),
              virtual_time_s=round(virtual_time_s, 1),
              population_bytes=population_bytes))
  summary = dict(base, what='summary', rounds=rounds,
                 seconds_per_round=round(statistics.median(per_round), 5),
                 max_seconds_per_round=round(max(per_round), 5),
                 population_bytes=population_bytes,
                 generate_seconds=round(generate_s, 3),
                 rss_bytes=meter.rss_bytes(), **machine())
  emit(summary)
  return summary


def machine() -> dict[str, Any]:
  return {'cpus': len(os.sched_getaffinity(0)), 'host_cpus': os.cpu_count(),
          'python': platform.python_version(), 'tensorflow': tf.__version__,
          'tff': tff.__version__}


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  runtime.install_exit_hooks()  # stop TFF workers on exit and SIGTERM
  workload = _WORKLOAD.value
  if workload == 'population':
    cpr = _CLIENTS.value or 1000
    rounds = _ROUNDS.value or 50
    if cpr < 1 or rounds < 1 or _POPULATION.value < cpr or _OVERCOMMIT.value < 1:
      cli.fail('--clients_per_round, --population, --rounds, --overcommit: need '
               '1 <= clients_per_round <= population, rounds >= 1 and overcommit >= 1.')
    run_population(_POPULATION.value, cpr, rounds, _OVERCOMMIT.value)
    return
  what = [w.strip() for w in _WHAT.value]
  unknown = sorted(set(what) - set(MEASURES))
  if unknown or not what:
    cli.fail(f'--what: unknown {unknown}; choose from {MEASURES}.')
  problem = execution_lib.validate_flags(_EXECUTION.value, _WORKER_DEVICES.value,
                                        _SUBROUND.value, _DATA_CACHE.value)
  if problem:
    cli.fail(f'--{problem[0]}: {problem[1]}')
  inprocess_engine.reserve_devices(_EXECUTION.value)
  cpr = _CLIENTS.value or 100
  rounds = _ROUNDS.value or 3
  if cpr < 1 or rounds < 1:
    cli.fail('--clients_per_round, --rounds: both must be >= 1.')
  run_training(workload, cpr, rounds, [m for m in MEASURES if m in what])


if __name__ == '__main__':
  cli.run(main)
