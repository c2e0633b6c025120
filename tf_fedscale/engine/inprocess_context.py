"""A TFF context that runs computations in this Python process, as TF graphs.

What runs where:
- a plain TensorFlow computation (`get_model_weights`, `set_model_weights`,
  dataset computations): a `GraphFunction`;
- a federated computation without parameter (a process's `initialize`): its
  state initialization (`tff.backends.mapreduce.get_state_initialization_computation`);
- a federated computation over client data (a process's `next`): its
  MapReduceForm (`tff.backends.mapreduce.get_map_reduce_form_for_computation`)
  through `MapReduceRound`, clients spread over the devices; when the
  computation was made by `compositions.compose`, the clients' datasets are
  built here from the dataset computation (their decoded data kept in the
  `ClientDataCache` when the composition names a `ClientSource`) and
  prepared ahead by a `Prefetcher`;
- anything else: the `fallback` context (a managed TFF worker), with one logged
  line saying why; without a fallback, NoMapReduceFormError says why.
"""

from collections.abc import Callable, Sequence
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import client_data_cache
from tf_fedscale.engine import compositions
from tf_fedscale.engine import graph_function
from tf_fedscale.engine import map_reduce_round
from tf_fedscale.engine import worker_errors


class NoMapReduceFormError(ValueError):
  """`comp` has no MapReduceForm (it cannot run in this process)."""


def map_reduce_form(comp: tff.Computation) -> tff.backends.mapreduce.MapReduceForm:
  """`comp`'s MapReduceForm, or NoMapReduceFormError saying why not."""
  try:
    return tff.backends.mapreduce.get_map_reduce_form_for_computation(comp)
  except Exception as e:  # pylint: disable=broad-except
    raise NoMapReduceFormError(
        f'{type(e).__name__}: {worker_errors.first_line(e)}') from e


def _client_key(leaves: Sequence[Any]) -> tuple:
  key = []
  for leaf in leaves:
    value = np.asarray(leaf.numpy() if hasattr(leaf, 'numpy') else leaf)
    key.append((value.dtype.str, value.shape, value.tobytes()))
  return tuple(key)


class InProcessContext(tff.framework.SyncContext):
  """Runs TFF computations here; see the module docstring."""

  def __init__(self, devices: Sequence[str], lanes_per_device: int = 1,
               data_cache: Optional[client_data_cache.ClientDataCache] = None,
               prefetch_depth: int = 0,
               fallback: Optional[Callable[[], tff.framework.SyncContext]] = None):
    self.devices = list(devices)
    self.lanes_per_device = lanes_per_device
    self.data_cache = (data_cache if data_cache is not None
                       else client_data_cache.ClientDataCache(0))
    self._prefetcher = client_data_cache.Prefetcher(
        prefetch_depth or 2 * len(self.devices) * lanes_per_device)
    self._fallback = fallback
    self._graphs: dict[Any, graph_function.GraphFunction] = {}
    self._rounds: dict[Any, Any] = {}  # comp -> MapReduceRound or the reason not
    self.fallback_reasons: dict[str, str] = {}  # type signature -> why

  def close(self) -> None:
    self._prefetcher.close()

  def _graph(self, comp) -> graph_function.GraphFunction:
    if comp not in self._graphs:
      self._graphs[comp] = graph_function.GraphFunction(comp)
    return self._graphs[comp]

  def round_runner(self, comp) -> map_reduce_round.MapReduceRound:
    """The round runner for `comp` (NoMapReduceFormError if it has none)."""
    if comp not in self._rounds:
      try:
        self._rounds[comp] = map_reduce_round.MapReduceRound(
            map_reduce_form(comp), self.devices, self.lanes_per_device)
      except NoMapReduceFormError as e:
        self._rounds[comp] = e
    found = self._rounds[comp]
    if isinstance(found, NoMapReduceFormError):
      raise found
    return found

  def _run_fallback(self, comp, arg, reason: str):
    signature = str(comp.type_signature)
    if self._fallback is None:
      raise NoMapReduceFormError(f'{signature} cannot run in this process ({reason}).')
    if signature not in self.fallback_reasons:
      self.fallback_reasons[signature] = reason
      logging.warning('execution: %s runs on a TFF worker, not in this process: %s',
                      signature, reason)
    return self._fallback().invoke(comp, arg)

  def invoke(self, comp, arg):
    signature = comp.type_signature
    if graph_function.is_tensorflow(comp):
      graph = self._graph(comp)
      leaves = graph(*graph_function.flat_arguments(signature.parameter, arg))
      return graph_function.structured_result(signature.result, leaves)
    if signature.parameter is None:
      if comp not in self._graphs:
        try:
          init = tff.backends.mapreduce.get_state_initialization_computation(comp)
        except Exception as e:  # pylint: disable=broad-except
          return self._run_fallback(
              comp, arg, f'no state initialization: {worker_errors.first_line(e)}')
        self._graphs[comp] = graph_function.GraphFunction(init)
      return graph_function.structured_result(signature.result, self._graphs[comp]())
    parts = compositions.parts_of(comp)
    try:
      runner = self.round_runner(parts.next if parts else comp)
    except NoMapReduceFormError as e:
      return self._run_fallback(comp, arg, f'no MapReduceForm ({e})')
    return self._run_round(runner, signature, arg, parts)

  def _dataset_builder(self, comp: tff.framework.ConcreteComputation
                       ) -> Callable[[Any], Callable[[], tf.data.Dataset]]:
    """arg -> a function building `comp(arg)` (a dataset) here."""
    graph = self._graph(comp)
    signature = comp.type_signature
    element_spec = tff.types.type_to_tf_tensor_specs(signature.result.element)

    def builder(arg):
      leaves = graph_function.flat_arguments(signature.parameter, arg)
      return lambda: tf.data.experimental.from_variant(graph(*leaves)[0], element_spec)

    return builder

  def _client_builders(self, parameter: tff.Type, client_args: Sequence[Any],
                       parts: Optional[compositions.ComposedParts]
                       ) -> list[Callable[[], list[Any]]]:
    """Per client, a function giving its flat `work` data inputs."""
    if parts is None:
      return [lambda a=a: graph_function.flat_arguments(parameter, a)
              for a in client_args]
    if parts.source is None:  # nothing cacheable: the dataset as composed
      build = self._dataset_builder(parts.dataset_computation)
      return [lambda a=a: [graph_function.dataset_variant(build(a)())]
              for a in client_args]
    source = parts.source
    build_raw = self._dataset_builder(source.raw_dataset_computation)

    def builder(arg):
      client_id = source.client_id(arg)
      key = (source.raw_dataset_computation, _client_key([client_id]))
      return lambda: [graph_function.dataset_variant(source.finish(
          self.data_cache.get(key, build_raw(client_id)), arg))]

    return [builder(a) for a in client_args]

  def _run_round(self, runner: map_reduce_round.MapReduceRound,
                 signature: tff.FunctionType, arg: Any,
                 parts: Optional[compositions.ComposedParts]) -> Any:
    state_type, clients_type = signature.parameter
    state, client_args = (v for _, v in tff.structure.iter_elements(
        tff.structure.from_container(arg)))
    builders = self._client_builders(clients_type.member, list(client_args), parts)
    getters, finish = self._prefetcher.start(builders)
    try:
      new_state, output = runner(
          graph_function.flat_arguments(state_type, state), getters)
    finally:
      finish()
    return graph_function.structured_result(signature.result, new_state + output)
