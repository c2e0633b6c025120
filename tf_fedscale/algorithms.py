"""Learning processes by name, built from `tff.learning` with published defaults.

| name | builder | defaults |
|---|---|---|
| `fedavg` | `build_weighted_fed_avg`, SGD client and server (McMahan et al. 2017) | server lr 1.0 |
| `fedprox` | `build_weighted_fed_prox` (Li et al. 2020) | mu = 0.01 unless set |
| `fedadam`, `fedyogi`, `fedadagrad` | `build_weighted_fed_avg` with an adaptive server optimizer (Reddi et al. 2021, "Adaptive Federated Optimization") | beta1 0.9, beta2 0.99, tau (epsilon) 1e-3, initial accumulator tau^2 |
| `fedscale-yogi` | `build_weighted_fed_avg` with FedScale's server Yogi (`tf_fedscale.optimizers.FedScaleYogi`: no bias correction) | beta1 0.9, beta2 0.99, tau 1e-3 unless set (FedScale's tasks: `FEDSCALE_YOGI_TAU`, 1e-8, for the initial accumulator and the denominator, as its `yogi.py`) |
| `fedsgd` | `build_fed_sgd`: one gradient of the local data per client | server SGD |
| `mime-lite` | `build_weighted_mime_lite` (Karimireddy et al. 2021, "Breaking the centralized barrier") | base optimizer SGD with momentum 0.9 at the client lr; server SGD |
| `qffl` | q-FedAvg from TFF templates (`tf_fedscale.qffl`; Li et al. 2020, "Fair Resource Allocation in Federated Learning") | q = 1 |

Clients of `fedavg`, `fedprox` and the adaptive ones train with torch's SGD
(`tf_fedscale.optimizers.client_sgd`): plain SGD unless `client_momentum` or
`client_weight_decay` is set (FedScale's tasks: 0.9 and 5e-4). Every builder
takes the update aggregator (`tf_fedscale.aggregators`); the
per-client metrics of any model wrapped by `tf_fedscale.feedback` flow through
each of them. The tff.learning builders iterate client data with an iterator
loop (`LOOP`, TFF's `DATASET_ITERATOR`) on every engine: TFF's default
`dataset.reduce` loop costs about twice as much per client, on the C++ worker
and in-process alike (measured by the prototype, ../shared/notes/engine.md).
q-FFL keeps `dataset.reduce`: its two passes must see the same shuffle, and
iterators of one dataset share its shuffle's seed. A `LearningProcess` passed
as `name` is returned unchanged.
"""

from collections.abc import Callable
from typing import Optional, Union

import tensorflow_federated as tff

from tf_fedscale import optimizers
from tf_fedscale import payload
from tf_fedscale import qffl

ALGORITHMS = ('fedavg', 'fedprox', 'fedadam', 'fedyogi', 'fedscale-yogi', 'fedadagrad',
              'fedsgd', 'mime-lite', 'qffl')
# Algorithms whose clients train with `optimizers.client_sgd` (momentum, decay).
CLIENT_SGD_ALGORITHMS = ('fedavg', 'fedprox', 'fedadam', 'fedyogi', 'fedscale-yogi',
                         'fedadagrad')
ADAPTIVE_EPSILON = 1e-3  # Reddi et al.'s tau
# FedScale's `--yogi_tau` (config_parser.py, yogi.py): its denominator epsilon
# and the accumulator's initial value, with which its 3e-3 server rate is tuned.
FEDSCALE_YOGI_TAU = 1e-8
ADAPTIVE_BETA_2 = 0.99
MIME_MOMENTUM = 0.9
LOOP = tff.learning.LoopImplementation.DATASET_ITERATOR


def server_optimizer(name: str, server_lr: float,
                     adaptive_epsilon: float = ADAPTIVE_EPSILON,
                     initial_accumulator: Optional[float] = None,
                     ) -> tff.learning.optimizers.Optimizer:
  """The server optimizer algorithm `name` applies its aggregated update with.

  Adaptive optimizers use `adaptive_epsilon` in the denominator and start
  their accumulator at `initial_accumulator` (default epsilon^2, Reddi et al.;
  `fedscale-yogi`: epsilon, the only value it takes, as FedScale's tau).
  """
  if not adaptive_epsilon > 0:
    raise ValueError(f'adaptive_epsilon must be positive, got {adaptive_epsilon}.')
  if name == 'fedscale-yogi':
    if initial_accumulator not in (None, adaptive_epsilon):
      raise ValueError('fedscale-yogi uses one tau for the initial accumulator and the '
                       f'denominator; got {initial_accumulator} and {adaptive_epsilon}.')
    return optimizers.FedScaleYogi(server_lr, adaptive_epsilon, beta_2=ADAPTIVE_BETA_2)
  if initial_accumulator is None:
    initial_accumulator = adaptive_epsilon ** 2
  if name == 'fedadam':
    return tff.learning.optimizers.build_adam(
        learning_rate=server_lr, beta_2=ADAPTIVE_BETA_2, epsilon=adaptive_epsilon)
  if name == 'fedyogi':
    return tff.learning.optimizers.build_yogi(
        learning_rate=server_lr, beta_2=ADAPTIVE_BETA_2, epsilon=adaptive_epsilon,
        initial_preconditioner_value=initial_accumulator)
  if name == 'fedadagrad':
    return tff.learning.optimizers.build_adagrad(
        learning_rate=server_lr, epsilon=adaptive_epsilon,
        initial_preconditioner_value=initial_accumulator)
  return tff.learning.optimizers.build_sgdm(learning_rate=server_lr)


def build_process(
    name: Union[str, tff.learning.templates.LearningProcess],
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_lr: float,
    server_lr: float,
    proximal_strength: float = 0.01,
    model_aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
    qffl_q: float = qffl.DEFAULT_Q,
    adaptive_epsilon: float = ADAPTIVE_EPSILON,
    initial_accumulator: Optional[float] = None,
    client_momentum: float = 0.0,
    client_weight_decay: float = 0.0,
) -> tff.learning.templates.LearningProcess:
  """A `LearningProcess` for algorithm `name` (a process is passed through)."""
  if isinstance(name, tff.templates.IterativeProcess):
    return name
  if name not in ALGORITHMS:
    raise ValueError(f'Unknown algorithm {name!r}; choose from {ALGORITHMS}.')
  for flag, value in (('client_lr', client_lr), ('server_lr', server_lr)):
    if not value > 0:
      raise ValueError(f'{flag} must be positive, got {value}.')
  if (client_momentum or client_weight_decay) and name not in CLIENT_SGD_ALGORITHMS:
    raise ValueError(f'{name} has its own client optimizer: client_momentum and '
                     f'client_weight_decay apply to {CLIENT_SGD_ALGORITHMS} only.')
  server = server_optimizer(name, server_lr, adaptive_epsilon, initial_accumulator)
  if name == 'fedsgd':
    return tff.learning.algorithms.build_fed_sgd(
        model_fn, server_optimizer_fn=server, model_aggregator=model_aggregator,
        loop_implementation=LOOP)
  if name == 'qffl':
    return qffl.build_qffl(model_fn, client_lr, server_lr, q=qffl_q,
                           model_aggregator=model_aggregator)
  if name == 'mime-lite':
    return tff.learning.algorithms.build_weighted_mime_lite(
        model_fn,
        base_optimizer=tff.learning.optimizers.build_sgdm(
            learning_rate=client_lr, momentum=MIME_MOMENTUM),
        server_optimizer=server,
        model_aggregator=model_aggregator,
        full_gradient_aggregator=model_aggregator,
        loop_implementation=LOOP)
  client_optimizer = optimizers.client_sgd(client_lr, client_momentum,
                                           client_weight_decay)
  if name == 'fedprox':
    return tff.learning.algorithms.build_weighted_fed_prox(
        model_fn, proximal_strength=proximal_strength,
        client_optimizer_fn=client_optimizer, server_optimizer_fn=server,
        model_aggregator=model_aggregator, loop_implementation=LOOP)
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=client_optimizer, server_optimizer_fn=server,
      model_aggregator=model_aggregator, loop_implementation=LOOP)


def payload_bytes(name: str, model_fn: Callable[[], tff.learning.models.VariableModel],
                  upload_nbytes: Optional[Callable[[object], int]] = None,
                  ) -> tuple[int, int]:
  """(download, upload) bytes per client for algorithm `name`.

  Download: the serialized model weights. Upload: `upload_nbytes(trainable)`
  (the aggregator's encoded update plus its weight; default the serialized
  trainable weights plus a scalar). Mime Lite also broadcasts the server
  optimizer state (momentum, one tensor per trainable weight) and uploads a
  full-batch gradient next to the update, each through the same aggregator.
  """
  weights = tff.learning.models.ModelWeights.from_model(model_fn())
  weights = tff.learning.models.ModelWeights(
      [v.numpy() for v in weights.trainable],
      [v.numpy() for v in weights.non_trainable])
  if upload_nbytes is None:
    upload_nbytes = lambda t: payload.serialized_nbytes(t) + payload.serialized_nbytes(0.0)
  download = payload.serialized_nbytes(weights)
  upload = upload_nbytes(weights.trainable)
  if name == 'mime-lite':
    download += payload.serialized_nbytes(weights.trainable)
    upload *= 2
  return download, upload
