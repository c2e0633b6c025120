"""q-FFL (q-FedAvg): fair resource allocation in federated learning.

Li, Sanjabi, Beirami and Smith, "Fair Resource Allocation in Federated
Learning", ICLR 2020, Algorithm 2 (q-FedAvg). q-FFL minimizes
sum_k p_k / (q + 1) * F_k(w)^(q+1): q = 0 is FedAvg's objective, larger q puts
more weight on clients with a high loss, making accuracy more uniform across
clients.

One round, from global weights w:
- client k computes its loss F_k(w) on its local data (a forward pass before
  training), runs its local work with SGD at rate eta to get w_k, and forms
  dw_k = L (w - w_k) with L = 1 / eta, then
      Delta_k = F_k(w)^q dw_k,
      h_k = q F_k(w)^(q-1) ||dw_k||^2 + L F_k(w)^q;
- the server steps w <- w - sum_k Delta_k / sum_k h_k.

Built from TFF's templates (`tff.learning.templates.compose_learning_process`):
a broadcast distributor, the q-FFL `ClientWorkProcess` below, a *weighted*
mean aggregator and `build_apply_optimizer_finalizer` with SGD. Each client
sends update Delta_k / h_k with weight h_k, so the weighted mean is exactly
sum Delta_k / sum h_k; the finalizer applies it with the server learning rate
(1.0 in the paper). Any weighted `tff.aggregators` factory (compression,
clipping, secure sum) can replace the mean; an unweighted one (DP) cannot.

Metrics are the model's training metrics summed over clients, like FedAvg;
the pre-training loss pass resets them, so only training batches count (which
keeps `tf_fedscale.feedback`'s per-client losses exact).
"""

import collections
from collections.abc import Callable
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

DEFAULT_Q = 1.0  # the paper's setting for its Synthetic experiments


def _client_update_fn(model_fn, q: float, client_lr: float):
  """The q-FFL client computation as a `tf.function`."""
  model = model_fn()
  optimizer = tff.learning.optimizers.build_sgdm(learning_rate=client_lr)
  lipschitz = 1.0 / client_lr

  @tf.function
  def client_update(initial_weights, data):
    weights = tff.learning.models.ModelWeights.from_model(model)
    tf.nest.map_structure(lambda v, t: v.assign(t), weights, initial_weights)

    # F_k(w): example-weighted mean loss at the received weights.
    loss_sum, examples = tf.constant(0.0), tf.constant(0.0)
    for batch in data:
      output = model.forward_pass(batch, training=False)
      n = tf.cast(output.num_examples, tf.float32)
      loss_sum += output.loss * n
      examples += n
    model.reset_metrics()  # metrics count training batches only
    loss = loss_sum / tf.maximum(examples, 1.0) + 1e-10

    trainable = tuple(weights.trainable)
    state = optimizer.initialize(
        tuple(tf.TensorSpec(v.shape, v.dtype) for v in trainable))
    for batch in data:
      with tf.GradientTape() as tape:
        output = model.forward_pass(batch, training=True)
      grads = tape.gradient(output.loss, trainable)
      state, new = optimizer.next(state, tuple(v.read_value() for v in trainable),
                                  grads)
      for v, t in zip(trainable, new):
        v.assign(t)

    delta_w = tf.nest.map_structure(
        lambda a, b: lipschitz * (a - b), tuple(initial_weights.trainable),
        tuple(v.read_value() for v in trainable))
    norm_sq = tf.add_n([tf.reduce_sum(tf.square(d)) for d in delta_w])
    loss_q = tf.pow(loss, q)
    h = q * tf.pow(loss, q - 1.0) * norm_sq + lipschitz * loss_q
    update = tf.nest.map_structure(lambda d: loss_q * d / h, delta_w)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(u)) for u in update])
    finite = tf.logical_and(finite, tf.math.is_finite(h))
    usable = tf.logical_and(finite, examples > 0)
    update = tf.nest.map_structure(
        lambda u: tf.where(usable, u, tf.zeros_like(u)), update)
    weight = tf.where(usable, h, 0.0)
    return (tff.learning.templates.ClientResult(update=update, update_weight=weight),
            model.report_local_unfinalized_metrics())

  return client_update


def build_qffl_client_work(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    q: float, client_lr: float,
) -> tff.learning.templates.ClientWorkProcess:
  """The q-FFL `ClientWorkProcess` (stateless)."""
  with tf.Graph().as_default():
    model = model_fn()
    metrics_aggregation_fn = tff.learning.metrics.sum_then_finalize(
        model.metric_finalizers())
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
  weights_type = tff.learning.models.weights_type_from_model(model)

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.tensorflow.computation(weights_type, data_type)
  def client_update_computation(initial_weights, dataset):
    return _client_update_fn(model_fn, q, client_lr)(initial_weights, dataset)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    client_result, model_outputs = tff.federated_map(
        client_update_computation, (weights, client_data))
    measurements = tff.federated_zip(collections.OrderedDict(
        train=metrics_aggregation_fn(model_outputs)))
    return tff.templates.MeasuredProcessOutput(state, client_result, measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_qffl(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_lr: float,
    server_lr: float = 1.0,
    q: float = DEFAULT_Q,
    model_aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """A q-FedAvg `LearningProcess` (see the module docstring)."""
  if q < 0:
    raise ValueError(f'q must be >= 0, got {q}.')
  if not client_lr > 0:
    raise ValueError(f'client_lr must be positive, got {client_lr}.')
  if model_aggregator is None:
    model_aggregator = tff.aggregators.MeanFactory()
  if not isinstance(model_aggregator, tff.aggregators.WeightedAggregationFactory):
    raise TypeError('q-FFL needs a weighted aggregator (it sends h_k as the '
                    f'weight); got {type(model_aggregator).__name__}.')

  @tff.tensorflow.computation
  def initial_model_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  weights_type = initial_model_weights_fn.type_signature.result
  return tff.learning.templates.compose_learning_process(
      initial_model_weights_fn,
      tff.learning.templates.build_broadcast_process(weights_type),
      build_qffl_client_work(model_fn, q, client_lr),
      model_aggregator.create(weights_type.trainable, tff.TensorType(np.float32)),
      tff.learning.templates.build_apply_optimizer_finalizer(
          tff.learning.optimizers.build_sgdm(learning_rate=server_lr), weights_type),
  )
