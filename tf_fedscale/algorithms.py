"""Learning processes by name, built from `tff.learning` with published defaults.

FedAdam/FedYogi/FedAdagrad follow Reddi et al. 2021 ("Adaptive Federated
Optimization"): weighted FedAvg with an adaptive server optimizer (tau=1e-3 as
the epsilon). FedProx is `build_weighted_fed_prox` (Li et al. 2020, mu=0.01
unless set). FedSGD is `build_fed_sgd` (one gradient per client).
"""

from collections.abc import Callable
from typing import Optional

import tensorflow_federated as tff

ALGORITHMS = ('fedavg', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad', 'fedsgd')
ADAPTIVE_EPSILON = 1e-3


def build_process(
    name: str,
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_lr: float,
    server_lr: float,
    proximal_strength: float = 0.01,
    model_aggregator: Optional[tff.aggregators.WeightedAggregationFactory] = None,
) -> tff.learning.templates.LearningProcess:
  """A `LearningProcess` for algorithm `name`."""
  if name not in ALGORITHMS:
    raise ValueError(f'Unknown algorithm {name!r}; choose from {ALGORITHMS}.')
  for flag, value in (('client_lr', client_lr), ('server_lr', server_lr)):
    if not value > 0:
      raise ValueError(f'{flag} must be positive, got {value}.')
  client_optimizer = tff.learning.optimizers.build_sgdm(learning_rate=client_lr)
  server_optimizers = {
      'fedavg': lambda: tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      'fedprox': lambda: tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
      'fedadam': lambda: tff.learning.optimizers.build_adam(
          learning_rate=server_lr, epsilon=ADAPTIVE_EPSILON),
      'fedyogi': lambda: tff.learning.optimizers.build_yogi(
          learning_rate=server_lr, epsilon=ADAPTIVE_EPSILON),
      'fedadagrad': lambda: tff.learning.optimizers.build_adagrad(
          learning_rate=server_lr, epsilon=ADAPTIVE_EPSILON),
  }
  if name == 'fedsgd':
    return tff.learning.algorithms.build_fed_sgd(
        model_fn,
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=server_lr),
        model_aggregator=model_aggregator)
  if name == 'fedprox':
    return tff.learning.algorithms.build_weighted_fed_prox(
        model_fn, proximal_strength=proximal_strength,
        client_optimizer_fn=client_optimizer,
        server_optimizer_fn=server_optimizers[name](),
        model_aggregator=model_aggregator)
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=client_optimizer,
      server_optimizer_fn=server_optimizers[name](),
      model_aggregator=model_aggregator)
