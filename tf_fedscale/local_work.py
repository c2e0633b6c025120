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

  def preprocess(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Client training pipeline (serializable: used inside TFF computations)."""
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=self.shuffle_seed)
    if self.local_steps is not None:
      return dataset.repeat().batch(self.batch_size).take(self.local_steps)
    return dataset.repeat(self.local_epochs).batch(self.batch_size)

  def samples(self, num_examples: np.ndarray) -> np.ndarray:
    """Examples each client processes, given its dataset size."""
    num_examples = np.asarray(num_examples, np.int64)
    if self.local_steps is not None:
      return np.where(num_examples > 0, self.local_steps * self.batch_size, 0)
    return num_examples * self.local_epochs
