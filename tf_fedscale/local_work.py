"""Local work per client: the data pipeline and the sample count it implies.

One object decides both what the TFF client trains on and how many samples the
accountant charges for it, so the two can never disagree.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

SHUFFLE_BUFFER = 1000


@dataclasses.dataclass(frozen=True)
class LocalWork:
  """`local_steps` batches (data repeated as needed), or `local_epochs` passes."""

  batch_size: int
  local_steps: Optional[int] = None
  local_epochs: Optional[int] = None
  shuffle_seed: int = 0

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {self.batch_size}.')
    if (self.local_steps is None) == (self.local_epochs is None):
      raise ValueError('Set exactly one of local_steps and local_epochs, got '
                       f'local_steps={self.local_steps}, '
                       f'local_epochs={self.local_epochs}.')
    for name in ('local_steps', 'local_epochs'):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f'{name} must be >= 1, got {value}.')

  @property
  def amount(self) -> int:
    """The default per-client amount: local_steps, or local_epochs."""
    return self.local_steps if self.local_steps is not None else self.local_epochs

  def preprocess(self, dataset: tf.data.Dataset, amount=None) -> tf.data.Dataset:
    """Client training pipeline (serializable: used inside TFF computations).

    `amount` (a Python int or an int tensor) overrides the number of local
    steps (or of local epochs) for one client; hooks choose it per client.
    """
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=self.shuffle_seed)
    amount = self.amount if amount is None else amount
    if self.local_steps is not None:
      return dataset.repeat().batch(self.batch_size).take(
          tf.cast(amount, tf.int64))
    return dataset.repeat(tf.cast(amount, tf.int64)).batch(self.batch_size)

  def samples(self, num_examples: np.ndarray, amount=None) -> np.ndarray:
    """Examples each client processes, given its dataset size (and amount)."""
    num_examples = np.asarray(num_examples, np.int64)
    amount = (self.amount if amount is None
              else np.asarray(amount, np.int64))
    if self.local_steps is not None:
      return np.where(num_examples > 0, amount * self.batch_size, 0)
    return num_examples * amount
