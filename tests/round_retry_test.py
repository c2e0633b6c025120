"""Tests for tf_fedscale.round_retry: a failed round runs again from its state."""

import types

from absl.testing import absltest

from tf_fedscale import round_retry


class _Selector:

  def __init__(self):
    self.draws = []

  def get_state(self):
    return {'draws': list(self.draws)}

  def set_state(self, state):
    self.draws = list(state['draws'])


class _Pool:
  """Runs `fn` up to twice: the first attempt of round 2 fails."""

  def __init__(self):
    self.recycled = []

  def call(self, fn, *args, description='call', on_retry=None):
    try:
      return fn(*args)
    except ConnectionError:
      on_retry()
      return fn(*args)

  def recycle_grown_workers(self, when):
    self.recycled.append(when)


class RoundRetryTest(absltest.TestCase):

  def test_failed_round_is_rerun_with_the_selector_rewound(self):
    selector = _Selector()
    failures = [1]

    def run_round(state):
      selector.draws.append(state.round_num + 1)
      if state.round_num == 1 and failures:
        failures.pop()
        raise ConnectionError('worker lost')
      return types.SimpleNamespace(round_num=state.round_num + 1), {}

    sim = types.SimpleNamespace(selector=selector, run_round=run_round,
                                evaluate_initial=lambda state: {'round': 0})
    pool = _Pool()
    round_retry.protect(pool, sim)
    state = types.SimpleNamespace(round_num=0)
    self.assertEqual(sim.evaluate_initial(state), {'round': 0})
    for _ in range(3):
      state, _ = sim.run_round(state)
    self.assertEqual(state.round_num, 3)
    self.assertEqual(selector.draws, [1, 2, 3])  # the failed draw was rewound
    self.assertEqual(pool.recycled, ['after round 1', 'after round 2',
                                     'after round 3'])


if __name__ == '__main__':
  absltest.main()
