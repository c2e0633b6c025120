"""Client-level DP epsilon from the sampling rates the rounds really used.

DP-FedAvg's guarantee (`--aggregator=dp`: clip, Gaussian noise of stddev
noise_multiplier x clip on the sum) is amplified by sampling: a client takes
part in a round with probability q. The conventional report takes q = K / N,
uniform Poisson sampling over the whole population, for every round. A
trace-driven simulation does not sample that way: only the clients online at
selection can be invited, so a uniform selector invites each of them with
probability q_t = invited / online, often several times K / N; and a selector
whose choice depends on the clients' data or on the model (Oort ranks clients
by their training loss) offers no sampling to amplify with.

`PrivacyReport` records per round, in `metrics.csv`:

- `dp_sampling_rate`: q_t = invited / online at selection for selectors that
  sample online clients uniformly at random (`Selector.samples_uniformly`),
  1 for every other selector (no amplification is claimed), 0 for a round
  that aggregated nothing (no release, no cost);
- `epsilon`: the RDP accountant (dp-accounting) composing one
  Poisson-sampled Gaussian event per round at that round's q_t, converted to
  (epsilon, delta); treating the fixed-size uniform choice of q_t x online
  clients as Poisson sampling at q_t is the same approximation DP-FedAvg's
  analysis makes;
- `epsilon_uniform`: the conventional figure, q = K / N every round;
- `dp_delta`.
"""

import math
from typing import Any, Optional

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
import numpy as np

from tf_fedscale import accounting
from tf_fedscale import population as population_lib

RDP_ORDERS = ([1.0 + x / 10.0 for x in range(1, 100)]
              + list(range(11, 64)) + [128, 256, 512, 1024])


def _round_event(noise_multiplier: float, sampling_rate: float) -> dp_accounting.DpEvent:
  return dp_accounting.PoissonSampledDpEvent(
      min(1.0, sampling_rate), dp_accounting.GaussianDpEvent(noise_multiplier))


def dp_epsilon(noise_multiplier: float, sampling_rate: float, rounds: int,
               delta: float) -> float:
  """Epsilon after `rounds` Poisson-sampled Gaussian rounds at one rate."""
  if rounds <= 0:
    return 0.0
  if noise_multiplier <= 0:
    return math.inf
  accountant = dp_accounting.rdp.RdpAccountant(RDP_ORDERS)
  accountant.compose(dp_accounting.SelfComposedDpEvent(
      _round_event(noise_multiplier, sampling_rate), rounds))
  return float(accountant.get_epsilon(delta))


class PrivacyReport:
  """Adds `dp_sampling_rate`, `epsilon`, `epsilon_uniform` and `dp_delta`
  to every round's record (see the module docstring).

  Its state (`get_state`, kept by the driver in the round state and in
  checkpoints, see `hooks.StatefulHook`) is the RDP of the rounds composed so
  far, one value per order of `RDP_ORDERS` (RDP adds up over rounds), and how
  many rounds released an aggregate: a fixed size whatever the number of
  rounds, and a resumed run composes the same epsilon as an uninterrupted one.
  """

  def __init__(self, noise_multiplier: float, clients_per_round: int,
               population: population_lib.Population, delta: float,
               samples_uniformly: bool):
    if not 0.0 < delta < 1.0:
      raise ValueError(f'delta must be in (0, 1), got {delta}.')
    self.noise_multiplier = noise_multiplier
    self.uniform_rate = clients_per_round / population.num_clients
    self.population = population
    self.delta = delta
    self.samples_uniformly = samples_uniformly
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

  def sampling_rate(self, feedback: Optional[Any]) -> float:
    """q_t of the round `feedback` reports (0 when nothing was aggregated)."""
    if feedback is None or not np.any(feedback.status == accounting.Status.COMPLETED):
      return 0.0
    if not self.samples_uniformly:
      return 1.0
    online = len(self.population.online_clients(feedback.start_time_s))
    return min(1.0, len(feedback.clients) / max(online, 1))

  def compose(self, rate: float) -> None:
    """Adds one round at sampling rate `rate` (0: nothing released, no cost)."""
    if rate > 0:
      accountant = dp_accounting.rdp.RdpAccountant(RDP_ORDERS)
      accountant.compose(_round_event(self.noise_multiplier, rate))
      self.rdp = self.rdp + accountant.rdp
      self.released_rounds += 1

  def epsilon(self) -> float:
    """Epsilon of the rounds composed so far."""
    if not self.released_rounds:
      return 0.0
    if self.noise_multiplier <= 0:
      return math.inf
    return float(rdp_privacy_accountant.compute_epsilon(RDP_ORDERS, self.rdp,
                                                        self.delta)[0])

  def on_round_end(self, round_num: int, record: dict[str, Any],
                   feedback: Optional[Any]) -> None:
    rate = self.sampling_rate(feedback)
    if round_num > 0:
      self.compose(rate)
    record['dp_sampling_rate'] = rate
    record['epsilon'] = self.epsilon()
    record['epsilon_uniform'] = dp_epsilon(self.noise_multiplier, self.uniform_rate,
                                           round_num, self.delta)
    record['dp_delta'] = self.delta
