"""Worker failure: a worker killed mid-round is restarted (or dropped), the
round is called again with the same state, the run goes on, and the log says
what happened."""

import os
import signal
import threading
import time
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow_federated as tff

from tests import cases
from tf_fedscale import asynchronous
from tf_fedscale.engine import memory_recycling
from tf_fedscale.engine import worker_pool
from tf_fedscale import seeding
from tf_fedscale import selection


class RecoveryTest(cases.NoWorkerLeftTestCase):

  def test_worker_killed_mid_round_is_restarted_and_round_retried(self):
    with worker_pool.WorkerPool('workers:2') as pool:
      sim = cases.tiny_fedavg_simulation(clients_per_round=8, local_steps=400)
      state = sim.run(sim.initialize(), 1, engine=pool)
      pids = [w.pid for w in pool.workers]
      start_cpu = [cases.cpu_seconds(pid) for pid in pids]
      killed = []
      finished = threading.Event()

      def kill_when_busy():
        # SIGKILL whichever worker first computes 0.2 s into round 2 (on a busy
        # machine one worker may get every sub-round).
        while not finished.is_set():
          try:
            for i, pid in enumerate(pids):
              if cases.cpu_seconds(pid) - start_cpu[i] > 0.2:
                os.kill(pid, signal.SIGKILL)
                killed.append(i)
                return
          except OSError:
            return
          time.sleep(0.01)

      killer = threading.Thread(target=kill_when_busy)
      killer.start()
      before = state
      with self.assertLogs(level='WARNING') as logs:
        state, second = pool.call(sim.run_round, state, description='round 2')
      finished.set()
      killer.join()
      self.assertLen(killed, 1, 'round 2 ended before the kill')
      victim, victim_pid = killed[0], pids[killed[0]]
      self.assertEqual(state.round_num, 2)
      self.assertEqual(second.metrics['completed'], 8)
      self.assertTrue(np.isfinite(second.metrics['train_loss']))
      # The retried round is the round: calling it again from the same state
      # (the selector state included) gives the same clients and clock.
      again_state, again = sim.run_round(before)
      self.assertEqual([r[1] for r in again.client_rows],
                       [r[1] for r in second.client_rows])
      self.assertEqual(again_state.virtual_time_s, state.virtual_time_s)
      self.assertLen(pool.workers, 2)
      self.assertNotEqual(pool.workers[victim].pid, victim_pid)
      self.assertEqual(pool.workers[victim].restarts, 1)
      text = '\n'.join(logs.output)
      self.assertIn(f'pid {victim_pid}', text)
      self.assertIn('restarted it as', text)
      self.assertIn('retrying round 2', text)
      state, third = sim.run_round(state)  # the restarted worker serves
      self.assertEqual(third.metrics['completed'], 8)

  def test_local_worker_dropped_after_max_restarts(self):
    with worker_pool.WorkerPool('workers:2', max_restarts=0) as pool:
      sim = cases.tiny_fedavg_simulation()
      state = sim.initialize()
      pool.workers[0].stop()
      records = []
      sim.run(state, 1, records.append, engine=pool)
      self.assertEqual(records[-1]['completed'], 8)
      self.assertLen(pool.workers, 1)
      self.assertTrue(any('dropped it from the pool' in e for e in pool.events))

  def test_worker_killed_while_being_restarted_gets_every_restart(self):
    with worker_pool.WorkerPool('local', max_restarts=3) as pool:
      sim = cases.tiny_fedavg_simulation()
      state = sim.initialize()
      worker = pool.workers[0]
      restart = worker.restart
      killed = []

      def restart_and_die(failure: bool = True) -> None:
        restart(failure)
        if len(killed) < 2:   # the first two restarts die before serving
          killed.append(worker.pid)
          os.kill(worker.pid, signal.SIGKILL)
          worker._process.wait()  # pylint: disable=protected-access

      worker.restart = restart_and_die
      worker.stop()
      state, record = pool.call(sim.run_round, state, description='round 1')
      self.assertEqual(record.metrics['completed'], 8)
      self.assertLen(killed, 2)
      self.assertEqual(worker.restarts, 3)
      self.assertEqual(sum('recovering again' in e for e in pool.events), 2)
      self.assertIn('(restart 3 of 3)', '\n'.join(pool.events))

  def test_async_training_survives_a_dead_worker(self):

    def fedbuff():
      sim = cases.tiny_fedavg_simulation()
      return asynchronous.AsyncSimulation(
          cases.TINY_TASK.model_fn(), tff.learning.optimizers.build_sgdm(0.05),
          tff.learning.optimizers.build_sgdm(1.0), cases.TINY_TASK.train_data,
          sim.population, selection.UniformSelector(4), sim.accountant, sim.local_work,
          asynchronous.AsyncConfig(max_concurrency=4, buffer_size=2, max_staleness=3),
          seed=0, initial_model_weights=seeding.initial_model_weights(
              cases.TINY_TASK.keras_model_fn, 0))

    with worker_pool.WorkerPool('local') as pool:
      reference = fedbuff()
      expected = reference.run(reference.initialize(), 4, engine=pool)
      survivor = fedbuff()
      state = survivor.run(survivor.initialize(), 2, engine=pool)
      dead_pid = pool.workers[0].pid
      pool.workers[0].stop()
      state = survivor.run(state, 4, engine=pool)
      self.assertNotEqual(pool.workers[0].pid, dead_pid)
      self.assertTrue(any('restarted it as' in e for e in pool.events))
      self.assertTrue(any(e.startswith('retrying round 3') for e in pool.events))
    for a, b in zip(state.process_state['trainable'], expected.process_state['trainable']):
      np.testing.assert_array_equal(a, b)

  def test_grown_worker_is_recycled_between_rounds(self):
    fake_rss = iter(range(100, 10_000, 10))  # grows 10 bytes per look
    with mock.patch.object(memory_recycling, 'RECYCLE_WINDOW', 2), mock.patch.object(
        memory_recycling, 'rss_bytes', lambda pid, field='VmRSS': next(fake_rss)):
      with worker_pool.WorkerPool('local', recycle_growth=0.15) as pool:
        sim = cases.tiny_fedavg_simulation()
        first_pid = pool.workers[0].pid
        # Baseline 100, 110 after rounds 1 and 2; then 120 is 9 % over: kept.
        state = sim.run(sim.initialize(), 3, engine=pool)
        self.assertEqual((pool.recycles, pool.workers[0].pid), (0, first_pid))
        state = sim.run(state, 4, engine=pool)  # 130 is 18 % over 110
        self.assertEqual(pool.recycles, 1)
        self.assertEqual([r.pid for r in pool.retired], [first_pid])
        self.assertGreater(pool.retired[0].cpu_seconds, 0)
        self.assertNotEqual(pool.workers[0].pid, first_pid)
        self.assertEqual(pool.workers[0].restarts, 0)  # not a failure
        records = []
        state = sim.run(state, 5, records.append, engine=pool)  # the fresh worker serves
        self.assertEqual((state.round_num, records[-1]['completed']), (5, 8))
        self.assertEmpty(pool.events)


if __name__ == '__main__':
  absltest.main()
