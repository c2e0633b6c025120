"""Participant selection: which online clients are invited to a round.

A selector proposes candidates (over-committed); the accountant then decides
which of them finish. Selectors see the population's arrays and a per-round RNG
derived from the run seed, so a round's choice depends only on (seed, round,
virtual time, selector state) and runs replay exactly.
"""

import abc
import math
from typing import Any, Optional

import numpy as np

from tf_fedscale import population as population_lib

# How many random draws to test for online-ness per needed candidate before
# falling back to scanning the whole population.
_REJECTION_DRAWS_PER_CANDIDATE = 64


class Selector(abc.ABC):
  """Chooses candidate clients for a round; learns from round feedback."""

  def __init__(self, clients_per_round: int, overcommit: float = 1.0):
    if clients_per_round < 1:
      raise ValueError(f'clients_per_round must be >= 1, got {clients_per_round}.')
    if overcommit < 1.0:
      raise ValueError(f'overcommit must be >= 1.0, got {overcommit}.')
    self.clients_per_round = clients_per_round
    self.overcommit = overcommit

  @property
  def num_candidates(self) -> int:
    """ceil(overcommit x clients_per_round)."""
    return math.ceil(round(self.overcommit * self.clients_per_round, 9))

  @abc.abstractmethod
  def select(self, round_num: int, virtual_time_s: float,
             population: population_lib.Population,
             rng: np.random.Generator) -> np.ndarray:
    """Returns distinct indices of online clients (at most num_candidates)."""

  def observe(self, round_num: int, outcome: Any) -> None:
    """Receives the accountant's `RoundOutcome` (and training feedback)."""
    del round_num, outcome

  def get_state(self) -> dict[str, Any]:
    """State to checkpoint (numpy arrays and scalars)."""
    return {}

  def set_state(self, state: dict[str, Any]) -> None:
    del state


def sample_online(population: population_lib.Population, time_s: float,
                  count: int, rng: np.random.Generator) -> np.ndarray:
  """Up to `count` distinct online clients, uniformly at random.

  Tests random draws for online-ness instead of evaluating the whole
  population, so cost scales with `count`, not with the population size.
  """
  n = population.num_clients
  if count >= n:
    return rng.permutation(population.online_clients(time_s))[:count]
  draws = rng.integers(0, n, size=count * _REJECTION_DRAWS_PER_CANDIDATE)
  _, first = np.unique(draws, return_index=True)
  draws = draws[np.sort(first)]  # distinct, still in random order
  online = draws[population.is_online(draws, time_s)]
  if len(online) >= count:
    return online[:count]
  # Few clients online: enumerate them all.
  return rng.permutation(population.online_clients(time_s))[:count]


class UniformSelector(Selector):
  """Uniform random choice among online clients (FedScale's default)."""

  def select(self, round_num, virtual_time_s, population, rng):
    del round_num
    return sample_online(population, virtual_time_s, self.num_candidates, rng)


SELECTORS = {'uniform': UniformSelector}


def build_selector(name: str, clients_per_round: int, overcommit: float,
                   **kwargs: Optional[Any]) -> Selector:
  """Selector by registry name."""
  if name not in SELECTORS:
    raise ValueError(f'Unknown selector {name!r}; choose from {sorted(SELECTORS)}.')
  return SELECTORS[name](clients_per_round, overcommit, **kwargs)
