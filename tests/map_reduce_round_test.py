"""Tests for tf_fedscale.engine.map_reduce_round: one call of a MapReduceForm here."""

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import graph_function
from tf_fedscale.engine import map_reduce_round


@tff.federated_computation(tff.FederatedType(np.float32, tff.SERVER),
                           tff.FederatedType(tff.SequenceType(np.float32), tff.CLIENTS))
def _sum_of_client_sums(state, datasets):
  sums = tff.federated_map(tff.tensorflow.computation(
      lambda d: d.reduce(np.float32(0), lambda a, x: a + x)), datasets)
  return (tff.federated_map(tff.tensorflow.computation(lambda s: s + 1), state),
          tff.federated_sum(sums))


class MapReduceRoundTest(absltest.TestCase):

  def test_lanes_give_the_same_result(self):
    form = tff.backends.mapreduce.get_map_reduce_form_for_computation(_sum_of_client_sums)
    clients = [tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.float32))
               for n in range(1, 8)]
    getters = [lambda d=d: graph_function.flat_arguments(
        tff.SequenceType(np.float32), d) for d in clients]
    results = []
    for lanes in (1, 3):
      runner = map_reduce_round.MapReduceRound(form, ['/device:CPU:0'], lanes)
      self.assertEqual(runner.num_lanes, lanes)
      self.assertFalse(runner.has_secure_sums)
      state, output = runner([np.float32(1.0)], getters)
      results.append((float(state[0]), float(output[0])))
    expected = sum(n * (n - 1) / 2 for n in range(1, 8))
    self.assertEqual(results, [(2.0, expected), (2.0, expected)])

  def test_num_leaves(self):
    self.assertEqual(map_reduce_round.num_leaves(tff.StructType([
        ('a', np.float32), ('b', tff.StructType([np.int32, tff.SequenceType(np.int32)]))])), 3)
    with self.assertRaisesRegex(ValueError, 'lanes_per_device'):
      map_reduce_round.MapReduceRound(
          tff.backends.mapreduce.get_map_reduce_form_for_computation(_sum_of_client_sums),
          ['/device:CPU:0'], 0)


if __name__ == '__main__':
  absltest.main()
