"""Tests for tf_fedscale.engine.execution: the engine an experiment config asks for."""

from absl.testing import absltest
import ml_collections

from tf_fedscale.engine import execution
from tf_fedscale.engine import inprocess_engine
from tf_fedscale.engine import worker_pool


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
    for mode in ('sync', 'async'):  # both modes run in-process
      engine = execution.from_config(
          ml_collections.ConfigDict(dict(max_concurrent_clients=-1, mode=mode)))
      self.assertIsInstance(engine, inprocess_engine.InProcessEngine, msg=mode)
      self.assertEqual((str(engine.spec), engine.strict, engine.recycle_growth),
                       ('inprocess', False, execution.DEFAULT_RECYCLE_GROWTH))
    self.assertTrue(execution.build('inprocess').strict)

  def test_auto_chooses_local_where_inprocess_cannot_serve(self):
    config = ml_collections.ConfigDict(dict(max_concurrent_clients=-1,
                                            clients_per_subround=40))
    pool = execution.from_config(config)
    self.assertIsInstance(pool, worker_pool.WorkerPool)
    self.assertEqual(str(pool.spec), 'local')
    pool = execution.build('auto', worker_devices='CPU:0,CPU:1')
    self.assertEqual(str(pool.spec), 'workers:2')

  def test_inprocess(self):
    engine = execution.build('inprocess:2', max_concurrent_clients=3, data_cache_mb=64)
    self.assertIsInstance(engine, inprocess_engine.InProcessEngine)
    self.assertEqual((str(engine.spec), engine.max_concurrent_clients,
                      engine.data_cache_bytes), ('inprocess:2', 3, 64 << 20))
    self.assertGreater(execution.build('inprocess').data_cache_bytes, 0)  # sized to RAM
    for kwargs, flag in (({'worker_devices': 'GPU:0'}, 'worker_devices'),
                         ({'clients_per_subround': 5}, 'clients_per_subround')):
      with self.assertRaisesRegex(ValueError, f'^--{flag}: '):
        execution.build('inprocess', **kwargs)
    with self.assertRaisesRegex(ValueError, '^--data_cache_mb: '):
      execution.build('local', data_cache_mb=10)


if __name__ == '__main__':
  absltest.main()
