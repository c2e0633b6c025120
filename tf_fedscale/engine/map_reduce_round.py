"""One call of a TFF computation through its MapReduceForm, clients spread over devices.

TFF's MapReduceForm (`tff.backends.mapreduce`) splits a round into plain
TensorFlow parts: `prepare` (server state -> client input), `work` (client
data, client input -> the four client updates), `zero`/`accumulate`/`merge`/
`report` (the plain aggregate), the three secure sums and `update` (server
state, global update -> new state, server output). `MapReduceRound` runs them
as `GraphFunction`s in this process: each device gets `lanes_per_device`
threads, each with its own copy of `work` (own variables) and its own
accumulator; client k goes to lane k mod lanes, and lanes merge in a fixed
order, so a given lane count always gives the same result.

The secure sums are simulated the way TFF's own test backend does:
`federated_secure_sum_bitwidth` and `federated_secure_sum` are plain sums,
`federated_secure_modular_sum` sums the values modulo the modulus.
"""

import threading
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import graph_function

ClientLeaves = Callable[[], list[Any]]  # a client's flat `work` inputs, when needed


def num_leaves(type_spec: tff.Type) -> int:
  """Tensors (and sequences) in a value of type `type_spec`."""
  if isinstance(type_spec, tff.StructType):
    return sum(num_leaves(t) for _, t in tff.structure.iter_elements(type_spec))
  if isinstance(type_spec, tff.FederatedType):
    return num_leaves(type_spec.member)
  return 1


def _add(totals: Optional[list[np.ndarray]], values: Sequence[Any]) -> list[np.ndarray]:
  values = [np.asarray(v) for v in values]
  return values if totals is None else [t + v for t, v in zip(totals, values)]


class _Lane:
  """A thread's own `work` and `accumulate`, on one device."""

  def __init__(self, form: tff.backends.mapreduce.MapReduceForm, device: str):
    self.device = device
    self.work = graph_function.GraphFunction(form.work, device)
    self.accumulate = graph_function.GraphFunction(form.accumulate, device)
    self.zero = graph_function.GraphFunction(form.zero, device)


class MapReduceRound:
  """Runs `form` (the MapReduceForm of one computation) in this process."""

  def __init__(self, form: tff.backends.mapreduce.MapReduceForm,
               devices: Sequence[str], lanes_per_device: int = 1):
    if not devices:
      raise ValueError('MapReduceRound needs at least one device.')
    if lanes_per_device < 1:
      raise ValueError(f'lanes_per_device must be >= 1, got {lanes_per_device}.')
    self.form = form
    self.devices = list(devices)
    self._prepare = graph_function.GraphFunction(form.prepare)
    self._merge = graph_function.GraphFunction(form.merge)
    self._report = graph_function.GraphFunction(form.report)
    self._update = graph_function.GraphFunction(form.update)
    self._secure_parameters = [
        graph_function.GraphFunction(c)() for c in (
            form.secure_sum_bitwidth, form.secure_sum_max_input,
            form.secure_modular_sum_modulus)]
    self._lanes = [_Lane(form, device) for _ in range(lanes_per_device)
                   for device in self.devices]
    self._update_sizes = [num_leaves(t) for t in form.work.type_signature.result]
    self._num_state = num_leaves(form.update.type_signature.result[0])

  @property
  def num_lanes(self) -> int:
    return len(self._lanes)

  @property
  def has_secure_sums(self) -> bool:
    return any(self._update_sizes[1:])

  def _run_lane(self, lane: _Lane, clients: Sequence[ClientLeaves],
                client_input: list[Any], out: list[Any], index: int) -> None:
    try:
      with tf.device(lane.device):
        accumulator = lane.zero()
        secure = [None, None, None]
        for client in clients:
          updates = lane.work(*client(), *client_input)
          parts, start = [], 0
          for size in self._update_sizes:
            parts.append(updates[start:start + size])
            start += size
          accumulator = lane.accumulate(*accumulator, *parts[0])
          for k in range(3):
            if parts[k + 1]:
              secure[k] = _add(secure[k], parts[k + 1])
      out[index] = (accumulator, secure)
    except BaseException as e:  # pylint: disable=broad-except
      out[index] = e

  def __call__(self, state: Sequence[Any], clients: Sequence[ClientLeaves]
               ) -> tuple[list[Any], list[Any]]:
    """(new state leaves, server output leaves) for `state`'s leaves and the
    clients' `work` inputs (each a callable, called on its lane's thread)."""
    client_input = self._prepare(*state)
    lanes = self._lanes[:max(1, min(len(self._lanes), len(clients)))]
    shares = [clients[i::len(lanes)] for i in range(len(lanes))]
    out: list[Any] = [None] * len(lanes)
    if len(lanes) == 1:
      self._run_lane(lanes[0], shares[0], client_input, out, 0)
    else:
      threads = [threading.Thread(target=self._run_lane,
                                  args=(lane, share, client_input, out, i),
                                  name=f'tf_fedscale-lane-{i}')
                 for i, (lane, share) in enumerate(zip(lanes, shares))]
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join()
    for result in out:
      if isinstance(result, BaseException):
        raise result
    accumulator, secure = out[0]
    for other, other_secure in out[1:]:
      accumulator = self._merge(*accumulator, *other)
      secure = [s if o is None else _add(s, o) for s, o in zip(secure, other_secure)]
    global_update = list(self._report(*accumulator))
    for k, size in enumerate(self._update_sizes[1:]):
      if not size:
        continue
      totals = secure[k] if secure[k] is not None else [
          np.zeros_like(np.asarray(v)) for v in self._secure_parameters[k]]
      if k == 2:  # modular sum
        totals = [np.mod(t, np.asarray(m, t.dtype))
                  for t, m in zip(totals, self._secure_parameters[k])]
      global_update.extend(totals)
    result = self._update(*state, *global_update)
    return list(result[:self._num_state]), list(result[self._num_state:])

