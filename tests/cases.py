"""Test-case bases shared by several test modules.

- `TaskRoundTestCase`: a managed TFF worker per class, a temporary data root,
  task building, and the "training lowers the loss" checks;
- `SharedDataTestCase`: the real files of ../shared/datasets; when they are absent
  the test skips, or FAILS where $TF_FEDSCALE_REQUIRE_SHARED_DATA is set (CI);
- `NoWorkerLeftTestCase`: marks the workers a test starts and fails the test if
  any outlives it (`worker_pids_with_env` finds them);
- `tiny_fedavg_simulation`: FedAvg on 40 tiny Synthetic clients, for tests of
  where and how rounds execute;
- `always_online_population`: a task's clients at given speeds, always online.
"""

import os
import tempfile
import time
import uuid
from collections.abc import Sequence

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tests import fixtures
from tf_fedscale import accounting
from tf_fedscale import availability
from tf_fedscale.engine import runtime
from tf_fedscale import evaluation
from tf_fedscale import local_work
from tf_fedscale import population
from tf_fedscale import seeding
from tf_fedscale import selection
from tf_fedscale import simulation
from tf_fedscale.tasks import base
from tf_fedscale.tasks import registry
from tf_fedscale.tasks import synthetic


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Beside the checkout; under bazel, the `shared` repository of WORKSPACE puts the
# datasets a test declares as data at the same relative place in its runfiles.
SHARED = os.path.join(REPO_ROOT, '..', 'shared')
DATASETS = os.path.join(SHARED, 'datasets')
REQUIRE_SHARED_DATA_ENV = 'TF_FEDSCALE_REQUIRE_SHARED_DATA'  # set by .ci/run
# Workers inherit the environment, so this variable identifies a test's workers.
MARKER_ENV = 'TF_FEDSCALE_TEST_MARKER'


def worker_pids_with_env(marker: str) -> list[int]:
  """Pids of live worker binaries whose environment contains `marker`.

  Tests give a run a unique environment variable and use this to prove that no
  worker it started survives it.
  """
  pids = []
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        if b'worker_binary' not in f.read():
          continue
      with open(f'/proc/{entry}/environ', 'rb') as f:
        if marker.encode() in f.read():
          pids.append(int(entry))
    except OSError:
      continue
  return pids


class TaskRoundTestCase(absltest.TestCase):
  """`self.root` (a temporary directory), `self.build`, and the loss checks."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._worker = runtime.install_local_context()

  @classmethod
  def tearDownClass(cls):
    cls._worker.stop()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.root = self.enterContext(tempfile.TemporaryDirectory())
    self.cache = os.path.join(self.root, 'cache')

  def build(self, name: str, data_dir: str, **kwargs):
    return registry.build_task(name, data_dir, 0, cache_dir=self.cache, **kwargs)

  def assert_round_lowers_loss(self, task, clients: int = 3, **kwargs) -> None:
    before, after = fixtures.federated_round(
        task, task.train_data.client_ids[:clients], **kwargs)
    self.assertLess(after, before)

  def assert_eager_steps_lower_loss(self, task, client_ids, steps: int = 2,
                                    lr: float = 0.005, batch: int = 8) -> None:
    """Loss on a fixed batch falls over `steps` plain SGD steps."""
    model = seeding.seeded_model(task.keras_model_fn, 0)
    data = task.train_data.create_tf_dataset_for_client(client_ids[0])
    for c in client_ids[1:]:
      data = data.concatenate(task.train_data.create_tf_dataset_for_client(c))
    x, y = next(iter(data.batch(batch)))
    loss_fn, optimizer = task.loss_fn(), tf.keras.optimizers.SGD(lr)
    first = float(loss_fn(y, model(x, training=False)))
    for _ in range(steps):
      with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
      optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                    model.trainable_variables))
    self.assertLess(float(loss_fn(y, model(x, training=False))), first)


class SharedDataTestCase(absltest.TestCase):
  """`self.dataset(name)`: the path of a ../shared dataset; a skip when it is
  absent, a failure when $TF_FEDSCALE_REQUIRE_SHARED_DATA is set."""

  def setUp(self):
    super().setUp()
    self.cache = self.enterContext(tempfile.TemporaryDirectory())

  def dataset(self, name: str) -> str:
    path = os.path.join(DATASETS, name)
    if not os.path.isfile(os.path.join(path, 'SOURCE.md')):
      if os.environ.get(REQUIRE_SHARED_DATA_ENV):
        self.fail(f'{path} is not available, and ${REQUIRE_SHARED_DATA_ENV} requires it '
                  '(under bazel: is it in the test\'s data, @shared//:<dataset>?)')
      self.skipTest(f'{path} is not available')
    return path


class NoWorkerLeftTestCase(absltest.TestCase):
  """Every worker started during a test carries `self.marker` in its
  environment; tearDown fails the test if one is still alive 10 s later."""

  def setUp(self):
    super().setUp()
    self.marker = f'tf_fedscale_test_{uuid.uuid4().hex}'
    os.environ[MARKER_ENV] = self.marker

  def tearDown(self):
    deadline = time.monotonic() + 10
    while worker_pids_with_env(self.marker) and time.monotonic() < deadline:
      time.sleep(0.1)
    self.assertEmpty(worker_pids_with_env(self.marker),
                     'a worker outlived its test')
    del os.environ[MARKER_ENV]
    super().tearDown()


TINY_NUM_CLIENTS = 40
TINY_TASK = synthetic.build(num_clients=TINY_NUM_CLIENTS, max_examples=200)


def always_online_population(task: base.Task, compute_ms: Sequence[float]
                             ) -> population.Population:
  """`task`'s training clients, always online, client i computing at
  `compute_ms[i]` ms per sample with unlimited bandwidth."""
  n = len(task.train_data.client_ids)
  return population.Population(
      task.train_data.client_ids, task.num_train_examples,
      population.DeviceProfiles(np.asarray(compute_ms, np.float32),
                                np.full(n, np.inf, np.float32),
                                np.full(n, np.inf, np.float32)),
      availability.AvailabilityTrace.always(n),
      device_row=np.arange(n, dtype=np.int32), availability_row=np.arange(n, dtype=np.int32))


def tiny_fedavg_simulation(clients_per_round: int = 8, local_steps: int = 3,
                           evaluate: bool = False) -> simulation.Simulation:
  """FedAvg on `TINY_TASK`; every invited client finishes."""
  ids = TINY_TASK.train_data.client_ids
  pop = population.Population.build(
      ids, TINY_TASK.num_train_examples,
      population.DeviceProfiles.uniform(TINY_NUM_CLIENTS, 10.0, 1000.0, 1000.0),
      availability.AvailabilityTrace.always(TINY_NUM_CLIENTS), seed=0)
  process = tff.learning.algorithms.build_weighted_fed_avg(
      TINY_TASK.model_fn(),
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.05),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
  return simulation.Simulation(
      process, TINY_TASK.train_data, pop,
      selection.UniformSelector(clients_per_round, overcommit=1.0),
      accounting.LatencyAccountant(pop, clients_per_round=clients_per_round),
      local_work.LocalWork(batch_size=10, local_steps=local_steps), seed=0,
      evaluation=evaluation.FederatedEvaluation(
          TINY_TASK.model_fn(), TINY_TASK.test_data, ids[:6], batch_size=50)
      if evaluate else None)


def cpu_seconds(pid: int) -> float:
  """User plus system CPU seconds of process `pid` so far."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
