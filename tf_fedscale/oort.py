"""Oort participant selection (Lai et al., OSDI 2021), vectorized over the population.

Every client has a statistical utility, learned when it trains,

    U_i = |B_i| * sqrt(mean over its trained examples of the squared loss)

where |B_i| is the number of *distinct* examples it trained on in the round,
min(n_i, processed examples), i.e. min(n_i, local_steps x batch) under steps
and n_i under epochs (FedScale's `trained_unique_samples`, `torch_client.py`),
and the mean is over the losses of its *whole* local work, computed in the TFF
computation itself (`RoundFeedback.loss_sq_sum` / `loss_count`, see
`tf_fedscale.feedback`), not over its last batch as FedScale does. Stragglers
(online to the end but not among the first `clients_per_round` to finish)
get FedScale's feedback (`aggregator.py`, `round_completion_handler`): the
round's mean utility of the clients that trained, stamped with the round and
counted as a participation (`straggler_feedback=False` leaves them
unexplored instead). Selection for round t, among the clients online now
(minus an optional blacklist):

- exploitation score of an explored client: its utility clipped at the
  `clip_bound` quantile and min-max normalized over the online explored
  clients' positive utilities, plus a staleness bonus sqrt(0.1 ln(t - 1) / L_i)
  (t - 1: FedScale's count of Oort calls, `cur_time`; L_i: the last round it
  trained), times (T / d_i)^alpha when its duration d_i exceeds the preferred
  round duration T;
- T is the `round_percentile`-th percentile of every client's duration
  (observed download + compute + upload for clients already invited, the
  simulation's trace-based estimate otherwise);
- the pacer: before round t with t - 1 >= 2 x `pacer_step` and a multiple of
  `pacer_step` (FedScale's `training_round` counts Oort calls: rounds 41, 61,
  81, ... by default), if the exploited utility of the last `pacer_step`
  rounds changed by at most 10% against the `pacer_step` before, T moves to a
  later percentile (+`pacer_delta`); if it changed by 5x or more, back to an
  earlier one;
- round 1 (server step 1 in async mode) selects uniformly at random, as
  FedScale's `client_manager.py` does before it first calls Oort;
- of the n = `num_candidates` slots, int(n x e) explore and n - int(n x e)
  exploit (FedScale's lengths), e = max(0.9 x 0.98^(t-1), 0.3) in round
  t >= 2 (FedScale decays once per call, before use: 0.882 in round 2). The
  explored slots sample unexplored online clients by the examples they would
  train on (their data size under epochs, min(size, steps x batch) in
  effect under steps, as FedScale registers them), penalized by the same
  (T / d)^alpha on their estimated duration; the rest exploits: the
  top scores (every client scoring at least `cut_off_util` x the score ranked
  at the exploitation length, and at least 10x that many clients) are
  sampled in proportion to their score;
- optional blacklist: clients that trained more than `blacklist_rounds`
  times are skipped (at most `blacklist_max_share` of the population).

Defaults are FedScale's (`config_parser.py`: exploration 0.9 -> 0.3 at
x0.98, round_penalty 2, pacer step 20 and delta 5, round_threshold 30,
clip_bound 0.9, cut_off_util 0.05, sample_window 5); Oort's own repository
uses clip_bound 0.98 and cut_off_util 0.7.

State (`get_state`, what the driver keeps in the round state) is numpy
arrays of population size (utility, duration, last round, participation
count), the pacer's percentile and the last 2 x `pacer_step` rounds' exploited
utility; nothing else carries over. The rest is derived in each round from the
state, the round number and the population: the exploration share, T, and
each client's data size (from `RoundFeedback.num_examples`). So millions of
clients cost tens of bytes each; a round costs O(online clients) numpy work,
plus one duration estimate of the whole population for the percentile.

After `observe`, `round_metrics` gives the round's metrics.csv columns:
`oort_exploration` (e), `oort_exploited` and `oort_explored` (clients drawn by
exploitation and by exploration; when the unexplored online clients run out,
the slots left are filled with the next best scores, counted in neither;
FedScale instead re-sends its previous call's exploration picks) and
`oort_preferred_duration_s` (T); e and T are empty in round 1.

Once per round, whatever the mode: the exploration share is a function of the
round (the server step in async mode) and the pacer moves in `observe`, which
the drivers call once per round / server step, while `select` may be called
several times in an async step. FedScale counts Oort calls instead: in sync
mode one per round from round 2, except a round with at most n clients online
(it invites them all without calling Oort). It decays in every call
(`thirdparty/oort/oort.py`: `getTopK` multiplies `exploration` by the decay
factor and `select_participant` advances `training_round` by one per call), and
its async aggregator (`fedscale/cloud/aggregation/async_aggregator.py`,
`_new_task`) calls `select_participants(1, ...)` for every client it starts, so
there the factor decays per client started, not per server step.
"""

import math
from typing import Any

import numpy as np

from tf_fedscale import accounting
from tf_fedscale import selection

_TINY = 1e-4


class OortSelector(selection.BaseSelector):
  """Oort's guided participant selection (exploration + exploitation + pacer)."""

  needs_client_loss = True

  def __init__(self, clients_per_round: int, overcommit: float = 1.0, *,
               exploration: float = 0.9, exploration_decay: float = 0.98,
               exploration_min: float = 0.3, round_penalty: float = 2.0,
               round_percentile: float = 30.0, pacer_step: int = 20,
               pacer_delta: float = 5.0, clip_bound: float = 0.9,
               cut_off_util: float = 0.05, sample_window: float = 5.0,
               blacklist_rounds: int = -1, blacklist_max_share: float = 0.3,
               straggler_feedback: bool = True):
    super().__init__(clients_per_round, overcommit)
    if not 0.0 <= exploration_min <= exploration <= 1.0:
      raise ValueError('Need 0 <= exploration_min <= exploration <= 1, got '
                       f'{exploration_min} and {exploration}.')
    if not 0.0 < exploration_decay <= 1.0:
      raise ValueError(f'exploration_decay must be in (0, 1], got {exploration_decay}.')
    if not 0.0 <= round_percentile <= 100.0:
      raise ValueError(f'round_percentile must be in [0, 100], got {round_percentile}.')
    if pacer_step < 1:
      raise ValueError(f'pacer_step must be >= 1, got {pacer_step}.')
    if round_penalty < 0:
      raise ValueError(f'round_penalty must be >= 0, got {round_penalty}.')
    if not 0.0 <= clip_bound <= 1.0:
      raise ValueError(f'clip_bound must be in [0, 1], got {clip_bound}.')
    if not 0.0 <= cut_off_util <= 1.0:
      raise ValueError(f'cut_off_util must be in [0, 1], got {cut_off_util}.')
    self.initial_exploration = float(exploration)
    self.exploration_decay = exploration_decay
    self.exploration_min = exploration_min
    self.round_penalty = round_penalty
    self.pacer_step = pacer_step
    self.pacer_delta = pacer_delta
    self.clip_bound = clip_bound
    self.cut_off_util = cut_off_util
    self.sample_window = sample_window
    self.blacklist_rounds = blacklist_rounds
    self.blacklist_max_share = blacklist_max_share
    self.straggler_feedback = straggler_feedback
    # State: the pacer's percentile, per-client arrays sized on first use
    # (see _ensure_size), the exploited utility of the last 2 x pacer_step rounds.
    self.round_percentile = float(round_percentile)
    self.utility = np.zeros(0, np.float64)
    self.duration_s = np.zeros(0, np.float64)  # NaN: never timed
    self.last_round = np.zeros(0, np.int64)  # 0: never trained
    self.count = np.zeros(0, np.int64)  # rounds it trained in (or straggled)
    self.exploit_utility_history = np.zeros(0, np.float64)
    # Within a round only (from select to observe; empty in every state).
    self.last_exploited = np.zeros(0, np.int64)
    # Derived by select from the state and the round, kept to be looked at.
    self.exploration = math.nan
    self.preferred_duration_s = math.nan
    self._drawn = np.zeros(2, np.int64)  # (exploited, explored) this round
    self.last_metrics: dict[str, float] = {}

  # -- state -------------------------------------------------------------------

  def _ensure_size(self, num_clients: int) -> None:
    if len(self.utility) == num_clients:
      return
    if len(self.utility):
      raise ValueError(f'Oort state covers {len(self.utility)} clients, the '
                       f'population has {num_clients}.')
    self.utility = np.zeros(num_clients, np.float64)
    self.duration_s = np.full(num_clients, np.nan)
    self.last_round = np.zeros(num_clients, np.int64)
    self.count = np.zeros(num_clients, np.int64)

  _ARRAYS = (('utility', np.float64), ('duration_s', np.float64),
             ('last_round', np.int64), ('count', np.int64),
             ('exploit_utility_history', np.float64))

  def get_state(self) -> dict[str, Any]:
    state = {name: getattr(self, name).copy() for name, _ in self._ARRAYS}
    state['round_percentile'] = np.float64(self.round_percentile)
    return state

  def set_state(self, state: dict[str, Any]) -> None:
    self.round_percentile = float(state['round_percentile'])
    for name, dtype in self._ARRAYS:
      setattr(self, name, np.array(state[name], dtype).reshape(-1))
    self.last_exploited = np.zeros(0, np.int64)
    self._drawn = np.zeros(2, np.int64)

  def exploration_at(self, round_num: int) -> float:
    """The exploration share of round (or server step) `round_num` >= 2:
    max(exploration x decay^(round_num - 1), exploration_min), FedScale's value
    at its (round_num - 1)-th Oort call."""
    return max(self.initial_exploration * self.exploration_decay ** (round_num - 1),
               self.exploration_min)

  def round_metrics(self) -> dict[str, float]:
    """The metrics.csv columns of the round `observe` last ended."""
    return dict(self.last_metrics)

  @property
  def explored(self) -> np.ndarray:
    return self.count > 0

  # -- feedback ----------------------------------------------------------------

  def observe(self, round_num: int, outcome: selection.RoundFeedback) -> None:
    """Learns utilities from the clients' losses and durations from their
    timing; then the pacer prepares the next round."""
    clients = np.asarray(outcome.clients, np.int64)
    if not len(clients):
      self._end_round(round_num, np.zeros(0, np.int64))
      return
    if not len(self.utility):
      raise ValueError(f'Oort observed round {round_num} before selecting any '
                       'client: call select first (it sizes the state).')
    if outcome.num_examples is None:
      raise ValueError('Oort needs each client\'s data size in '
                       'RoundFeedback.num_examples (from_outcome(..., num_examples=)).')
    # System feedback for everyone invited: what the round really cost them.
    self.duration_s[clients] = (outcome.download_s + outcome.compute_s
                                + outcome.upload_s)
    has_loss = (outcome.status == accounting.Status.COMPLETED) & outcome.has_loss
    trained = clients[has_loss]
    if len(trained):
      processed = np.asarray(outcome.loss_count, np.float64)[has_loss]
      unique = np.minimum(np.asarray(outcome.num_examples)[has_loss], processed)
      self.utility[trained] = unique * np.sqrt(
          np.asarray(outcome.loss_sq_sum, np.float64)[has_loss] / processed)
      self.last_round[trained] = round_num
      self.count[trained] += 1
    if self.straggler_feedback:
      stragglers = clients[outcome.status == accounting.Status.STRAGGLER]
      self.utility[stragglers] = (float(self.utility[trained].mean())
                                  if len(trained) else 0.0)
      self.last_round[stragglers] = round_num
      self.count[stragglers] += 1
      trained = np.concatenate([trained, stragglers])
    self._end_round(round_num, trained)

  def _end_round(self, round_num: int, trained: np.ndarray) -> None:
    """Records the mean utility of the clients exploited this round that
    trained (the last 2 x pacer_step rounds are kept), then runs the pacer
    for the next round."""
    ok = np.intersect1d(self.last_exploited, trained)
    self.exploit_utility_history = np.append(
        self.exploit_utility_history,
        float(self.utility[ok].sum()) / (len(ok) + _TINY))[-2 * self.pacer_step:]
    self.last_exploited = np.zeros(0, np.int64)
    self.last_metrics = {
        'oort_exploration': self.exploration,
        'oort_exploited': int(self._drawn[0]),
        'oort_explored': int(self._drawn[1]),
        'oort_preferred_duration_s': self.preferred_duration_s}
    self._drawn = np.zeros(2, np.int64)
    self.pacer(round_num + 1)

  def pacer(self, round_num: int) -> None:
    """Moves the preferred-duration percentile for round `round_num` when the
    exploited utility stalls (`observe` runs it at the end of the round before).
    FedScale's counter is the Oort call, round_num - 1."""
    step = self.pacer_step
    history = self.exploit_utility_history
    calls = round_num - 1
    if calls < 2 * step or calls % step != 0 or len(history) < 2 * step:
      return
    previous = float(history[-2 * step:-step].sum())
    current = float(history[-step:].sum())
    if abs(current - previous) <= 0.1 * previous:
      self.round_percentile = min(100.0, self.round_percentile + self.pacer_delta)
    elif abs(current - previous) >= 5 * previous:
      self.round_percentile = max(self.pacer_delta,
                                  self.round_percentile - self.pacer_delta)

  # -- selection ---------------------------------------------------------------

  def durations(self, clients: np.ndarray) -> np.ndarray:
    """Observed duration where known, else the simulation's estimate."""
    observed = self.duration_s[clients]
    unknown = np.isnan(observed)
    if unknown.any():
      observed = observed.copy()
      observed[unknown] = self._estimate(clients[unknown])
    return observed

  def _estimate(self, clients: np.ndarray) -> np.ndarray:
    if self.estimate_duration_s is None:  # not bound to a simulation: nothing is slower
      return np.zeros(len(clients))
    return np.asarray(self.estimate_duration_s(clients), np.float64)

  def _samples(self, population, clients: np.ndarray) -> np.ndarray:
    """Distinct examples each client would train on: min(n_i, processed)
    (FedScale's prior, min(n_i, local_steps x batch)); n_i when unbound."""
    size = population.num_examples[clients].astype(np.float64)
    if self.estimate_samples is None:
      return size
    return np.minimum(size, np.asarray(self.estimate_samples(clients), np.float64))

  def update_preferred_duration(self) -> float:
    """T: the `round_percentile`-th percentile of all clients' durations."""
    if self.round_percentile >= 100.0:
      self.preferred_duration_s = math.inf
    else:
      durations = np.sort(self.durations(np.arange(len(self.utility))))
      index = min(int(len(durations) * self.round_percentile / 100.0),
                  len(durations) - 1)
      self.preferred_duration_s = float(durations[index])
    return self.preferred_duration_s

  def duration_penalty(self, durations: np.ndarray) -> np.ndarray:
    """(T / d)^alpha for clients slower than T, 1 otherwise."""
    t = self.preferred_duration_s
    slow = durations > t
    penalty = np.ones(len(durations))
    penalty[slow] = (t / np.maximum(_TINY, durations[slow])) ** self.round_penalty
    return penalty

  def exploitation_scores(self, round_num: int, clients: np.ndarray) -> np.ndarray:
    """Oort's score of explored `clients` in round `round_num` (uses current T)."""
    clients = np.asarray(clients, np.int64)
    if not len(clients):
      return np.zeros(0)
    utility = self.utility[clients]
    positive = np.sort(utility[utility > 0])
    if len(positive):
      clip_value = positive[min(int(len(positive) * self.clip_bound), len(positive) - 1)]
      low = positive[0] * 0.999
      spread = max(positive[-1] - low, _TINY)
    else:
      clip_value, low, spread = 0.0, 0.0, _TINY
    score = (np.minimum(utility, clip_value) - low) / spread
    score = score + np.sqrt(0.1 * math.log(max(round_num - 1, 1))
                            / np.maximum(self.last_round[clients], 1))
    score = score * self.duration_penalty(self.durations(clients))
    return np.abs(score)

  def blacklist(self) -> np.ndarray:
    """Clients that trained more than `blacklist_rounds` times (capped)."""
    if self.blacklist_rounds < 0:
      return np.zeros(0, np.int64)
    over = np.flatnonzero(self.count > self.blacklist_rounds)
    cap = int(self.blacklist_max_share * len(self.count))
    if len(over) > cap:
      over = over[np.argsort(-self.count[over], kind='stable')[:cap]]
    return over

  def select(self, round_num, virtual_time_s, population, rng):
    self._ensure_size(population.num_clients)
    k = self.num_candidates
    online = population.online_clients(virtual_time_s)
    banned = self.blacklist()
    if len(banned):
      online = np.setdiff1d(online, banned, assume_unique=True)
    if not len(online):  # the simulation idles and asks again: change nothing
      return online
    if round_num <= 1:  # FedScale's first round, before any Oort call
      self.exploration = self.preferred_duration_s = math.nan
      return rng.permutation(online)[:k]
    self.update_preferred_duration()
    self.exploration = self.exploration_at(round_num)
    explored = online[self.explored[online]]
    unexplored = online[~self.explored[online]]

    # Exploitation.
    exploit_len = min(k - int(k * self.exploration), len(explored))
    exploited = np.zeros(0, np.int64)
    scores = self.exploitation_scores(round_num, explored)
    order = np.argsort(-scores, kind='stable')
    if exploit_len > 0:
      cut_off = scores[order[min(exploit_len, len(order) - 1)]] * self.cut_off_util
      # Everything above the cut-off, and at least 10x the slots.
      pool_size = max(int(np.sum(scores >= cut_off)), min(len(order), 10 * exploit_len + 1))
      pool = order[:pool_size]
      exploited = explored[pool[_weighted_sample(scores[pool], exploit_len, rng)]]

    # Exploration: by data size, penalized by (estimated) duration.
    explored_picks = np.zeros(0, np.int64)
    explore_len = min(len(unexplored), k - len(exploited))
    if explore_len > 0:
      reward = (self._samples(population, unexplored)
                * self.duration_penalty(self.durations(unexplored)))
      window = min(int(self.sample_window * explore_len), len(unexplored))
      top = np.argsort(-reward, kind='stable')[:window]
      explored_picks = unexplored[top[_weighted_sample(reward[top], explore_len, rng)]]

    picked = np.concatenate([explored_picks, exploited])
    if len(picked) < k:  # too few unexplored: fill with the next best scores
      rest = explored[order]
      rest = rest[~np.isin(rest, picked)]
      picked = np.concatenate([picked, rest[:k - len(picked)]])
    # Every call's picks count (async mode selects several times per step).
    self.last_exploited = np.union1d(self.last_exploited, exploited)
    self._drawn += (len(exploited), len(explored_picks))
    return picked


def _weighted_sample(weights: np.ndarray, count: int,
                     rng: np.random.Generator) -> np.ndarray:
  """`count` distinct indices, drawn one by one in proportion to `weights`.

  Gumbel-top-k: the same distribution as numpy's sequential
  `choice(replace=False, p=...)`, and it never fails on zero weights.
  """
  count = min(count, len(weights))
  if count <= 0:
    return np.zeros(0, np.int64)
  keys = np.log(np.maximum(np.asarray(weights, np.float64), 0.0) + 1e-12)
  keys = keys + rng.gumbel(size=len(weights))
  return np.argsort(-keys, kind='stable')[:count]
