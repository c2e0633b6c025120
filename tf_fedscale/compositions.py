"""Composes a process (or a computation) with a dataset computation, remembering the parts.

`tff.simulation.compose_dataset_computation_with_*` makes a process whose
`next` (or a computation that) takes client ids: the C++ worker then builds
each client's dataset itself. The in-process engine can do better (build
datasets in Python once, cache them, prepare the next ones while clients
train) if it knows which dataset computation and which process `next` (or
computation) a composed one is made of; `parts_of` tells it. Everything else
sees TFF's composition unchanged.

A `ClientSource` says how a client's dataset is made from its decoded
(cacheable) data: `finish(raw_dataset, arg)`, e.g. the local-work pipeline.
Only the decoded data may be cached: a pipeline that shuffles gives another
order on each pass over it (FedProx's, Mime Lite's and q-FFL's two passes),
which a cached copy of its output would not.
"""

import weakref
from collections.abc import Callable
from typing import Any, Optional

import attrs
import tensorflow as tf
import tensorflow_federated as tff


def _identity(arg: Any) -> Any:
  return arg


@attrs.frozen
class ClientSource:
  """`dataset_computation(arg)` == `finish(raw_dataset_computation(client_id(arg)), arg)`."""
  raw_dataset_computation: tff.framework.ConcreteComputation
  finish: Callable[[tf.data.Dataset, Any], tf.data.Dataset]
  client_id: Callable[[Any], Any] = _identity


@attrs.frozen
class ComposedParts:
  """A composed `next` (or computation): `next(state, [dataset_computation(a)
  for a in args])`."""
  dataset_computation: tff.framework.ConcreteComputation
  next: tff.framework.ConcreteComputation
  source: Optional[ClientSource] = None


_PARTS: 'weakref.WeakKeyDictionary[tff.Computation, ComposedParts]' = (
    weakref.WeakKeyDictionary())


def compose(dataset_computation: tff.framework.ConcreteComputation,
            process: tff.templates.IterativeProcess,
            source: Optional[ClientSource] = None) -> tff.templates.IterativeProcess:
  """`process` whose `next` takes `dataset_computation`'s arguments per client
  (`source`: how those datasets are made from cacheable decoded data)."""
  if isinstance(process, tff.learning.templates.LearningProcess):
    composed = tff.simulation.compose_dataset_computation_with_learning_process(
        dataset_computation, process)
  else:
    composed = tff.simulation.compose_dataset_computation_with_iterative_process(
        dataset_computation, process)
  _PARTS[composed.next] = ComposedParts(dataset_computation, process.next, source)
  return composed


def compose_computation(dataset_computation: tff.framework.ConcreteComputation,
                        comp: tff.Computation,
                        source: Optional[ClientSource] = None) -> tff.Computation:
  """`comp` taking `dataset_computation`'s arguments per client instead of its
  client-placed datasets (`source`: as in `compose`)."""
  composed = tff.simulation.compose_dataset_computation_with_computation(
      dataset_computation, comp)
  _PARTS[composed] = ComposedParts(dataset_computation, comp, source)
  return composed


def parts_of(comp: tff.Computation) -> Optional[ComposedParts]:
  """The parts of a `next` made by `compose` (or of `compose_computation`'s
  result), else None."""
  try:
    return _PARTS.get(comp)
  except TypeError:  # not weakly referenceable
    return None
