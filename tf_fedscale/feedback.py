"""Per-client training feedback out of the TFF computation, and per-client local work.

Oort needs each participant's training loss, and TFF 0.87 has no
`federated_collect`: every client-placed value reaches the server through an
aggregation. The approach here keeps every `tff.learning` algorithm intact:

1. The simulation hands each client a *task* instead of a bare client id:
   `<client_id, slot, amount>`. `slot` is the client's position in the
   round's cohort (0..K-1) and `amount` its number of local steps (or
   epochs). A dataset computation (`ClientTasks.dataset_computation`, composed
   with the process by `tff.simulation.compose_dataset_computation_with_learning_process`)
   builds the client's data from its id on the TFF worker, applies the local
   work with that amount, and, when losses are wanted, tags every batch with
   the slot: elements become `{'batch': <the usual batch>, 'slot': int32}`.
2. `LossReportingModel` wraps the task's `VariableModel`. Its `forward_pass`
   runs the wrapped model on `batch` unchanged and also accumulates, for the
   losses of *every* batch of the local work (at the weights each step really
   trained with), the sum of squared per-example losses and the example
   count into two local-variable vectors of length K, at position `slot`
   (a one-hot add). They are reported as two ordinary metrics,
   `client_loss_sq_sum` and `client_loss_count`.
3. The algorithms' default metrics aggregator (`sum_then_finalize`) sums
   metrics over clients; since each client writes only its own slot, the sum
   *is* the per-client vector. The server-side metrics therefore carry every
   participant's loss, aligned with the order of the client tasks, and
   `ClientTasks.losses` reads them out.

So the losses come from the same forward passes that train the model (no
second pass over the data), any `tff.learning` builder (FedAvg, FedProx,
FedSGD, Mime Lite, the adaptive optimizers, q-FFL here) works unchanged with
the wrapped `model_fn`, and the cost is 2K floats of metrics per client. When
no selector asks for losses, nothing is wrapped and the user's process runs
exactly as given (with per-client amounts only when a hook chooses them).
"""

import collections
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import compositions
from tf_fedscale import local_work as local_work_lib

SQ_SUM_METRIC = 'client_loss_sq_sum'
COUNT_METRIC = 'client_loss_count'

# `(batch, predictions) -> per-example losses [batch_size]`.
PerExampleLossFn = Callable[[Any, tf.Tensor], tf.Tensor]

CLIENT_TASK_TYPE = tff.StructType([
    ('client_id', tff.TensorType(np.str_)),
    ('slot', tff.TensorType(np.int32)),
    ('amount', tff.TensorType(np.int32)),
])


def keras_per_example_loss(loss_fn: Callable[[], tf.keras.losses.Loss]
                           ) -> PerExampleLossFn:
  """Per-example losses of a Keras loss, for `(x, y)` or `{'x', 'y'}` batches."""

  def per_example(batch, predictions):
    y = batch['y'] if isinstance(batch, collections.abc.Mapping) else batch[1]
    loss = loss_fn()
    values = loss.call(y, predictions)  # unreduced
    values = tf.reshape(tf.cast(values, tf.float32), [tf.shape(values)[0], -1])
    return tf.reduce_mean(values, axis=1)

  return per_example


class LossReportingModel(tff.learning.models.VariableModel):
  """A `VariableModel` that also reports per-client squared-loss sums (see module doc).

  Expects batches `{'batch': inner_batch, 'slot': int32 scalar}`; the weights,
  predictions, loss and metrics of the wrapped model are unchanged.
  """

  def __init__(self, inner: tff.learning.models.VariableModel,
               per_example_loss: PerExampleLossFn, num_slots: int):
    if num_slots < 1:
      raise ValueError(f'num_slots must be >= 1, got {num_slots}.')
    self._inner = inner
    self._per_example_loss = per_example_loss
    self._num_slots = num_slots
    self._sq_sum = tf.Variable(tf.zeros([num_slots]), trainable=False,
                               name=SQ_SUM_METRIC)
    self._count = tf.Variable(tf.zeros([num_slots]), trainable=False,
                              name=COUNT_METRIC)

  @property
  def trainable_variables(self):
    return self._inner.trainable_variables

  @property
  def non_trainable_variables(self):
    return self._inner.non_trainable_variables

  @property
  def local_variables(self):
    return list(self._inner.local_variables) + [self._sq_sum, self._count]

  @property
  def input_spec(self):
    return collections.OrderedDict(
        batch=self._inner.input_spec, slot=tf.TensorSpec([], tf.int32))

  def forward_pass(self, batch_input, training=True):
    output = self._inner.forward_pass(batch_input['batch'], training=training)
    losses = self._per_example_loss(batch_input['batch'], output.predictions)
    one_hot = tf.one_hot(batch_input['slot'], self._num_slots, dtype=tf.float32)
    self._sq_sum.assign_add(one_hot * tf.reduce_sum(tf.square(losses)))
    self._count.assign_add(one_hot * tf.cast(tf.size(losses), tf.float32))
    return output

  def predict_on_batch(self, batch_input, training=True):
    return self._inner.predict_on_batch(batch_input, training=training)

  def report_local_unfinalized_metrics(self):
    metrics = collections.OrderedDict(self._inner.report_local_unfinalized_metrics())
    metrics[SQ_SUM_METRIC] = [self._sq_sum.read_value()]
    metrics[COUNT_METRIC] = [self._count.read_value()]
    return metrics

  def metric_finalizers(self):
    finalizers = collections.OrderedDict(self._inner.metric_finalizers())
    finalizers[SQ_SUM_METRIC] = lambda values: values[0]
    finalizers[COUNT_METRIC] = lambda values: values[0]
    return finalizers

  def reset_metrics(self):
    self._inner.reset_metrics()
    self._sq_sum.assign(tf.zeros_like(self._sq_sum))
    self._count.assign(tf.zeros_like(self._count))


def loss_reporting_model_fn(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    per_example_loss: PerExampleLossFn, num_slots: int,
) -> Callable[[], LossReportingModel]:
  """`model_fn` wrapped so the process reports per-client losses (K = num_slots)."""
  return lambda: LossReportingModel(model_fn(), per_example_loss, num_slots)


def _find_tensor_type(type_spec: Any, name: str) -> Optional[tff.TensorType]:
  """The tensor type named `name` anywhere inside a TFF type, or None."""
  if isinstance(type_spec, tff.FederatedType):
    return _find_tensor_type(type_spec.member, name)
  if isinstance(type_spec, tff.StructType):
    for element_name, element in tff.structure.iter_elements(type_spec):
      if element_name == name and isinstance(element, tff.TensorType):
        return element
      found = _find_tensor_type(element, name)
      if found is not None:
        return found
  return None


def reported_loss_slots(process: tff.templates.IterativeProcess) -> int:
  """K if `process` was built with `LossReportingModel`, else 0."""
  found = _find_tensor_type(process.next.type_signature.result, SQ_SUM_METRIC)
  if found is None or len(found.shape) != 1:
    return 0
  return int(found.shape[0])


def _find_value(structure: Any, name: str) -> Any:
  if isinstance(structure, collections.abc.Mapping):
    if name in structure:
      return structure[name]
    values = structure.values()
  elif isinstance(structure, (list, tuple)):
    values = structure
  else:
    return None
  for value in values:
    found = _find_value(value, name)
    if found is not None:
      return found
  return None


class ClientTasks:
  """Builds each round's client tasks and the dataset computation that runs them.

  `loss_slots` K > 0 tags batches with the client's slot for a process built
  with `LossReportingModel(num_slots=K)`; 0 keeps the plain batches (for an
  unmodified process whose clients get per-client amounts of local work).
  """

  def __init__(self, train_data: tff.simulation.datasets.ClientData,
               local_work: local_work_lib.LocalWork, loss_slots: int = 0):
    self.local_work = local_work
    self.loss_slots = loss_slots
    dataset_fn = train_data.serializable_dataset_fn

    @tff.tensorflow.computation(CLIENT_TASK_TYPE)
    def dataset_computation(task):
      return self._task_dataset(dataset_fn(task.client_id), task.amount, task.slot)

    self.dataset_computation = dataset_computation
    # For the in-process engine: the same datasets from cacheable decoded data.
    self.source = compositions.ClientSource(
        train_data.dataset_computation,
        lambda raw, task: self._task_dataset(raw, task['amount'], task['slot']),
        client_id=lambda task: task['client_id'])

  def _task_dataset(self, raw: tf.data.Dataset, amount: Any, slot: Any
                    ) -> tf.data.Dataset:
    """A client's raw data as its task trains on it (batches tagged with `slot`)."""
    dataset = self.local_work.preprocess(raw, amount)
    if self.loss_slots:
      dataset = dataset.map(lambda *batch: collections.OrderedDict(
          batch=batch[0] if len(batch) == 1 else batch, slot=slot))
    return dataset

  def arguments(self, client_ids: Sequence[str],
                amounts: Optional[np.ndarray] = None) -> list[Any]:
    """The tasks for clients in this order (their slots are their positions)."""
    if self.loss_slots and len(client_ids) > self.loss_slots:
      raise ValueError(f'{len(client_ids)} clients trained but the process reports '
                       f'losses for {self.loss_slots}; build it with more slots.')
    if amounts is None:
      amounts = np.full(len(client_ids), self.local_work.amount)
    return [collections.OrderedDict(client_id=c, slot=np.int32(i), amount=np.int32(a))
            for i, (c, a) in enumerate(zip(client_ids, amounts))]

  def losses(self, round_metrics: Any, num_clients: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(sum of squared losses, examples) of the first `num_clients` slots."""
    sq_sum = _find_value(round_metrics, SQ_SUM_METRIC)
    count = _find_value(round_metrics, COUNT_METRIC)
    if sq_sum is None or count is None:
      return np.full(num_clients, np.nan), np.zeros(num_clients)
    return (np.asarray(sq_sum, np.float64)[:num_clients],
            np.asarray(count, np.float64)[:num_clients])

  def round_losses(self, round_metrics: Any, trained: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`losses` spread over all invited clients; `trained` marks who got a task.

    The trained clients received slots 0, 1, ... in their order here.
    """
    trained = np.asarray(trained, bool)
    sq_sum, count = self.losses(round_metrics, int(trained.sum()))
    all_sq_sum, all_count = np.full(len(trained), np.nan), np.zeros(len(trained))
    all_sq_sum[trained], all_count[trained] = sq_sum, count
    return all_sq_sum, all_count
