"""Tests for tf_fedscale.engine.placement: parsing --execution, planning devices."""

from absl.testing import absltest

from tf_fedscale.engine import placement


class ParsingTest(absltest.TestCase):

  def test_parse_execution(self):
    self.assertEqual(placement.parse_execution('local'),
                     placement.ExecutionSpec('local'))
    self.assertEqual(placement.parse_execution('workers:3').num_workers, 3)
    remote = placement.parse_execution('remote:localhost:5000,10.0.0.2:5001')
    self.assertEqual(remote.addresses, ('localhost:5000', '10.0.0.2:5001'))
    self.assertEqual(str(remote), 'remote:localhost:5000,10.0.0.2:5001')
    self.assertEqual(placement.parse_execution('inprocess'),
                     placement.ExecutionSpec('inprocess', num_workers=0))
    self.assertEqual(str(placement.parse_execution('inprocess:2')), 'inprocess:2')
    self.assertEqual(str(placement.parse_execution('inprocess')), 'inprocess')
    for bad in ('', 'gpu', 'workers:0', 'inprocess:0', 'inprocess:', 'inprocess:x', 'workers:two', 'remote:', 'remote:host',
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
    self.assertIsNone(placement.validate_flags('inprocess:2', '', 0, 512))
    self.assertEqual(placement.validate_flags('inprocess', 'GPU:0')[0], 'worker_devices')
    self.assertEqual(placement.validate_flags('inprocess', '', 10)[0],
                     'clients_per_subround')
    self.assertEqual(placement.validate_flags('workers:2', '', 0, 512)[0],
                     'data_cache_mb')
    self.assertIsNone(placement.validate_flags('auto', '', 0, 512))
    self.assertIsNone(placement.validate_flags('auto', 'GPU:0,GPU:1'))
    flag, problem = placement.validate_flags('auto', '', 50, 512)
    self.assertEqual(flag, 'data_cache_mb')
    self.assertIn('auto chose local: --clients_per_subround', problem)

  def test_resolve_auto(self):
    auto = placement.parse_execution('auto')
    self.assertEqual(str(auto), 'auto')
    spec, reason = placement.resolve(auto)
    self.assertEqual(spec, placement.ExecutionSpec('inprocess', num_workers=0))
    self.assertIn('faster', reason)
    cases = ((dict(worker_devices=('GPU:0',)), 'local', '--worker_devices'),
             (dict(worker_devices=('GPU:0', 'GPU:1')), 'workers:2', '--worker_devices'),
             (dict(clients_per_subround=50), 'local', '--clients_per_subround'))
    for kwargs, engine, why in cases:
      spec, reason = placement.resolve(auto, **kwargs)
      self.assertEqual(str(spec), engine, msg=kwargs)
      self.assertIn(why, reason)
    explicit = placement.parse_execution('workers:2')
    self.assertEqual(placement.resolve(explicit, clients_per_subround=50), (explicit, ''))

if __name__ == '__main__':
  absltest.main()
