"""Tests for tf_fedscale.engine.worker_errors: which errors mean a lost worker."""

from absl.testing import absltest
import grpc
import tensorflow_federated as tff

from tf_fedscale.engine import runtime
from tf_fedscale.engine import worker_errors


class _RpcError(grpc.RpcError, grpc.Call):
  """A gRPC call error with a status code (what a channel raises)."""

  def __init__(self, code: grpc.StatusCode):
    super().__init__()
    self._code = code

  def code(self):
    return self._code

  def details(self):
    return ''

  def initial_metadata(self):
    return None

  def trailing_metadata(self):
    return None

  def is_active(self):
    return False

  def time_remaining(self):
    return None

  def cancel(self):
    return False

  def add_callback(self, callback):
    return False


class WorkerErrorsTest(absltest.TestCase):

  def test_worker_errors(self):
    self.assertTrue(worker_errors.is_worker_error(
        runtime.WorkerUnavailableError('localhost:1', 'exited')))
    self.assertTrue(worker_errors.is_worker_error(tff.framework.RetryableError()))
    self.assertTrue(worker_errors.is_worker_error(
        _RpcError(grpc.StatusCode.UNAVAILABLE)))
    try:
      try:
        raise _RpcError(grpc.StatusCode.CANCELLED)
      except grpc.RpcError as e:
        raise RuntimeError('wrapped') from e
    except RuntimeError as wrapped:
      self.assertTrue(worker_errors.is_worker_error(wrapped))

  def test_other_errors(self):
    self.assertFalse(worker_errors.is_worker_error(ValueError('a bug')))
    self.assertFalse(worker_errors.is_worker_error(
        _RpcError(grpc.StatusCode.INVALID_ARGUMENT)))

  def test_first_line(self):
    self.assertEqual(worker_errors.first_line(ValueError('one\ntwo')), 'one')
    self.assertEqual(worker_errors.first_line(ValueError('')), '')
    self.assertLen(worker_errors.first_line(ValueError('x' * 500)), 300)


if __name__ == '__main__':
  absltest.main()
