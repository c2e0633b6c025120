"""Tests for tf_fedscale.execution: flags, sharded workers, sub-rounds, pinning."""

import os
import threading

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import evaluation
from tf_fedscale import execution
from tf_fedscale import placement
from tests import cases


def _train(spec, rounds=1, **kwargs):
  """Final weights, records and sub-rounds of `rounds` rounds on `spec`."""
  with execution.Execution(spec, **kwargs) as pool:
    sim = cases.tiny_fedavg_simulation(evaluate=True)
    pool.protect(sim)
    state = sim.initialize()
    records = []
    for _ in range(rounds):
      state, record = sim.run_round(state)
      records.append(record)
    subrounds = pool.context.last_subrounds  # of the last evaluation
    weights = sim.model_weights(state.process_state)
  return [np.asarray(w) for w in weights.trainable], records, subrounds


def _environ(pid):
  with open(f'/proc/{pid}/environ', 'rb') as f:
    return dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)


def _allowed_cpus(pid):
  with open(f'/proc/{pid}/status') as f:
    for line in f:
      if line.startswith('Cpus_allowed_list:'):
        return line.split(':', 1)[1].strip()
  return None


class ParsingTest(absltest.TestCase):

  def test_parse_execution(self):
    self.assertEqual(placement.parse_execution('local'),
                     placement.ExecutionSpec('local'))
    self.assertEqual(placement.parse_execution('workers:3').num_workers, 3)
    remote = placement.parse_execution('remote:localhost:5000,10.0.0.2:5001')
    self.assertEqual(remote.addresses, ('localhost:5000', '10.0.0.2:5001'))
    self.assertEqual(str(remote), 'remote:localhost:5000,10.0.0.2:5001')
    for bad in ('', 'gpu', 'workers:0', 'workers:two', 'remote:', 'remote:host',
                'remote:host:0', 'remote:h:1,h:1', 'remote:h:99999'):
      with self.assertRaises(ValueError, msg=bad):
        placement.parse_execution(bad)

  def test_placements(self):
    gpus = placement.plan_placements(2, ('GPU:0', 'GPU:1'), [0, 1])
    self.assertEqual([p.env for p in gpus], [{'CUDA_VISIBLE_DEVICES': '0'},
                                             {'CUDA_VISIBLE_DEVICES': '1'}])
    self.assertEqual([p.cpus for p in gpus], [None, None])
    shares = placement.plan_placements(2, (), [0, 1, 2, 3])
    self.assertEqual([p.cpus for p in shares], [(0, 1), (2, 3)])
    self.assertEqual([p.device for p in shares], ['CPU:0-1', 'CPU:2-3'])
    self.assertEqual([p.cpus for p in placement.plan_placements(3, (), [0, 1])],
                     [(0,), (1,), (0,)])
    self.assertIsNone(placement.plan_placements(1, (), [0, 1])[0].cpus)
    cpu = placement.plan_placements(1, ('CPU:1',), [0, 1])[0]
    self.assertEqual((cpu.cpus, cpu.env), ((1,), {'CUDA_VISIBLE_DEVICES': ''}))
    with self.assertRaisesRegex(ValueError, 'one device per worker'):
      placement.plan_placements(2, ('GPU:0',), [0, 1])
    with self.assertRaisesRegex(ValueError, 'not available'):
      placement.plan_placements(1, ('CPU:7',), [0, 1])

  def test_validate_flags(self):
    self.assertIsNone(placement.validate_flags('workers:2', 'GPU:0,GPU:1'))
    self.assertEqual(placement.validate_flags('workers:-1', '')[0], 'execution')
    self.assertEqual(placement.validate_flags('workers:2', 'TPU:0,TPU:1')[0],
                     'worker_devices')
    self.assertEqual(placement.validate_flags('remote:h:1', 'GPU:0')[0],
                     'worker_devices')
    self.assertEqual(placement.validate_flags('local', 'GPU:0,GPU:1')[0],
                     'worker_devices')


class ExecutionTest(cases.NoWorkerLeftTestCase):

  def test_sharded_equals_single_worker(self):
    single, single_records, calls = _train('local')
    self.assertEqual(calls, 1)
    for spec, kwargs, subrounds in (('workers:2', {}, 2),
                                    ('local', {'clients_per_subround': 4}, 2)):
      sharded, sharded_records, calls = _train(spec, **kwargs)
      self.assertEqual(calls, subrounds)  # 6 eval clients
      for a, b in zip(single, sharded):
        np.testing.assert_allclose(a, b, atol=1e-5)
      for a, b in zip(single_records, sharded_records):
        self.assertEqual(a['completed'], b['completed'])
        self.assertAlmostEqual(a['train_loss'], b['train_loss'], places=5)
        self.assertAlmostEqual(a['eval_loss'], b['eval_loss'], places=5)

  def test_subround_sizing(self):
    context = execution.ShardedContext.__new__(execution.ShardedContext)
    context._contexts = [None, None]  # pylint: disable=protected-access
    context.clients_per_subround = 0
    # Auto: ~2 GB per call at 4 bytes per client per state byte.
    self.assertEqual(context.subrounds(100, 5_000_000), 2)
    self.assertEqual(context.subrounds(1000, 5_000_000), 10)
    self.assertEqual(context.subrounds(1000, 2_000), 2)
    self.assertEqual(context.subrounds(1, 2_000), 1)
    context.clients_per_subround = 30
    self.assertEqual(context.subrounds(100, 2_000), 4)
    process = cases.tiny_fedavg_simulation()._process  # pylint: disable=protected-access
    with execution.Execution('local'):
      state = process.initialize()
    clients, state_bytes = execution.client_split(
        process.next.type_signature.parameter,
        tff.structure.Struct.unnamed(state, ['1', '2', '3']))
    self.assertEqual(clients, 3)
    self.assertGreater(state_bytes, 4 * (60 * 10 + 10))  # the model at least

  def test_sub_rounds_overlap(self):
    # Both workers compute at once (each async context has its own loop).
    with execution.Execution('workers:2') as pool:
      sim = cases.tiny_fedavg_simulation(clients_per_round=8, local_steps=300)
      state = sim.initialize()
      state, _ = sim.run_round(state)  # compile
      pids = [w.pid for w in pool.workers]
      busy = [0, 0]
      done = threading.Event()

      def sample():
        last = [cases.cpu_seconds(p) for p in pids]
        while not done.wait(0.05):
          now = [cases.cpu_seconds(p) for p in pids]
          if all(n > l for n, l in zip(now, last)):
            busy[0] += 1
          busy[1] += 1
          last = now

      sampler = threading.Thread(target=sample)
      sampler.start()
      sim.run_round(state)
      done.set()
      sampler.join()
    self.assertGreater(busy[0], 0, f'the workers never computed together: {busy}')

  def test_workers_pinned_to_devices(self):
    # The pip worker is CPU-only: CUDA_VISIBLE_DEVICES naming absent GPUs is
    # ignored, so GPU pinning is checked in the environment each worker got.
    with execution.Execution('workers:2', worker_devices='GPU:0,GPU:1') as pool:
      envs = [_environ(w.pid) for w in pool.workers]
      self.assertEqual([e.get(b'CUDA_VISIBLE_DEVICES') for e in envs],
                       [b'0', b'1'])
      self.assertEqual([e.get(cases.MARKER_ENV.encode()) for e in envs],
                       [self.marker.encode()] * 2)

      @tff.tensorflow.computation(tf.int32)
      def add_one(x):
        return x + 1

      self.assertEqual(add_one(1), 2)
    cpus = sorted(os.sched_getaffinity(0))
    with execution.Execution('workers:2') as pool:
      allowed = [_allowed_cpus(w.pid) for w in pool.workers]
      expected = [p.cpus for p in placement.plan_placements(2, (), cpus)]
      self.assertEqual(
          allowed, [f'{c[0]}' if len(c) == 1 else f'{c[0]}-{c[-1]}' for c in expected])
      if 'MALLOC_ARENA_MAX' not in os.environ:  # one arena per core of the share
        self.assertEqual(
            [_environ(w.pid).get(b'MALLOC_ARENA_MAX') for w in pool.workers],
            [str(max(2, len(c))).encode() for c in expected])

  def test_non_worker_errors_are_not_retried(self):
    with execution.Execution('local') as pool:
      calls = []

      def fail():
        calls.append(1)
        raise ValueError('a bug, not a worker')

      with self.assertRaisesRegex(ValueError, 'a bug'):
        pool.call(fail)
      self.assertLen(calls, 1)
      self.assertEmpty(pool.events)

    @tff.tensorflow.computation(tf.int32)
    def add_one(x):
      return x + 1

    with self.assertRaisesRegex(RuntimeError, 'No tf_fedscale worker serves'):
      add_one(1)


if __name__ == '__main__':
  absltest.main()
