"""Client-level DP epsilon of the draws the rounds really made.

With `--aggregator=dp` a round releases the sum of its finishers' updates,
each clipped to L2 norm `clip`, plus Gaussian noise of stddev z x clip
(z = `--noise_multiplier`), divided by a fixed K (DP-FedAvg,
`tf_fedscale.dp_noise`). Sampling amplifies that guarantee; this module
accounts for the sampling the simulation really does.

What is protected: each client's training data. Public, and conditioned on:
the population, when each client is online, its device speed and how many
examples it holds; the simulation decides from them alone who can be invited
and who finishes. Neighbouring runs differ in one client's data, the client
and its traits staying (dp-accounting's `REPLACE_ONE`).

Sampling (`--dp_sampling=fixed`, written to config.json): a selector that
declares `samples_uniformly` (`--selector=uniform`) invites
min(invited, online) of the clients online at selection, uniformly without
replacement (FedScale's draw). Each round that invited anyone is one
`SampledWithoutReplacementDpEvent(dp_population, dp_sample_size,
GaussianDpEvent(z / 2))` for dp-accounting's RDP accountant under
`REPLACE_ONE`: population = the clients online at selection (availability does
not depend on the data, so the accountant conditions on it), sample = the
clients invited. The Gaussian's multiplier is z / 2 because replacing one
client's data moves its clipped update, hence the sum, by up to 2 x clip, and
dp-accounting takes the noise relative to that sensitivity. Who finishes
among the invited depends on public traits only, so the aggregated clients are
a data-independent part of the sample; a round is charged even when nobody
finished (whether anyone finishes depends on who was drawn). Any other
selector is charged without amplification: population = sample = invited (the
event is then the Gaussian mechanism). A selector that reads clients' training
losses (`needs_client_loss`, e.g. Oort) is refused with DP: its choice depends
on the data and no sampling event describes it (`check_selector`).

Poisson sampling is not offered: a round here releases nothing when no
invited client finishes, and under add/remove neighbouring (which Poisson
accounting needs) whether a round releases would depend on whether the added
client was drawn, which that accounting does not cover.

`PrivacyReport` adds to every round's record, in `metrics.csv`:
`dp_population`, `dp_sample_size` (0 and 0: nobody invited, nothing charged),
`epsilon` (the rounds so far, at `dp_delta`), `epsilon_uniform` (the same
event with the whole population and the invited count every round: the
figure if every client were always online) and `dp_delta`; and it blanks
`train_loss` and `train_accuracy` (the cohort's un-noised training metrics).
"""

import functools
import math
from typing import Any, Optional

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
import numpy as np

from tf_fedscale import population as population_lib
from tf_fedscale import selection

RDP_ORDERS = list(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)  # dp-accounting's own
NEIGHBORING_RELATION = dp_accounting.NeighboringRelation.REPLACE_ONE
DP_SAMPLING = ('fixed',)
# Per-round training metrics a DP run does not release (nan in metrics.csv).
UNNOISED_KEYS = ('train_loss', 'train_accuracy')


def round_event(noise_multiplier: float, population: int,
                sample_size: int) -> dp_accounting.DpEvent:
  """One round: `sample_size` of `population` clients drawn without
  replacement, then the Gaussian sum (see the module docstring for z / 2)."""
  return dp_accounting.SampledWithoutReplacementDpEvent(
      population, sample_size, dp_accounting.GaussianDpEvent(noise_multiplier / 2))


@functools.lru_cache(maxsize=None)
def _round_rdp(noise_multiplier: float, population: int, sample_size: int) -> tuple:
  accountant = dp_accounting.rdp.RdpAccountant(RDP_ORDERS, NEIGHBORING_RELATION)
  accountant.compose(round_event(noise_multiplier, population, sample_size))
  return tuple(accountant.rdp)


def check_selector(selector: selection.Selector) -> None:
  """Raises ValueError for a selector whose choice depends on client data."""
  if selector.needs_client_loss:
    raise ValueError(
        f'{type(selector).__name__} chooses clients by their training losses '
        '(needs_client_loss), so no sampling event bounds what a DP run releases; '
        'use a selector that does not read client statistics, e.g. uniform.')


class PrivacyReport:
  """Adds the DP columns to every round's record (see the module docstring).

  Its state (`get_state`, kept by the driver in the round state and in
  checkpoints, see `hooks.StatefulHook`) is the RDP of the rounds composed so
  far, one value per order of `RDP_ORDERS` (RDP adds up over rounds), and how
  many rounds were charged: a fixed size whatever the number of rounds, and a
  resumed run composes the same epsilon as an uninterrupted one.
  """

  def __init__(self, noise_multiplier: float, selector: selection.Selector,
               population: population_lib.Population, delta: float):
    """Raises ValueError for a selector that reads client data (`check_selector`)."""
    if not 0.0 < delta < 1.0:
      raise ValueError(f'delta must be in (0, 1), got {delta}.')
    check_selector(selector)
    self.noise_multiplier = noise_multiplier
    self.uniform_sample_size = min(selector.num_candidates, population.num_clients)
    self.population = population
    self.delta = delta
    self.samples_uniformly = bool(getattr(selector, 'samples_uniformly', False))
    self.rdp = np.zeros(len(RDP_ORDERS), np.float64)
    self.released_rounds = 0

  def get_state(self) -> dict[str, Any]:
    return {'rdp': self.rdp.copy(), 'released_rounds': np.int64(self.released_rounds)}

  def set_state(self, state: dict[str, Any]) -> None:
    rdp = np.array(state['rdp'], np.float64).reshape(-1)
    if rdp.shape != (len(RDP_ORDERS),):
      raise ValueError(f'privacy state has {rdp.size} RDP values, expected '
                       f'{len(RDP_ORDERS)} (one per order).')
    self.rdp = rdp
    self.released_rounds = int(state['released_rounds'])

  def draw(self, feedback: Optional[Any]) -> tuple[int, int]:
    """(population, sample size) of the round `feedback` reports; (0, 0)
    when nobody was invited."""
    invited = 0 if feedback is None else len(feedback.clients)
    if not invited or not self.samples_uniformly:
      return invited, invited
    return len(self.population.online_clients(feedback.start_time_s)), invited

  def compose(self, population: int, sample_size: int) -> None:
    """Adds one round's draw (a sample of 0: nothing released, no cost)."""
    if sample_size > 0:
      self.rdp = self.rdp + self._rdp(population, sample_size)
      self.released_rounds += 1

  def _rdp(self, population: int, sample_size: int) -> np.ndarray:
    if self.noise_multiplier <= 0:
      return np.full(len(RDP_ORDERS), np.inf)
    return np.array(_round_rdp(float(self.noise_multiplier), int(population),
                               int(sample_size)))

  def _epsilon(self, rdp: np.ndarray) -> float:
    if not np.any(rdp):
      return 0.0
    if not np.all(np.isfinite(rdp)):
      return math.inf
    return float(rdp_privacy_accountant.compute_epsilon(RDP_ORDERS, rdp, self.delta)[0])

  def epsilon(self) -> float:
    """Epsilon of the rounds composed so far."""
    return self._epsilon(self.rdp)

  def uniform_epsilon(self, rounds: int) -> float:
    """Epsilon of `rounds` draws of the invited count from the whole population."""
    return self._epsilon(rounds * self._rdp(self.population.num_clients,
                                            self.uniform_sample_size)
                         if rounds else np.zeros(len(RDP_ORDERS)))

  def on_round_end(self, round_num: int, record: dict[str, Any],
                   feedback: Optional[Any]) -> None:
    population, sample_size = self.draw(feedback)
    if round_num > 0:
      self.compose(population, sample_size)
    record.update(dict.fromkeys(UNNOISED_KEYS, math.nan))
    record['dp_population'] = population
    record['dp_sample_size'] = sample_size
    record['epsilon'] = self.epsilon()
    record['epsilon_uniform'] = self.uniform_epsilon(round_num)
    record['dp_delta'] = self.delta
