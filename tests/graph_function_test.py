"""Tests for tf_fedscale.engine.graph_function: TFF TensorFlow computations in this process."""

import collections

from absl.testing import absltest
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import graph_function


class GraphFunctionTest(absltest.TestCase):

  def test_structures_in_and_out(self):
    @tff.tensorflow.computation(np.float32, collections.OrderedDict(
        a=np.int32, b=tff.TensorType(np.float32, [2])))
    def fn(x, pair):
      return collections.OrderedDict(
          total=x + tf.reduce_sum(pair['b']), count=pair['a'] * 2, same=x)

    graph = graph_function.GraphFunction(fn)
    arg = [np.float32(1.5), collections.OrderedDict(a=np.int32(3), b=np.ones(2, np.float32))]
    leaves = graph(*graph_function.flat_arguments(fn.type_signature.parameter, arg))
    result = graph_function.structured_result(fn.type_signature.result, leaves)
    self.assertEqual(list(result), ['total', 'count', 'same'])
    self.assertEqual((float(result['total']), int(result['count']), float(result['same'])),
                     (3.5, 6, 1.5))

  def test_sequence_argument(self):
    @tff.tensorflow.computation(tff.SequenceType(np.int64))
    def total(dataset):
      return dataset.reduce(np.int64(0), lambda a, b: a + b)

    graph = graph_function.GraphFunction(total)
    leaves = graph_function.flat_arguments(total.type_signature.parameter,
                                           tf.data.Dataset.range(5))
    self.assertEqual(int(graph(*leaves)[0]), 10)

  def test_variables_start_fresh_every_call(self):
    # A computation with variables (its init op) must not carry them over:
    # each call counts only its own dataset, in every copy, on every thread.
    @tff.tensorflow.computation(tff.SequenceType(np.float32))
    def count(dataset):
      seen = tf.Variable(0.0)
      with tf.control_dependencies([seen.assign_add(
          dataset.reduce(np.float32(0), lambda a, x: a + x))]):
        return seen.read_value()

    first = graph_function.GraphFunction(count)
    second = graph_function.GraphFunction(count)
    data = tf.data.Dataset.from_tensor_slices([1.0, 2.0])
    variant = graph_function.flat_arguments(count.type_signature.parameter, data)
    self.assertEqual([float(first(*variant)[0]) for _ in range(3)], [3.0] * 3)
    self.assertEqual(float(second(*variant)[0]), 3.0)

  def test_a_node_waiting_on_a_parameter(self):
    # Grappler's constant folding leaves such waits (`^arg` control inputs).
    @tff.tensorflow.computation(np.float32)
    def two(x):
      with tf.control_dependencies([x.op]):
        return tf.constant(2.0)

    proto = tff.framework.ConcreteComputation.get_proto(two)
    graph_def = tf.compat.v1.GraphDef()
    proto.tensorflow.graph_def.Unpack(graph_def)
    self.assertTrue(any(i.startswith('^') for n in graph_def.node for i in n.input))
    self.assertEqual(float(graph_function.GraphFunction(two)(np.float32(1.0))[0]), 2.0)

  def test_wrong_arguments(self):
    @tff.tensorflow.computation(np.int32)
    def add_one(x):
      return x + 1

    graph = graph_function.GraphFunction(add_one)
    with self.assertRaisesRegex(ValueError, 'takes 1 tensors, got 2'):
      graph(1, 2)
    self.assertTrue(graph_function.is_tensorflow(add_one))

    @tff.federated_computation(tff.FederatedType(np.int32, tff.SERVER))
    def on_server(x):
      return x

    self.assertFalse(graph_function.is_tensorflow(on_server))
    with self.assertRaisesRegex(ValueError, 'not a TensorFlow computation'):
      graph_function.GraphFunction(on_server)


if __name__ == '__main__':
  absltest.main()
