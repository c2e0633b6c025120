"""A TFF context over one or more workers that splits large cohorts into sub-rounds.

- sub-rounds: TFF's C++ worker keeps every client's output of a call until it
  aggregates (memory grows with the cohort: 1.9 GB for 100 FEMNIST-CNN
  clients), so a cohort larger than `clients_per_subround` (default: sized
  from the model, about 2 GB per call) runs as several mergeable sub-rounds,
  also on one worker; with several workers, at least one per worker;
- each worker's async context runs on its own event-loop thread. TFF's
  `RemoteExecutor` makes blocking gRPC calls from coroutines, so async contexts
  sharing the mergeable context's single loop run their sub-rounds one after
  the other (measured: the second worker idles until the first finishes).

Computations without per-client arguments, or that
`compile_to_mergeable_comp_form` rejects, run whole on the first worker.
Sub-round partial sums are merged in completion order, so several workers give
the single-worker weights up to float rounding; one worker is deterministic.
"""

import asyncio
from collections.abc import Sequence
import threading
from typing import Any

from absl import logging
import tensorflow_federated as tff

from tf_fedscale.engine import cohort_bytes
from tf_fedscale.engine import runtime
from tf_fedscale.engine import worker_errors

# Auto sub-round size: the C++ worker holds every client's output of a call
# until it aggregates them (measured: about 3.5x the model per client on the
# FEMNIST CNN, 1.9 GB for 100 clients), so a call gets at most this much.
AUTO_SUBROUND_BYTES = 2 << 30
BYTES_PER_CLIENT_PER_STATE_BYTE = 4


class OwnLoopContext(tff.framework.AsyncContext):
  """Runs an async context's calls on an event loop of its own (a thread).

  `RemoteExecutor` blocks its event loop during each gRPC call; giving every
  worker its own loop lets the mergeable context's sub-rounds overlap.
  """

  def __init__(self, inner: tff.framework.AsyncContext, name: str):
    self._inner = inner
    self._loop = asyncio.new_event_loop()
    self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                    name=f'tff-worker-{name}')
    self._thread.start()

  async def invoke(self, comp, arg):
    future = asyncio.run_coroutine_threadsafe(self._inner.invoke(comp, arg),
                                              self._loop)
    return await asyncio.wrap_future(future)

  def close(self) -> None:
    self._loop.call_soon_threadsafe(self._loop.stop)


def subrounds(num_clients: int, state_bytes: int, num_workers: int,
              clients_per_subround: int = 0) -> int:
  """How many sub-rounds a call on `num_clients` clients runs as.

  At most `clients_per_subround` clients each (0: as many as fit
  AUTO_SUBROUND_BYTES), and at least one per worker.
  """
  per = clients_per_subround
  if per <= 0:
    per = max(1, AUTO_SUBROUND_BYTES // max(
        1, BYTES_PER_CLIENT_PER_STATE_BYTE * state_bytes))
  return max(-(-num_clients // per), min(num_workers, num_clients))


class ShardedContext(tff.framework.SyncContext):
  """Runs each call on the workers, splitting large cohorts into sub-rounds.

  A computation whose argument holds per-client values runs whole on the first
  worker when its clients fit one sub-round; otherwise TFF's
  `MergeableCompExecutionContext` runs it as sub-rounds (at least one per
  worker, each of at most `clients_per_subround` clients) over the workers,
  dynamically balanced, and merges their partial aggregates. Anything else
  (plain TensorFlow, no clients) runs on the first worker.
  """

  def __init__(self, connections: Sequence[runtime.Connection],
               clients_per_subround: int = 0):
    if not connections:
      raise ValueError('ShardedContext needs at least one worker.')
    self._contexts = [OwnLoopContext(c.context(asynchronous=True), c.address)
                      for c in connections]
    self._single = connections[0].context(asynchronous=False)
    self.clients_per_subround = clients_per_subround
    self._forms: dict[Any, Any] = {}
    self._mergeable: dict[int, tff.framework.MergeableCompExecutionContext] = {}
    self.last_subrounds = 1  # of the latest call (for tests and logs)

  def _mergeable_form(self, comp):
    if comp not in self._forms:
      try:
        self._forms[comp] = tff.backends.native.compile_to_mergeable_comp_form(comp)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('execution: %s cannot be split into sub-rounds (%s: %s); '
                        'it runs whole on the first worker.',
                        comp.type_signature, type(e).__name__,
                        worker_errors.first_line(e))
        self._forms[comp] = None
    return self._forms[comp]

  def invoke(self, comp, arg):
    parameter = getattr(comp.type_signature, 'parameter', None)
    count = 1
    if parameter is not None and arg is not None:
      num_clients, state_bytes = cohort_bytes.client_split(parameter, arg)
      if num_clients:
        count = subrounds(num_clients, state_bytes, len(self._contexts),
                          self.clients_per_subround)
    form = self._mergeable_form(comp) if count > 1 else None
    if form is None:
      self.last_subrounds = 1
      return self._single.invoke(comp, arg)
    if count not in self._mergeable:
      self._mergeable[count] = tff.framework.MergeableCompExecutionContext(
          async_contexts=self._contexts, num_subrounds=count)
    self.last_subrounds = count
    return self._mergeable[count].invoke(form, arg)

  def close(self) -> None:
    for context in self._contexts:
      context.close()
