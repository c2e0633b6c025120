"""Tests for tf_fedscale.oort and the selector plug-ins in tf_fedscale.selection."""

import math
import tempfile

from absl.testing import absltest
import numpy as np

from tf_fedscale import accounting
from tf_fedscale import availability
from tf_fedscale import checkpoint
from tf_fedscale import oort
from tf_fedscale import population as population_lib
from tf_fedscale import selection


def _population(num_examples, compute_ms=None):
  """Always-online clients, one device row each."""
  n = len(num_examples)
  compute_ms = np.zeros(n) if compute_ms is None else np.asarray(compute_ms)
  devices = population_lib.DeviceProfiles(
      np.asarray(compute_ms, np.float32), np.full(n, np.inf, np.float32),
      np.full(n, np.inf, np.float32))
  return population_lib.Population(
      client_ids=[str(i) for i in range(n)],
      num_examples=np.asarray(num_examples, np.int64), devices=devices,
      availability=availability.AvailabilityTrace.always(n),
      device_row=np.arange(n, dtype=np.int32), availability_row=np.arange(n, dtype=np.int32))


def _feedback(round_num, clients, durations, loss_sq_sum, loss_count, status=None,
              num_examples=None):
  """`num_examples` (data sizes) defaults to 1000 each: more than any test
  processes, so |B| is the examples processed."""
  n = len(clients)
  num_examples = np.full(n, 1000) if num_examples is None else num_examples
  durations = np.asarray(durations, np.float64)
  status = (np.full(n, accounting.Status.COMPLETED, np.int8) if status is None
            else np.asarray(status, np.int8))
  outcome = accounting.RoundOutcome(
      round_num, 0.0, float(durations.max(initial=0.0)), np.asarray(clients, np.int64),
      np.ones(n, np.int64), np.zeros(n), durations, np.zeros(n), durations, status,
      np.zeros(n, np.int64), np.zeros(n, np.int64))
  return selection.RoundFeedback.from_outcome(outcome, loss_sq_sum, loss_count,
                                              num_examples)


class OortScoresTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Clients 0-3 explored in round 1 with known losses and durations.
    self.pop = _population([100, 400, 100, 100, 50, 10])
    self.oort = oort.OortSelector(2, exploration=0.5, round_penalty=2.0)
    self.oort.select(1, 0.0, self.pop, np.random.default_rng(0))
    self.oort.observe(1, _feedback(
        1, [0, 1, 2, 3], durations=[10.0, 20.0, 30.0, 40.0],
        loss_sq_sum=[4.0, 4.0, 64.0, 0.0], loss_count=[1.0, 4.0, 4.0, 0.0],
        status=[0, 0, 0, accounting.Status.DROPPED_OFFLINE],
        num_examples=self.pop.num_examples[:4]))

  def test_utility_is_trained_examples_times_rms_loss(self):
    # |B| sqrt(sum sq / |B|): 1*2, 4*1, 4*4; client 3 dropped: unexplored.
    np.testing.assert_allclose(self.oort.utility[:4], [2.0, 4.0, 16.0, 0.0])
    np.testing.assert_array_equal(self.oort.count[:4], [1, 1, 1, 0])
    np.testing.assert_array_equal(self.oort.last_round[:4], [1, 1, 1, 0])
    # Every invited client's duration is learned, the dropped one's too.
    np.testing.assert_allclose(self.oort.duration_s[:4], [10.0, 20.0, 30.0, 40.0])
    self.assertTrue(np.isnan(self.oort.duration_s[4]))

  def test_utility_counts_distinct_examples_only(self):
    # Steps mode: 5 steps x batch 20 = 100 examples processed by everyone.
    # Client 4 holds 50 examples, client 5 holds 10: |B| = min(n, 100).
    self.oort.select(2, 0.0, self.pop, np.random.default_rng(0))
    self.oort.observe(2, _feedback(
        2, [1, 4, 5], durations=[1.0, 1.0, 1.0],
        loss_sq_sum=[100 * 4.0, 100 * 9.0, 100 * 1.0], loss_count=[100.0] * 3,
        num_examples=self.pop.num_examples[[1, 4, 5]]))
    # By hand: 100 * sqrt(4) = 200, 50 * sqrt(9) = 150, 10 * sqrt(1) = 10.
    np.testing.assert_allclose(self.oort.utility[[1, 4, 5]], [200.0, 150.0, 10.0])

  def test_stragglers_get_the_round_mean_utility(self):
    # FedScale's round_completion_handler: stragglers get the mean utility of
    # the round's finishers, the round as time stamp, and one more count.
    self.oort.select(2, 0.0, self.pop, np.random.default_rng(0))
    self.oort.observe(2, _feedback(
        2, [4, 5, 0], durations=[1.0, 5.0, 9.0],
        loss_sq_sum=[50 * 4.0, 0.0, np.nan], loss_count=[50.0, 10.0, 0.0],
        status=[0, 0, accounting.Status.STRAGGLER],
        num_examples=self.pop.num_examples[[4, 5, 0]]))
    # Finishers: 50 * 2 = 100 and 10 * 0 = 0: mean 50.
    self.assertAlmostEqual(self.oort.utility[0], 50.0)
    self.assertEqual(self.oort.count[0], 2)
    self.assertEqual(self.oort.last_round[0], 2)
    self.assertEqual(self.oort.duration_s[0], 9.0)

  def test_straggler_feedback_off_leaves_them_as_they_were(self):
    selector = oort.OortSelector(2, straggler_feedback=False)
    selector.select(1, 0.0, self.pop, np.random.default_rng(0))
    selector.observe(1, _feedback(
        1, [0, 1], durations=[1.0, 2.0], loss_sq_sum=[4.0, np.nan],
        loss_count=[1.0, 0.0], status=[0, accounting.Status.STRAGGLER]))
    np.testing.assert_array_equal(selector.count[:2], [1, 0])
    self.assertEqual(selector.utility[1], 0.0)

  def test_defaults_are_fedscales(self):
    # FedScale's config_parser.py: --clip_bound 0.9, --cut_off_util 0.05.
    selector = oort.OortSelector(1)
    self.assertEqual((selector.clip_bound, selector.cut_off_util), (0.9, 0.05))
    self.assertTrue(selector.straggler_feedback)

  def test_exploitation_scores_by_hand(self):
    self.oort.preferred_duration_s = 15.0
    self.oort.clip_bound = 0.5
    scores = self.oort.exploitation_scores(5, np.array([0, 1, 2]))
    # Utilities 2, 4, 16: clipped at the 50th percentile (4), min 2 * 0.999.
    low, spread = 2 * 0.999, 16 - 2 * 0.999
    bonus = math.sqrt(0.1 * math.log(4) / 1)  # round 5 is Oort's 4th call
    expected = np.array([(2 - low) / spread + bonus,
                         ((4 - low) / spread + bonus) * (15 / 20) ** 2,
                         ((4 - low) / spread + bonus) * (15 / 30) ** 2])
    np.testing.assert_allclose(scores, expected, rtol=1e-12)

  def test_preferred_duration_is_a_percentile_of_all_durations(self):
    # Unknown durations come from the simulation's estimator.
    self.oort.bind(lambda clients: np.full(len(clients), 50.0))
    self.oort.round_percentile = 50.0
    # Durations: 10, 20, 30, 40, 50, 50 -> index int(6 * 0.5) = 3 -> 40.
    self.assertEqual(self.oort.update_preferred_duration(), 40.0)
    self.oort.round_percentile = 100.0
    self.assertEqual(self.oort.update_preferred_duration(), math.inf)

  def test_staleness_raises_the_score_of_clients_not_seen_for_long(self):
    self.oort.preferred_duration_s = math.inf
    self.oort.observe(9, _feedback(9, [1], [20.0], [4.0], [4.0]))
    self.oort.observe(1, _feedback(1, [2], [20.0], [4.0], [4.0]))  # utility 4 too
    # Clients 1 and 2 have utility 4; 2 last trained in round 1, 1 in round 9.
    s1, s2 = self.oort.exploitation_scores(10, np.array([1, 2]))
    self.assertGreater(s2, s1)
    self.assertAlmostEqual(s2 - s1, math.sqrt(0.1 * math.log(9))
                           * (1 - math.sqrt(1 / 9)))


class OortPacerTest(absltest.TestCase):

  def _oort_with_history(self, history):
    selector = oort.OortSelector(10, round_percentile=30.0, pacer_step=20,
                                 pacer_delta=5.0)
    selector.exploit_utility_history = np.asarray(history, np.float64)
    return selector

  def test_flat_utility_moves_to_a_later_percentile(self):
    selector = self._oort_with_history(np.full(40, 10.0))
    selector.pacer(41)  # FedScale's 40th Oort call
    self.assertEqual(selector.round_percentile, 35.0)
    selector.pacer(42)  # only every pacer_step rounds
    self.assertEqual(selector.round_percentile, 35.0)

  def test_changing_utility_keeps_the_percentile(self):
    selector = self._oort_with_history(np.concatenate([np.full(20, 10.0),
                                                       np.full(20, 13.0)]))
    selector.pacer(41)
    self.assertEqual(selector.round_percentile, 30.0)

  def test_sharp_change_moves_to_an_earlier_percentile(self):
    selector = self._oort_with_history(np.concatenate([np.full(20, 1.0),
                                                       np.full(20, 7.0)]))
    selector.pacer(41)
    self.assertEqual(selector.round_percentile, 25.0)

  def test_too_early_does_nothing(self):
    selector = self._oort_with_history(np.full(20, 10.0))
    selector.pacer(21)
    self.assertEqual(selector.round_percentile, 30.0)

  def test_pacer_runs_from_observed_rounds(self):
    pop = _population(np.full(30, 100))
    selector = oort.OortSelector(3, exploration=0.0, exploration_min=0.0,
                                 pacer_step=2, pacer_delta=5.0, round_percentile=30.0)
    rng = np.random.default_rng(0)
    for r in range(1, 7):
      picked = selector.select(r, 0.0, pop, rng)
      n = len(picked)
      selector.observe(r, _feedback(r, picked, np.full(n, 5.0),
                                    np.full(n, 4.0), np.full(n, 4.0)))
    # Round 1 is uniform (nothing exploited: 0); rounds 2-6 exploit clients of
    # equal utility. Before round 5 rounds 3-4 doubled rounds 1-2; before
    # round 7 rounds 5-6 matched rounds 3-4.
    self.assertEqual(selector.round_percentile, 35.0)
    self.assertLen(selector.exploit_utility_history, 4)  # 2 x pacer_step kept

  def test_the_pacer_moves_once_per_round_however_often_select_is_called(self):
    pop = _population(np.full(30, 100))
    selector = oort.OortSelector(3, pacer_step=2, pacer_delta=5.0,
                                 round_percentile=30.0)
    selector.select(1, 0.0, pop, np.random.default_rng(0))
    # With this round's 0 (nobody trained), rounds 1-2 and 3-4 sum to 10 each:
    # flat, so the percentile moves on.
    selector.exploit_utility_history = np.array([5.0, 5.0, 10.0])
    selector.observe(4, _feedback(4, [], np.zeros(0), np.zeros(0), np.zeros(0)))
    self.assertEqual(selector.round_percentile, 35.0)  # prepared for round 5
    for draw in range(3):  # e.g. an async server step refilling three times
      selector.select(5, 0.0, pop, np.random.default_rng(draw))
    self.assertEqual(selector.round_percentile, 35.0)


class OortFedScaleTrajectoryTest(absltest.TestCase):
  """FedScale's run: 300 clients always online, K = 10, over-commit 1.3,
  70 rounds, each round's 10 fastest invited train and the other 3 straggle.
  Expected values are FedScale's rules written out here, not the selector's
  code: round 1 uniform; Oort's c-th call in round c + 1; e decayed once per
  call before use; n - int(n e) exploited; the pacer on calls 40, 60."""

  ROUNDS, K, INVITED = 70, 10, 13

  def setUp(self):
    super().setUp()
    self.pop = _population(np.full(300, 100))
    self.duration_s = 10.0 + np.arange(300)  # distinct: known percentiles
    selector = oort.OortSelector(self.K, overcommit=1.3)
    selector.bind(lambda c: self.duration_s[np.asarray(c)])
    self.metrics, self.unexplored = {}, {}
    rng = np.random.default_rng(0)
    for r in range(1, self.ROUNDS + 1):
      self.unexplored[r] = int(np.sum(selector.count == 0))
      picked = selector.select(r, 0.0, self.pop, rng)
      self.assertLen(picked, self.INVITED)
      order = np.argsort(self.duration_s[picked], kind='stable')
      status = np.zeros(self.INVITED, np.int8)
      status[order[self.K:]] = accounting.Status.STRAGGLER
      n = self.INVITED
      # Equal losses: every utility is 100 (flat, so the pacer moves on).
      selector.observe(r, _feedback(r, picked, self.duration_s[picked],
                                    np.full(n, 100.0), np.full(n, 100.0), status,
                                    self.pop.num_examples[picked]))
      self.metrics[r] = selector.round_metrics()

  def test_round_one_is_uniform(self):
    first = self.metrics[1]
    self.assertTrue(math.isnan(first['oort_exploration']))
    self.assertTrue(math.isnan(first['oort_preferred_duration_s']))
    self.assertEqual((first['oort_exploited'], first['oort_explored']), (0, 0))

  def test_exploration_and_exploitation_lengths(self):
    for r in range(2, self.ROUNDS + 1):
      e = 0.9
      for _ in range(r - 1):  # one decay per Oort call, before it is used
        e = max(e * 0.98, 0.3)
      got = self.metrics[r]
      self.assertAlmostEqual(got['oort_exploration'], e, places=12, msg=r)
      self.assertEqual(got['oort_exploited'], self.INVITED - int(self.INVITED * e), msg=r)
      self.assertEqual(got['oort_explored'],
                       min(int(self.INVITED * e), self.unexplored[r]), msg=r)
    self.assertAlmostEqual(self.metrics[2]['oort_exploration'], 0.882)
    self.assertAlmostEqual(self.metrics[41]['oort_exploration'], 0.40113, places=5)
    self.assertEqual(self.metrics[41]['oort_exploited'], 8)
    self.assertEqual(self.metrics[70]['oort_exploited'], 10)  # 0.3 floor: 13 - 3

  def test_the_pacer_first_moves_in_round_41_then_61(self):
    # T = sorted durations[int(300 p / 100)]: 30 -> 35 -> 40th percentile.
    expected = {r: 10.0 + (90 if r <= 40 else 105 if r <= 60 else 120)
                for r in range(2, self.ROUNDS + 1)}
    got = {r: self.metrics[r]['oort_preferred_duration_s'] for r in expected}
    self.assertEqual(got, expected)


class OortSelectTest(absltest.TestCase):

  def test_exploration_decays_to_its_floor(self):
    pop = _population(np.full(10, 10))
    selector = oort.OortSelector(2, exploration=0.9, exploration_decay=0.5,
                                 exploration_min=0.3)
    selector.select(2, 0.0, pop, np.random.default_rng(0))
    self.assertAlmostEqual(selector.exploration, 0.45)
    selector.select(3, 0.0, pop, np.random.default_rng(0))
    self.assertAlmostEqual(selector.exploration, 0.3)

  def test_exploration_is_a_function_of_the_round(self):
    # FedScale's update, exploration = max(exploration x decay, min), applied
    # once per Oort call (rounds 2-7) by hand: the selector's value for round 7
    # is the same however many times rounds 1-7 selected (async steps select
    # repeatedly).
    pop = _population(np.full(10, 10))
    selector = oort.OortSelector(2, exploration=0.9, exploration_decay=0.98,
                                 exploration_min=0.3)
    for round_num in range(1, 8):
      for draw in range(round_num):  # 1, 2, ... 7 calls
        selector.select(round_num, 0.0, pop, np.random.default_rng(draw))
    expected = 0.9
    for _ in range(6):
      expected = max(expected * 0.98, 0.3)
    self.assertAlmostEqual(selector.exploration, expected, places=12)
    self.assertAlmostEqual(selector.exploration_at(100), 0.3)

  def test_unexplored_are_sampled_by_size_and_speed(self):
    # 0: big and fast, 1: big and slow, 2..9: small and fast.
    sizes = [1000, 1000] + [10] * 8
    pop = _population(sizes)
    counts = np.zeros(10)
    for seed in range(300):
      selector = oort.OortSelector(1, exploration=1.0, round_percentile=50.0)
      selector.bind(lambda c: np.where(np.asarray(c) == 1, 1000.0, 1.0),
                    lambda c: pop.num_examples[c])  # epochs: trains on all its data
      (picked,) = selector.select(2, 0.0, pop, np.random.default_rng(seed))
      counts[picked] += 1
    # Client 1 is penalized (1/1000)^2; client 0 dominates the small ones.
    self.assertGreater(counts[0], 200)
    self.assertLess(counts[1], 5)

  def test_exploration_prior_is_distinct_examples(self):
    # Steps mode processes 100 examples each; FedScale registers
    # min(n, local_steps x batch): 10, 50, 100, 100.
    pop = _population([10, 50, 100, 400])
    selector = oort.OortSelector(1, exploration=1.0, round_percentile=100.0)
    selector.bind(lambda c: np.ones(len(c)), lambda c: np.full(len(c), 100))
    np.testing.assert_array_equal(selector._samples(pop, np.arange(4)),
                                  [10.0, 50.0, 100.0, 100.0])

  def test_exploits_high_utility_clients(self):
    pop = _population(np.full(100, 100))
    selector = oort.OortSelector(5, exploration=0.0, exploration_min=0.0)
    selector.select(1, 0.0, pop, np.random.default_rng(0))
    clients = np.arange(100)
    # 0-19: large losses (more than the 10% that the 0.9 clip bound flattens).
    losses = np.where(clients < 20, 100.0, 1.0)
    selector.observe(1, _feedback(1, clients, np.ones(100), losses, np.ones(100)))
    state = selector.get_state()
    counts = np.zeros(100)
    for seed in range(200):
      selector.set_state(state)  # round 3 again, with another random stream
      picked = selector.select(3, 0.0, pop, np.random.default_rng(seed))
      self.assertLen(np.unique(picked), 5)
      np.testing.assert_array_equal(np.sort(picked), selector.last_exploited)
      counts[picked] += 1
    # Scores ~1 + b vs ~0 + b with staleness bonus b = sqrt(0.1 ln(3 - 1)): the
    # high-utility clients are picked about 4.8x as often as the others.
    ratio = counts[:20].mean() / counts[20:].mean()
    self.assertBetween(ratio, 3.5, 6.5)

  def test_picks_distinct_online_clients(self):
    pop = _population(np.arange(1, 201))
    selector = oort.OortSelector(10, overcommit=1.3)
    rng = np.random.default_rng(0)
    for r in range(1, 6):
      picked = selector.select(r, 0.0, pop, rng)
      self.assertLen(picked, 13)
      self.assertLen(np.unique(picked), 13)
      selector.observe(r, _feedback(r, picked, np.ones(13), np.ones(13), np.ones(13)))

  def test_blacklist_skips_over_selected_clients(self):
    pop = _population(np.full(10, 10))
    selector = oort.OortSelector(3, blacklist_rounds=2, blacklist_max_share=0.2)
    selector.select(1, 0.0, pop, np.random.default_rng(0))
    selector.count[:] = [5, 4, 3, 0, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(np.sort(selector.blacklist()), [0, 1])  # cap 2
    for seed in range(20):
      picked = selector.select(2, 0.0, pop, np.random.default_rng(seed))
      self.assertEmpty(np.intersect1d(picked, [0, 1]))

  def test_state_round_trips(self):
    pop = _population(np.arange(1, 51))
    a = oort.OortSelector(5)
    rng = np.random.default_rng(0)
    for r in range(1, 4):
      picked = a.select(r, 0.0, pop, rng)
      a.observe(r, _feedback(r, picked, np.arange(len(picked)) + 1.0,
                             np.ones(len(picked)), np.ones(len(picked))))
    state = a.get_state()
    for value in state.values():
      self.assertIsInstance(value, (np.ndarray, np.generic))
    self.assertEqual(set(state), {'round_percentile', 'utility', 'duration_s',
                                  'last_round', 'count', 'exploit_utility_history'})
    b = oort.OortSelector(5)
    self.assertEqual(set(b.get_state()), set(state))  # same structure before use
    b.set_state(state)
    np.testing.assert_array_equal(a.select(4, 0.0, pop, np.random.default_rng(9)),
                                  b.select(4, 0.0, pop, np.random.default_rng(9)))
    # A fresh selector loaded from a state learns like the original even when
    # it observes before selecting (an async step resumed with every training
    # slot busy observes arrivals first).
    c = oort.OortSelector(5)
    c.set_state(state)
    a.set_state(state)
    feedback = _feedback(4, [0, 1], [1.0, 2.0], [4.0, 9.0], [1.0, 1.0])
    a.observe(4, feedback)
    c.observe(4, feedback)
    for key, value in a.get_state().items():
      np.testing.assert_array_equal(c.get_state()[key], value, err_msg=key)
    np.testing.assert_allclose(c.utility[[0, 1]], [2.0, 3.0])
    with self.assertRaisesRegex(ValueError, 'num_examples'):
      c.observe(5, selection.RoundFeedback.from_outcome(feedback))


  def test_checkpoint_round_trip(self):
    pop = _population(np.arange(1, 51))
    a = oort.OortSelector(5)
    rng = np.random.default_rng(0)
    for r in range(1, 4):
      picked = a.select(r, 0.0, pop, rng)
      a.observe(r, _feedback(r, picked, np.ones(len(picked)), np.ones(len(picked)),
                             np.ones(len(picked))))
    checkpointer = checkpoint.Checkpointer(
        self.enterContext(tempfile.TemporaryDirectory()), every_rounds=1)
    checkpointer.save(3, {'selector_state': a.get_state()})
    b = oort.OortSelector(5)  # a fresh selector's state is the structure
    saved = checkpointer.load_latest({'selector_state': b.get_state()})
    b.set_state(saved['selector_state'])
    for key, value in a.get_state().items():
      np.testing.assert_array_equal(b.get_state()[key], value, err_msg=key)

  def test_idle_rounds_change_nothing(self):
    pop = _population(np.full(10, 10))
    selector = oort.OortSelector(2)
    selector.select(1, 0.0, pop, np.random.default_rng(0))
    before = selector.get_state()
    nobody = population_lib.Population(
        pop.client_ids, pop.num_examples, pop.devices,
        availability.AvailabilityTrace(np.zeros(11, np.int64), np.zeros(0, np.int32),
                                       np.zeros(0, np.int32), np.full(10, 100, np.int32)),
        pop.device_row, pop.availability_row)
    self.assertEmpty(selector.select(40, 0.0, nobody, np.random.default_rng(0)))
    for key, value in before.items():
      np.testing.assert_array_equal(selector.get_state()[key], value, err_msg=key)


class SelectorPluginTest(absltest.TestCase):

  def test_fastest_first(self):
    pop = _population(np.full(6, 10), compute_ms=[6, 5, 4, 3, 2, 1])
    selector = selection.build_selector('fastest', 2, 1.5)
    self.assertCountEqual(selector.select(1, 0.0, pop, np.random.default_rng(0)),
                          [5, 4, 3])
    selector.bind(lambda c: np.asarray(c, np.float64))  # now 0 is fastest
    self.assertCountEqual(selector.select(1, 0.0, pop, np.random.default_rng(0)),
                          [0, 1, 2])

  def test_by_name_module_path_or_object(self):
    self.assertIsInstance(selection.build_selector('oort', 5, 1.0), oort.OortSelector)
    self.assertIsInstance(
        selection.build_selector('tf_fedscale.oort:OortSelector', 5, 1.0),
        oort.OortSelector)
    mine = selection.UniformSelector(3)
    self.assertIs(selection.build_selector(mine, 5, 1.0), mine)

    class Mine(selection.UniformSelector):
      pass

    selection.register_selector('mine_for_test', Mine)
    try:
      self.assertIsInstance(selection.build_selector('mine_for_test', 5, 1.0), Mine)
    finally:
      del selection.SELECTORS['mine_for_test']
    with self.assertRaisesRegex(ValueError, 'Cannot load selector'):
      selection.build_selector('tf_fedscale.oort:Nope', 5, 1.0)

  def test_feedback_rms_loss(self):
    feedback = _feedback(1, [4, 7], [1.0, 2.0], [8.0, np.nan], [2.0, 0.0])
    np.testing.assert_allclose(feedback.rms_loss, [2.0, np.nan])
    np.testing.assert_allclose(feedback.client_duration_s, [1.0, 2.0])
    self.assertIsInstance(feedback, accounting.RoundOutcome)


if __name__ == '__main__':
  absltest.main()
