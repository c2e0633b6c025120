"""Which errors mean a TFF worker died or became unreachable.

The pool (`worker_pool`) restarts or drops a worker for these and runs the
failed step again; any other error is a bug and is raised at once.
"""

from collections.abc import Iterator

import grpc
import tensorflow_federated as tff

from tf_fedscale.engine import runtime

_TRANSIENT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)


def _chain(error: BaseException) -> Iterator[BaseException]:
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def is_worker_error(error: BaseException) -> bool:
  """True for errors that a dying or unreachable worker raises."""
  for e in _chain(error):
    if isinstance(e, (runtime.WorkerUnavailableError,
                      tff.framework.RetryableError)):
      return True
    if isinstance(e, grpc.Call) and e.code() in _TRANSIENT_CODES:
      return True
  return False


def first_line(error: BaseException) -> str:
  """The first line of an error's message (at most 300 characters), for logs."""
  text = str(error).strip().splitlines()
  return text[0][:300] if text else ''
