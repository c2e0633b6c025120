"""Tests for tf_fedscale.engine.cohort_bytes: clients and bytes of a call's argument."""

import collections

from absl.testing import absltest
import attrs
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import cohort_bytes


@attrs.define
class _State:
  weights: np.ndarray
  step: int


class NbytesTest(absltest.TestCase):

  def test_nested_values(self):
    value = collections.OrderedDict(
        a=np.zeros((3, 4), np.float32), b=[tf.zeros([5], tf.float64), 'text', None],
        c=_State(np.zeros(2, np.int64), 7),
        d=tff.structure.Struct.named(x=np.zeros(10, np.int8)))
    self.assertEqual(cohort_bytes.nbytes(value), 48 + 40 + 16 + 8 + 10)


class ClientSplitTest(absltest.TestCase):

  def test_clients_and_the_rest(self):
    parameter = tff.StructType([
        ('state', tff.FederatedType(tff.TensorType(np.float32, [60, 10]), tff.SERVER)),
        ('data', tff.FederatedType(tff.SequenceType(np.int32), tff.CLIENTS)),
        ('lr', tff.FederatedType(np.float32, tff.CLIENTS, all_equal=True))])
    value = [np.zeros((60, 10), np.float32), ['1', '2', '3'], np.float32(0.1)]
    self.assertEqual(cohort_bytes.client_split(parameter, value), (3, 2400 + 4))

  def test_no_clients(self):
    self.assertEqual(cohort_bytes.client_split(tff.TensorType(np.int32), np.int32(1)),
                     (None, 4))


if __name__ == '__main__':
  absltest.main()
