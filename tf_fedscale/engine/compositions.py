"""Composes a process (or a computation) with a dataset computation, carrying the parts.

`tff.simulation.compose_dataset_computation_with_*` makes a process whose
`next` (or a computation that) takes client ids: the C++ worker then builds
each client's dataset itself. The in-process engine can do better (build
datasets in Python once, cache them, prepare the next ones while clients
train) if it knows which dataset computation and which process `next` (or
computation) a composed one is made of. So the composed computation is a
`ComposedComputation`: TFF's composition, unchanged for every other context,
that carries its parts (`parts_of`) to whichever engine it is called on.

A `ClientSource` says how a client's dataset is made from its decoded
(cacheable) data: `finish(raw_dataset, arg)`, e.g. the local-work pipeline.
Only the decoded data may be cached: a pipeline that shuffles gives another
order on each pass over it (FedProx's, Mime Lite's and q-FFL's two passes),
which a cached copy of its output would not.
"""

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


class ComposedComputation(tff.framework.ConcreteComputation):
  """TFF's composed computation, carrying the parts it was made of."""

  def __init__(self, composed: tff.framework.ConcreteComputation,
               parts: ComposedParts):
    super().__init__(
        computation_proto=tff.framework.ConcreteComputation.get_proto(composed),
        context_stack=tff.framework.get_context_stack(),
        annotated_type=composed.type_signature)
    self.parts = parts


def compose(dataset_computation: tff.framework.ConcreteComputation,
            process: tff.templates.IterativeProcess,
            source: Optional[ClientSource] = None) -> tff.templates.IterativeProcess:
  """`process` whose `next` takes `dataset_computation`'s arguments per client
  (`source`: how those datasets are made from cacheable decoded data)."""
  composed = tff.simulation.compose_dataset_computation_with_iterative_process(
      dataset_computation, process)
  next_fn = ComposedComputation(
      composed.next, ComposedParts(dataset_computation, process.next, source))
  if isinstance(process, tff.learning.templates.LearningProcess):
    return tff.learning.templates.LearningProcess(
        initialize_fn=composed.initialize, next_fn=next_fn,
        get_model_weights=process.get_model_weights,
        set_model_weights=process.set_model_weights,
        get_hparams_fn=process.get_hparams, set_hparams_fn=process.set_hparams)
  return tff.templates.IterativeProcess(composed.initialize, next_fn)


def compose_computation(dataset_computation: tff.framework.ConcreteComputation,
                        comp: tff.Computation,
                        source: Optional[ClientSource] = None) -> ComposedComputation:
  """`comp` taking `dataset_computation`'s arguments per client instead of its
  client-placed datasets (`source`: as in `compose`)."""
  return ComposedComputation(
      tff.simulation.compose_dataset_computation_with_computation(
          dataset_computation, comp),
      ComposedParts(dataset_computation, comp, source))


def parts_of(comp: tff.Computation) -> Optional[ComposedParts]:
  """The parts of a computation made by `compose` or `compose_computation`,
  else None."""
  return comp.parts if isinstance(comp, ComposedComputation) else None
