"""One TFF TensorFlow computation as a callable over flat tensors, in this process.

A `tff.tensorflow.computation` is a serialized TF GraphDef plus bindings that
name its parameter and result tensors. `GraphFunction` imports the graph once
into a `tf.compat.v1.wrap_function` whose arguments feed the parameter
tensors (`input_map`; pruning with `WrappedFunction.prune` fails on some
graphs, e.g. TensorList ops of unknown shape) and calls it from a
`tf.function`, so no TFF worker is involved. Five things make that faithful
and fast:

- the graph's function library reuses names (`__inference_..._695`) that this
  process may have registered with other bodies: every library function is
  renamed on import;
- computations that create variables (metric totals, Keras variables) carry an
  init op that must run before every call, or totals leak from one client to
  the next: it becomes a control input of every node that takes an input from
  its ancestry (such a node is in the root frame, or enters a loop frame; a
  node inside a lowered while-loop frame must not get inputs from the root
  frame);
- variables have fixed `shared_name`s, which other computations (or other
  copies of this one, called from other threads) use too, with other dtypes
  or shapes: every import gets names of its own;
- lookup tables keep their contents across calls, so a table initialized from
  a call's arguments would keep its first data: every table is made anonymous
  (a new one each call), as on TFF's worker;
- a node may wait on a parameter placeholder (a `^name` control input, which
  grappler's constant folding leaves, e.g. in FedBuff's secure server step):
  the wait is moved to the fed tensor, or the unfed placeholder would run and
  fail;
- calling a `WrappedFunction` directly costs about 5 ms per call more than
  calling it from inside a `tf.function`.
"""

import itertools
from collections.abc import Sequence
from typing import Any, Optional

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import computation_pb2
from tensorflow_federated.python.core.impl.utils import tensorflow_utils

from tf_fedscale.engine import client_data_cache

_import_ids = itertools.count()
SESSION_TOKEN = 'tf_fedscale_in_process'


def binding_tensor_names(binding: computation_pb2.TensorFlow.Binding) -> list[str]:
  """Flat tensor names of a binding; a sequence is its variant tensor."""
  kind = binding.WhichOneof('binding')
  if kind == 'tensor':
    return [binding.tensor.tensor_name]
  if kind == 'sequence':
    return [binding.sequence.variant_tensor_name]
  if kind == 'struct':
    return [name for element in binding.struct.element
            for name in binding_tensor_names(element)]
  return []


def _node_name(tensor_or_input: str) -> str:
  return tensor_or_input.lstrip('^').split(':')[0]


def _waited_on(graph_def: tf.compat.v1.GraphDef) -> set[str]:
  """Names of the root nodes some node has as a control input."""
  return {_node_name(i) for n in graph_def.node for i in n.input if i.startswith('^')}


def _run_init_first(graph_def: tf.compat.v1.GraphDef, init_op: str) -> None:
  """Makes every node outside `init_op`'s ancestry wait for `init_op`."""
  nodes = {n.name: n for n in graph_def.node}
  ancestry, stack = set(), [init_op]
  while stack:
    name = stack.pop()
    if name not in ancestry:
      ancestry.add(name)
      stack.extend(_node_name(i) for i in nodes[name].input)
  for node in graph_def.node:
    if (node.name not in ancestry and node.op != 'Placeholder'
        and any(_node_name(i) in ancestry for i in node.input)):
      node.input.append('^' + init_op)


# Table ops and their anonymous forms, which make a new table on every run.
_ANONYMOUS_TABLE_OPS = {
    'HashTableV2': 'AnonymousHashTable',
    'MutableHashTableV2': 'AnonymousMutableHashTable',
    'MutableHashTableOfTensorsV2': 'AnonymousMutableHashTableOfTensors',
    'MutableDenseHashTableV2': 'AnonymousMutableDenseHashTable',
}
_NAMED_TABLE_ATTRS = ('container', 'shared_name', 'use_node_name_sharing')


def _all_nodes(graph_def: tf.compat.v1.GraphDef) -> list:
  return list(graph_def.node) + [n for f in graph_def.library.function
                                 for n in f.node_def]


def _own_resources(graph_def: tf.compat.v1.GraphDef, suffix: str) -> None:
  """Tables become anonymous; other shared names get `suffix`."""
  for node in _all_nodes(graph_def):
    if node.op in _ANONYMOUS_TABLE_OPS:
      node.op = _ANONYMOUS_TABLE_OPS[node.op]
      for attr in _NAMED_TABLE_ATTRS:
        node.attr.pop(attr, None)
    elif 'shared_name' in node.attr and node.attr['shared_name'].s:
      node.attr['shared_name'].s += suffix.encode()


def _rename_library_functions(graph_def: tf.compat.v1.GraphDef, tag: str) -> None:
  """Gives every library function a name unique to this import."""
  renamed = {f.signature.name: f'{f.signature.name}_{tag}'
             for f in graph_def.library.function}
  if not renamed:
    return

  def fix(attrs) -> None:
    for value in attrs.values():
      if value.HasField('func') and value.func.name in renamed:
        value.func.name = renamed[value.func.name]
      for func in value.list.func:
        if func.name in renamed:
          func.name = renamed[func.name]

  for node in _all_nodes(graph_def):
    if node.op in renamed:
      node.op = renamed[node.op]
    fix(node.attr)
  for function in graph_def.library.function:
    function.signature.name = renamed[function.signature.name]
    fix(function.attr)
  for gradient in graph_def.library.gradient:
    gradient.function_name = renamed.get(gradient.function_name,
                                         gradient.function_name)
    gradient.gradient_func = renamed.get(gradient.gradient_func,
                                         gradient.gradient_func)


def _placeholder_spec(node) -> tf.TensorSpec:
  shape = (tf.TensorShape(node.attr['shape'].shape) if 'shape' in node.attr
           else tf.TensorShape(None))
  return tf.TensorSpec(shape, tf.dtypes.as_dtype(node.attr['dtype'].type))


def is_tensorflow(comp: tff.framework.ConcreteComputation) -> bool:
  """True if `comp` is a plain TensorFlow computation (no federated parts)."""
  proto = tff.framework.ConcreteComputation.get_proto(comp)
  return proto.WhichOneof('computation') == 'tensorflow'


class GraphFunction:
  """`comp` (a TensorFlow computation) as `f(*flat_tensors) -> list of tensors`.

  The flat order is the order of the parameter and result bindings, i.e. of
  `tff.structure.flatten` over the parameter and result types.
  """

  def __init__(self, comp: tff.framework.ConcreteComputation,
               device: Optional[str] = None):
    proto = tff.framework.ConcreteComputation.get_proto(comp)
    if proto.WhichOneof('computation') != 'tensorflow':
      raise ValueError(f'{comp.type_signature} is not a TensorFlow computation '
                       f'(it is {proto.WhichOneof("computation")!r}).')
    tensorflow = proto.tensorflow
    graph_def = tf.compat.v1.GraphDef()
    tensorflow.graph_def.Unpack(graph_def)
    if tensorflow.initialize_op:
      _run_init_first(graph_def, tensorflow.initialize_op)
    tag = f'tfs{next(_import_ids)}'
    _own_resources(graph_def, f'_{tag}')
    _rename_library_functions(graph_def, tag)
    self.type_signature = comp.type_signature
    self.input_names = binding_tensor_names(tensorflow.parameter)
    output_names = binding_tensor_names(tensorflow.result)
    token = tensorflow.session_token_tensor_name
    token_used = bool(token) and any(
        _node_name(i) == _node_name(token) for n in graph_def.node for i in n.input)

    feed_names = self.input_names + ([token] if token_used else [])
    self._token = [tf.constant(SESSION_TOKEN)] if token_used else []
    # An output that is one of the inputs passes through without TensorFlow.
    self._sources = [('input', self.input_names.index(n)) if n in self.input_names
                     else ('output', n) for n in output_names]
    fetch_names = list(dict.fromkeys(n for kind, n in self._sources
                                     if kind == 'output'))
    self._fetch_index = {n: i for i, n in enumerate(fetch_names)}
    nodes = {n.name: n for n in graph_def.node}
    specs = [_placeholder_spec(nodes[_node_name(n)]) for n in feed_names]
    self._input_dtypes = [spec.dtype for spec in specs]
    waited_on = _waited_on(graph_def)

    def import_graph(*feeds):
      input_map = dict(zip(feed_names, feeds))
      input_map.update({'^' + _node_name(n): feed for n, feed in zip(feed_names, feeds)
                        if _node_name(n) in waited_on})
      with tf.device(device):
        return tf.graph_util.import_graph_def(
            graph_def, input_map=input_map, return_elements=fetch_names, name='')

    self._function = None
    if fetch_names:
      wrapped = tf.compat.v1.wrap_function(import_graph, signature=specs)
      # Traced now: traced at first call, every import would count, in TF's
      # retracing detector (keyed by code object), as one function retraced.
      self._function = tf.function(lambda *args: wrapped(*args), autograph=False
                                   ).get_concrete_function(*specs)

  def __call__(self, *args: Any) -> list[Any]:
    if len(args) != len(self.input_names):
      raise ValueError(f'{self.type_signature} takes {len(self.input_names)} '
                       f'tensors, got {len(args)}.')
    args = [a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a, dtype)
            for a, dtype in zip(args, self._input_dtypes)]
    fetched = self._function(*args, *self._token) if self._function else []
    return [args[i] if kind == 'input' else fetched[self._fetch_index[i]]
            for kind, i in self._sources]


def dataset_variant(dataset: tf.data.Dataset) -> tf.Tensor:
  """`dataset` as the variant tensor a graph takes, read without tf.data's
  autotuning and default rewrites (`client_data_cache.single_pass`: a
  client's dataset is small and read once)."""
  return tf.data.experimental.to_variant(client_data_cache.single_pass(dataset))


def as_dataset(value: Any, type_spec: tff.SequenceType) -> tf.data.Dataset:
  """`value` as a dataset: a list of elements, which TFF accepts for a
  sequence, is made into one as TFF's own serialization does."""
  if isinstance(value, tf.data.Dataset):
    return value
  if isinstance(value, list):
    return tensorflow_utils.make_data_set_from_elements(None, value,
                                                        type_spec.element)
  raise TypeError(f'expected a tf.data.Dataset or a list for {type_spec}, got '
                  f'{type(value).__name__}.')


def flat_arguments(type_spec: Optional[tff.Type], value: Any) -> list[Any]:
  """`value`'s leaves in the order of `type_spec`'s bindings.

  Sequences (tf.data datasets) become their variant tensors (`dataset_variant`).
  """
  if type_spec is None:
    return []
  leaves = []

  def walk(t: tff.Type, v: Any) -> None:
    if isinstance(t, tff.StructType):
      elements = tff.structure.iter_elements(tff.structure.from_container(v))
      for (_, element), element_type in zip(elements, t):
        walk(element_type, element)
    elif isinstance(t, tff.FederatedType):
      walk(t.member, v)
    elif isinstance(t, tff.SequenceType):
      leaves.append(dataset_variant(as_dataset(v, t)))
    else:
      leaves.append(v)

  walk(type_spec, value)
  return leaves


def structured_result(type_spec: tff.Type, leaves: Sequence[Any]) -> Any:
  """The Python value of type `type_spec` (names and containers restored) whose
  tensor leaves are `leaves`, as numpy; a sequence is a `tf.data.Dataset`, as
  TFF's contexts return it."""
  it = iter(leaves)

  def build(t: tff.Type) -> Any:
    if isinstance(t, tff.StructType):
      return tff.structure.Struct([(name, build(element))
                                   for name, element in tff.structure.iter_elements(t)])
    if isinstance(t, tff.FederatedType):
      return build(t.member)
    value = next(it)
    if isinstance(t, tff.SequenceType):
      return tf.data.experimental.from_variant(
          value, tff.types.type_to_tf_tensor_specs(t.element))
    return value.numpy() if hasattr(value, 'numpy') else value

  return tff.types.type_to_py_container(build(type_spec), type_spec)
