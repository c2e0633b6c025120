"""Tests for tf_fedscale.execution: the engine an experiment config asks for."""

from absl.testing import absltest
import ml_collections
import tensorflow_federated as tff

from tf_fedscale import execution
from tf_fedscale import worker_pool


class FromConfigTest(absltest.TestCase):

  def test_config_fields_reach_the_pool(self):
    config = ml_collections.ConfigDict(dict(
        execution='workers:2', worker_devices='GPU:0,GPU:1', max_concurrent_clients=4,
        clients_per_subround=30, worker_recycle_growth=0.25))
    pool = execution.from_config(config)  # not started: no worker runs
    self.assertIsInstance(pool, worker_pool.WorkerPool)
    self.assertEqual((str(pool.spec), pool.worker_devices), ('workers:2', ('GPU:0', 'GPU:1')))
    self.assertEqual((pool.max_concurrent_clients, pool.clients_per_subround,
                      pool.recycle_growth), (4, 30, 0.25))
    self.assertEqual([p.env for p in pool.placements],
                     [{'CUDA_VISIBLE_DEVICES': '0'}, {'CUDA_VISIBLE_DEVICES': '1'}])

  def test_defaults(self):
    pool = execution.from_config(ml_collections.ConfigDict(dict(max_concurrent_clients=-1)))
    self.assertEqual((str(pool.spec), pool.clients_per_subround, pool.recycle_growth),
                     ('local', 0, execution.DEFAULT_RECYCLE_GROWTH))


  def test_loop_implementation(self):
    loops = tff.learning.LoopImplementation
    self.assertEqual(execution.loop_implementation(), loops.DATASET_REDUCE)
    self.assertEqual(execution.loop_implementation(('GPU:0',)), loops.DATASET_REDUCE)
    self.assertEqual(execution.loop_implementation(('GPU:0', 'GPU:1')),
                     loops.DATASET_ITERATOR)


if __name__ == '__main__':
  absltest.main()
