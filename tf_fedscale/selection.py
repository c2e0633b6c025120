"""Participant selection: which online clients are invited to a round.

A selector proposes candidates (over-committed); the accountant then decides
which of them finish. Selectors see the population's arrays and a per-round RNG
derived from the run seed, so a round's choice depends only on (seed, round,
virtual time, selector state) and runs replay exactly.
"""

import abc
import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np

from tf_fedscale import accounting
from tf_fedscale import population as population_lib

# Expected seconds each given client (population indices) needs for a round:
# download + compute + upload at its trace speeds, as the accountant charges.
DurationEstimator = Callable[[np.ndarray], np.ndarray]
# Examples each given client would train on with the run's local work.
SamplesEstimator = Callable[[np.ndarray], np.ndarray]

# How many random draws to test for online-ness per needed candidate before
# falling back to scanning the whole population.
_REJECTION_DRAWS_PER_CANDIDATE = 64


@dataclasses.dataclass(frozen=True, eq=False)
class RoundFeedback(accounting.RoundOutcome):
  """The accountant's `RoundOutcome` plus what training reported per client.

  `loss_sq_sum[i]` and `loss_count[i]` (aligned with `clients`) are the sum of
  squared per-example training losses over client i's whole local work and the
  number of examples it trained on, computed inside the TFF computation (see
  `tf_fedscale.feedback`); NaN and 0 for clients that did not complete, and for
  every client when the process does not report losses. `num_examples[i]`
  is client i's dataset size (the drivers fill it from the population, so a
  selector needs nothing but its state and the feedback to learn).
  """

  loss_sq_sum: Optional[np.ndarray] = None
  loss_count: Optional[np.ndarray] = None
  num_examples: Optional[np.ndarray] = None

  @classmethod
  def from_outcome(cls, outcome: accounting.RoundOutcome,
                   loss_sq_sum: Optional[np.ndarray] = None,
                   loss_count: Optional[np.ndarray] = None,
                   num_examples: Optional[np.ndarray] = None) -> 'RoundFeedback':
    n = len(outcome.clients)
    fields = {f.name: getattr(outcome, f.name)
              for f in dataclasses.fields(accounting.RoundOutcome)}
    return cls(**fields,
               loss_sq_sum=(np.full(n, np.nan) if loss_sq_sum is None
                            else np.asarray(loss_sq_sum, np.float64)),
               loss_count=(np.zeros(n) if loss_count is None
                           else np.asarray(loss_count, np.float64)),
               num_examples=(None if num_examples is None
                             else np.asarray(num_examples, np.int64)))

  @property
  def has_loss(self) -> np.ndarray:
    """Which clients reported a training loss."""
    return self.loss_count > 0

  @property
  def rms_loss(self) -> np.ndarray:
    """sqrt(mean squared per-example loss) per client (NaN without a loss)."""
    with np.errstate(divide='ignore', invalid='ignore'):
      return np.where(self.has_loss, np.sqrt(self.loss_sq_sum / self.loss_count),
                      np.nan)

  @property
  def client_duration_s(self) -> np.ndarray:
    """download + compute + upload seconds per client (whether it finished)."""
    return self.download_s + self.compute_s + self.upload_s


def num_invited(clients_per_round: int, overcommit: float) -> int:
  """int(overcommit x clients_per_round), as FedScale's aggregator (the float
  product rounded to 9 decimals first, so 1.15 x 100 invites 115, not 114)."""
  return math.floor(round(overcommit * clients_per_round, 9))


@runtime_checkable
class Selector(Protocol):
  """What the driver needs of a participant selector (a typed protocol).

  The driver treats a selector as a function of its state: before each round
  (or server step) it loads the state the round was given with `set_state`,
  then calls `select` (and `observe` with the round's `RoundFeedback`), and
  stores `get_state()` in the new `SimulationState`. So a selector keeps
  everything that changes in what `get_state` returns (numpy arrays and
  scalars, a snapshot it will not mutate later), and `set_state` copies what
  it is given; running a round again from the same state then makes the same
  choices. `BaseSelector` implements everything but `select`.
  """

  # True makes the driver build the loss-reporting client computation
  # (`feedback.py`) so that `observe` receives per-client training losses; a
  # DP run refuses such a selector (its choice depends on client data,
  # tf_fedscale.privacy).
  needs_client_loss: bool

  @property
  def num_candidates(self) -> int:
    """How many clients `select` proposes at most (over-commitment included)."""

  def select(self, round_num: int, virtual_time_s: float,
             population: population_lib.Population,
             rng: np.random.Generator) -> np.ndarray:
    """Distinct population indices of online clients (at most num_candidates)."""

  def observe(self, round_num: int, feedback: 'RoundFeedback') -> None:
    """Learns from the round's timing, statuses and (when asked) losses."""

  def bind(self, estimate_duration_s: DurationEstimator,
           estimate_samples: Optional[SamplesEstimator] = None) -> None:
    """Receives the driver's per-client estimators of a round's duration
    (seconds) and of the examples each client would train on."""

  def get_state(self) -> dict[str, Any]:
    """A snapshot of everything that changes (what checkpoints store)."""

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues from a `get_state` snapshot (copying it)."""


class BaseSelector(abc.ABC):
  """A `Selector` with stateless defaults: subclasses implement `select`.

  Per-client state should be numpy arrays of population size, returned by
  `get_state` and restored by `set_state`.
  """

  # Set True in a subclass that uses `RoundFeedback.loss_sq_sum` (refused
  # with DP).
  needs_client_loss: bool = False
  # True only for a selector that invites a fixed number of the online
  # clients uniformly at random without replacement, independently of their
  # data: DP accounting then amplifies by that draw (tf_fedscale.privacy); any
  # other selector is charged without amplification.
  samples_uniformly: bool = False

  def __init__(self, clients_per_round: int, overcommit: float = 1.0):
    if clients_per_round < 1:
      raise ValueError(f'clients_per_round must be >= 1, got {clients_per_round}.')
    if overcommit < 1.0:
      raise ValueError(f'overcommit must be >= 1.0, got {overcommit}.')
    self.clients_per_round = clients_per_round
    self.overcommit = overcommit
    self.estimate_duration_s: Optional[DurationEstimator] = None
    self.estimate_samples: Optional[SamplesEstimator] = None

  @property
  def num_candidates(self) -> int:
    return num_invited(self.clients_per_round, self.overcommit)

  @abc.abstractmethod
  def select(self, round_num: int, virtual_time_s: float,
             population: population_lib.Population,
             rng: np.random.Generator) -> np.ndarray:
    """Returns distinct indices of online clients (at most num_candidates)."""

  def bind(self, estimate_duration_s: DurationEstimator,
           estimate_samples: Optional[SamplesEstimator] = None) -> None:
    self.estimate_duration_s = estimate_duration_s
    self.estimate_samples = estimate_samples

  def observe(self, round_num: int, feedback: 'RoundFeedback') -> None:
    del round_num, feedback

  def get_state(self) -> dict[str, Any]:
    return {}

  def set_state(self, state: dict[str, Any]) -> None:
    del state


def round_metrics(selector: Selector) -> dict[str, Any]:
  """The columns `selector` adds to the metrics.csv row of the round it last
  observed: what its optional `round_metrics()` returns, else none."""
  method = getattr(selector, 'round_metrics', None)
  return {} if method is None else dict(method())


def check_selector(selector: Any) -> Selector:
  """`selector`, or a TypeError if it does not implement the protocol."""
  if not isinstance(selector, Selector):
    raise TypeError(
        f'{type(selector).__name__} is not a selection.Selector: it needs '
        'needs_client_loss, num_candidates, select, observe, bind, get_state and '
        'set_state (subclass selection.BaseSelector for the defaults).')
  return selector


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


class UniformSelector(BaseSelector):
  """Uniform random choice among online clients (FedScale's default)."""

  samples_uniformly = True

  def select(self, round_num, virtual_time_s, population, rng):
    del round_num
    return sample_online(population, virtual_time_s, self.num_candidates, rng)


class FastestSelector(BaseSelector):
  """The online clients expected to finish first ("fastest-first").

  Ranks online clients by the simulation's duration estimate (download,
  compute and upload at their trace speeds; compute speed alone before the
  selector is bound to a simulation). Biased towards fast devices on purpose:
  a baseline for time-to-accuracy, not for fairness.
  """

  def select(self, round_num, virtual_time_s, population, rng):
    del round_num
    online = population.online_clients(virtual_time_s)
    if len(online) <= self.num_candidates:
      return rng.permutation(online)
    if self.estimate_duration_s is not None:
      durations = self.estimate_duration_s(online)
    else:
      durations = (population.compute_ms_per_sample(online).astype(np.float64)
                   * population.num_examples[online])
    # Random tie-breaking, then the k smallest.
    order = np.lexsort((rng.random(len(online)), durations))
    return online[order[:self.num_candidates]]


SELECTORS: dict[str, Union[type, str]] = {
    'uniform': UniformSelector,
    'fastest': FastestSelector,
    'oort': 'tf_fedscale.oort:OortSelector',  # imported on first use
}


def register_selector(name: str, selector_class: type) -> None:
  """Makes `--selector=name` build `selector_class` (a class whose instances,
  built as `selector_class(clients_per_round, overcommit, **kwargs)`, are
  `Selector`s)."""
  if not isinstance(selector_class, type):
    raise TypeError(f'{selector_class!r} is not a class.')
  SELECTORS[name] = selector_class


def resolve_selector_class(name: str) -> type:
  """A registered name, or 'package.module:ClassName' of a Selector class."""
  target = SELECTORS.get(name, name)
  if isinstance(target, str):
    if ':' not in target:
      raise ValueError(f'Unknown selector {name!r}; choose from {sorted(SELECTORS)} '
                       'or give package.module:ClassName.')
    module_name, class_name = target.split(':', 1)
    try:
      target = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
      raise ValueError(f'Cannot load selector {name!r}: {e}') from e
  if not isinstance(target, type):
    raise ValueError(f'Selector {name!r} is not a class: {target!r}.')
  return target


def build_selector(name: Union[str, Selector], clients_per_round: int,
                   overcommit: float, **kwargs: Optional[Any]) -> Selector:
  """A selector by registry name, 'module:Class', or an instance (returned as is).

  Raises TypeError if the result does not implement the `Selector` protocol.
  """
  if not isinstance(name, str):
    return check_selector(name)
  return check_selector(
      resolve_selector_class(name)(clients_per_round, overcommit, **kwargs))
