"""Sizes of a call's argument: how many clients it carries and the bytes of the rest.

The C++ worker holds every client's output of a call until it aggregates
them, so the sub-round planner (`sharded_context`) needs the cohort size and
the bytes every client receives (the server state) of each call.
"""

from collections.abc import Mapping
from typing import Any, Optional

import attrs
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


def nbytes(value: Any) -> int:
  """Bytes of the arrays in a (nested) value: numpy, tensors, containers."""
  if isinstance(value, (np.ndarray, np.generic)):
    return int(value.nbytes)
  if isinstance(value, tf.Tensor):
    return int(value.shape.num_elements() or 0) * value.dtype.size
  if isinstance(value, (str, bytes)) or value is None:
    return 0
  if isinstance(value, (int, float, bool)):
    return 8
  if isinstance(value, tff.structure.Struct):
    return sum(nbytes(v) for _, v in tff.structure.iter_elements(value))
  if isinstance(value, Mapping):
    return sum(nbytes(v) for v in value.values())
  if isinstance(value, (list, tuple)):
    return sum(nbytes(v) for v in value)
  if attrs.has(type(value)):
    return sum(nbytes(getattr(value, f.name)) for f in attrs.fields(type(value)))
  return 0


def client_split(type_spec: tff.Type, value: Any) -> tuple[Optional[int], int]:
  """(clients in the CLIENTS-placed, per-client part of `value`, or None;
  bytes of the rest, e.g. the server state every client receives)."""
  clients, rest = [], [0]

  def walk(t, v):
    if isinstance(t, tff.StructType):
      elements = tff.structure.iter_elements(tff.structure.from_container(v))
      for (_, element), element_type in zip(elements, t):
        walk(element_type, element)
    elif (isinstance(t, tff.FederatedType) and t.placement == tff.CLIENTS
          and not t.all_equal):
      clients.append(len(v))
    else:
      rest[0] += nbytes(v)

  walk(type_spec, value)
  return (max(clients) if clients else None), rest[0]
