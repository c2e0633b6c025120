"""Client learning-rate decay by round, as FedScale's tasks train.

FedScale's aggregator (`update_default_task_config`, called as round r
begins) multiplies the client learning rate by `decay_factor` whenever
r % decay_round == 0, floored at `min_learning_rate` (`config_parser.py`:
0.98, 10, 5e-5). Round r therefore trains at

    lr_r = max(lr_0 x decay_factor ^ floor(r / decay_rounds), min_lr)

`ClientLrDecay` is a simulation hook that writes lr_r into the TFF process
state through the process's own `get_hparams`/`set_hparams` (the client
optimizer's `learning_rate`), so the unmodified TFF algorithm trains at it.
Unlike FedScale, a starting rate already below the floor is kept, not raised
to it.
"""

import math
from typing import Any, Optional

import tensorflow_federated as tff


# Algorithms (tf_fedscale.algorithms) whose TFF 0.87 process exposes the client
# optimizer's learning rate in its hparams; FedProx, Mime Lite, FedSGD and
# q-FFL do not, so they train at a constant client rate.
DECAYABLE_ALGORITHMS = ('fedavg', 'fedadam', 'fedyogi', 'fedscale-yogi', 'fedadagrad')


def decayed_lr(round_num: int, initial_lr: float, decay_factor: float,
               decay_rounds: int, min_lr: float) -> float:
  """The client learning rate of round `round_num` (1-based)."""
  if decay_rounds < 1:
    raise ValueError(f'decay_rounds must be >= 1, got {decay_rounds}.')
  if not 0.0 < decay_factor <= 1.0:
    raise ValueError(f'decay_factor must be in (0, 1], got {decay_factor}.')
  lr = initial_lr * decay_factor ** (round_num // decay_rounds)
  return max(lr, min(min_lr, initial_lr))


def client_lr_path(hparams: Any) -> Optional[tuple[str, ...]]:
  """Keys leading to the client optimizer's learning rate in `hparams`, or
  None when the process exposes none (e.g. FedSGD, q-FFL)."""
  client_work = hparams.get('client_work') if hasattr(hparams, 'get') else None
  if hasattr(client_work, 'get'):
    if 'learning_rate' in client_work:
      return ('client_work', 'learning_rate')
    optimizer = client_work.get('optimizer')
    if hasattr(optimizer, 'get') and 'learning_rate' in optimizer:
      return ('client_work', 'optimizer', 'learning_rate')
  return None


def supports_client_lr(process: tff.learning.templates.LearningProcess) -> bool:
  """Whether `process` lets `ClientLrDecay` set its client learning rate."""
  try:
    return client_lr_path(process.get_hparams(process.initialize())) is not None
  except (AttributeError, NotImplementedError, TypeError):
    return False


class ClientLrDecay:
  """Sets the client learning rate of each round to `decayed_lr` (see above)."""

  def __init__(self, process: tff.learning.templates.LearningProcess,
               initial_lr: float, decay_factor: float, decay_rounds: int,
               min_lr: float):
    decayed_lr(1, initial_lr, decay_factor, decay_rounds, min_lr)  # validates
    self.process = process
    self.initial_lr = initial_lr
    self.decay_factor = decay_factor
    self.decay_rounds = decay_rounds
    self.min_lr = min_lr

  def lr(self, round_num: int) -> float:
    return decayed_lr(round_num, self.initial_lr, self.decay_factor,
                      self.decay_rounds, self.min_lr)

  def on_round_start(self, round_num: int, virtual_time_s: float,
                     process_state: Any) -> Optional[Any]:
    del virtual_time_s
    hparams = self.process.get_hparams(process_state)
    path = client_lr_path(hparams)
    if path is None:
      raise ValueError('The process exposes no client learning rate in its hparams.')
    holder = hparams
    for key in path[:-1]:
      holder = holder[key]
    lr = self.lr(round_num)
    if math.isclose(float(holder[path[-1]]), lr, rel_tol=1e-6):
      return None  # already set: no TFF call
    holder[path[-1]] = lr
    return self.process.set_hparams(process_state, hparams)
