"""Tests for tf_fedscale.engine.inprocess_context: what runs here and what falls back."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tests import cases
from tf_fedscale.engine import execution
from tf_fedscale.engine import inprocess_context
from tf_fedscale.engine import interface
from tf_fedscale.engine import worker_pool


@tff.tensorflow.computation(np.float32)
def _double(x):
  return x * 2


@tff.federated_computation(tff.FederatedType(np.float32, tff.SERVER),
                           tff.FederatedType(np.float32, tff.CLIENTS))
def _two_aggregations(state, values):
  """Aggregates, broadcasts the mean and aggregates again: no MapReduceForm."""
  mean = tff.federated_broadcast(tff.federated_mean(values))
  spread = tff.federated_sum(tff.federated_map(
      tff.tensorflow.computation(lambda v, m: (v - m) ** 2), (values, mean)))
  return tff.federated_map(_double, state), spread


@tff.federated_computation(tff.FederatedType(np.float32, tff.SERVER),
                           tff.FederatedType(np.float32, tff.CLIENTS))
def _one_round(state, values):
  return (tff.federated_map(_double, state),
          tff.federated_sum(tff.federated_map(_double, values)))


@tff.tensorflow.computation(np.float32)
def _float_total(x):
  total = tf.Variable(0.0, name='total')
  with tf.control_dependencies([total.assign_add(x)]):
    return total.read_value()


@tff.tensorflow.computation(np.int32)
def _int_total(x):
  total = tf.Variable(0, name='total')  # the same shared name, another dtype
  with tf.control_dependencies([total.assign_add(x)]):
    return total.read_value()


@tff.tensorflow.computation(tff.SequenceType(np.float32))
def _sequence_sum(dataset):
  return dataset.reduce(np.float32(0), lambda a, x: a + x)


@tff.federated_computation(tff.FederatedType(np.float32, tff.SERVER),
                           tff.FederatedType(tff.SequenceType(np.float32), tff.CLIENTS))
def _sum_of_client_sequences(state, data):
  return state, tff.federated_sum(tff.federated_map(_sequence_sum, data))


@tff.tensorflow.computation(np.int64)
def _range(n):
  return tf.data.Dataset.range(n)


@tff.tensorflow.computation(tff.TensorType(np.str_, [None]),
                            tff.TensorType(np.int64, [None]), np.str_)
def _lookup(keys, values, key):
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)
  return table.lookup(key)


class InProcessContextTest(cases.NoWorkerLeftTestCase):

  def test_plain_tensorflow_and_map_reduce_rounds_run_here(self):
    context = inprocess_context.InProcessContext(['/device:CPU:0'], lanes_per_device=2)
    with tff.framework.get_context_stack().install(context):
      self.assertEqual(float(_double(1.5)), 3.0)
      state, total = _one_round(np.float32(1.0), [np.float32(v) for v in (1, 2, 3)])
    self.assertEqual((float(state), float(total)), (2.0, 12.0))
    self.assertEmpty(context.fallback_reasons)
    context.close()

  def test_tff_code_as_on_tff_contexts(self):
    """What TFF's own contexts accept, each once a crash or a wrong number here."""
    context = inprocess_context.InProcessContext(['/device:CPU:0'], lanes_per_device=2)
    with tff.framework.get_context_stack().install(context):
      # Variables of one shared name in two computations: each its own, fresh
      # every call.
      self.assertEqual(float(_float_total(1.5)), 1.5)
      self.assertEqual(int(_int_total(2)), 2)
      self.assertEqual(float(_float_total(1.5)), 1.5)
      # Client data given as Python lists.
      self.assertEqual(float(_sequence_sum([1.0, 2.0])), 3.0)
      state, total = _sum_of_client_sequences(np.float32(1.0), [[1.0, 2.0], [3.0]])
      self.assertEqual((float(state), float(total)), (1.0, 6.0))
      self.assertEqual(float(_sequence_sum([])), 0.0)
      # A computation returning a dataset.
      result = _range(np.int64(3))
      self.assertIsInstance(result, tf.data.Dataset)
      self.assertEqual(list(result.as_numpy_iterator()), [0, 1, 2])
      # A table initialized from each call's arguments: the call's data.
      self.assertEqual(int(_lookup(['a', 'b'], [1, 2], 'b')), 2)
      self.assertEqual(int(_lookup(['a', 'b'], [5, 6], 'b')), 6)
    self.assertEmpty(context.fallback_reasons)
    context.close()

  def test_without_a_map_reduce_form(self):
    strict = inprocess_context.InProcessContext(['/device:CPU:0'])
    with tff.framework.get_context_stack().install(strict):
      with self.assertRaisesRegex(inprocess_context.NoMapReduceFormError,
                                  'no MapReduceForm'):
        _two_aggregations(np.float32(1.0), [np.float32(1.0), np.float32(3.0)])
    strict.close()
    with worker_pool.WorkerPool('local') as pool:
      lenient = inprocess_context.InProcessContext(['/device:CPU:0'],
                                                   fallback=lambda: pool.context)
      with tff.framework.get_context_stack().install(lenient):
        with self.assertLogs(level='WARNING') as logs:
          state, spread = _two_aggregations(np.float32(1.0),
                                            [np.float32(1.0), np.float32(3.0)])
      self.assertEqual((float(state), float(spread)), (2.0, 2.0))
      self.assertLen(lenient.fallback_reasons, 1)
      self.assertIn('runs on a TFF worker', logs.output[0])
      lenient.close()


class InProcessEngineFallbackTest(cases.NoWorkerLeftTestCase):
  """What `--execution=auto` relies on: the engine it picks hands a process
  without a MapReduceForm to a worker it starts on first need, and stops it."""

  def test_auto_falls_back_to_a_worker_it_starts_once_and_stops(self):
    engine = execution.build('auto')
    self.assertIsInstance(engine, interface.Engine)
    with engine:
      self.assertIs(tff.framework.get_context_stack().current, engine.context)
      self.assertEqual(engine.stats(), interface.EngineStats())  # no worker yet
      self.assertEqual(float(_double(1.5)), 3.0)  # runs here: still no worker
      self.assertEmpty(engine.stats().worker_pids)
      for _ in range(2):
        state, spread = engine.call(_two_aggregations, np.float32(1.0),
                                    [np.float32(1.0), np.float32(3.0)])
        self.assertEqual((float(state), float(spread)), (2.0, 2.0))
      stats = engine.stats()
      self.assertLen(stats.worker_pids, 1)  # one worker, started once
      self.assertLen(stats.events, 1)
      self.assertIn('started a TFF worker', stats.events[0])
      self.assertIsNone(stats.subrounds)
      # The worker's context serves the fallback; the engine's stays installed.
      self.assertIs(tff.framework.get_context_stack().current, engine.context)
      worker_pid = stats.worker_pids[0]
    self.assertFalse(os.path.exists(f'/proc/{worker_pid}'))

  def test_inprocess_asked_for_refuses_without_starting_a_worker(self):
    with execution.build('inprocess') as engine:
      with self.assertRaisesRegex(inprocess_context.NoMapReduceFormError,
                                  'cannot run in this process'):
        engine.call(_two_aggregations, np.float32(1.0), [np.float32(1.0)])
      self.assertEqual(engine.stats(), interface.EngineStats())


if __name__ == '__main__':
  absltest.main()
