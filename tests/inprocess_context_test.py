"""Tests for tf_fedscale.inprocess_context: what runs here and what falls back."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale import inprocess_context
from tf_fedscale import worker_pool
from tests import cases


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


class InProcessContextTest(cases.NoWorkerLeftTestCase):

  def test_plain_tensorflow_and_map_reduce_rounds_run_here(self):
    context = inprocess_context.InProcessContext(['/device:CPU:0'], lanes_per_device=2)
    with tff.framework.get_context_stack().install(context):
      self.assertEqual(float(_double(1.5)), 3.0)
      state, total = _one_round(np.float32(1.0), [np.float32(v) for v in (1, 2, 3)])
    self.assertEqual((float(state), float(total)), (2.0, 12.0))
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


if __name__ == '__main__':
  absltest.main()
