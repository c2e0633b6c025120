"""Tests for tf_fedscale.engine.sharded_context: sub-rounds over one or more workers."""

import threading

from absl.testing import absltest
import numpy as np

from tests import cases
from tf_fedscale.engine import sharded_context
from tf_fedscale.engine import worker_pool


def _train(spec, rounds=1, **kwargs):
  """Final weights, records and sub-rounds of `rounds` rounds on `spec`."""
  with worker_pool.WorkerPool(spec, **kwargs) as pool:
    sim = cases.tiny_fedavg_simulation(evaluate=True)
    records = []
    state = sim.run(sim.initialize(), rounds, records.append, engine=pool)
    records = records[1:]  # round 0 only evaluates
    subrounds = pool.context.last_subrounds  # of the last evaluation
    weights = sim.model_weights(state.process_state)
  return [np.asarray(w) for w in weights.trainable], records, subrounds



class SubroundsTest(absltest.TestCase):

  def test_subround_sizing(self):
    # Auto: ~2 GB per call at 4 bytes per client per state byte.
    self.assertEqual(sharded_context.subrounds(100, 5_000_000, 2), 2)
    self.assertEqual(sharded_context.subrounds(1000, 5_000_000, 2), 10)
    self.assertEqual(sharded_context.subrounds(1000, 2_000, 2), 2)
    self.assertEqual(sharded_context.subrounds(1, 2_000, 2), 1)
    self.assertEqual(sharded_context.subrounds(100, 2_000, 2, 30), 4)
    self.assertEqual(sharded_context.subrounds(100, 2_000, 1), 1)


class ShardedContextTest(cases.NoWorkerLeftTestCase):

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

  def test_sub_rounds_overlap(self):
    # Both workers compute at once (each async context has its own loop).
    with worker_pool.WorkerPool('workers:2') as pool:
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

if __name__ == '__main__':
  absltest.main()
