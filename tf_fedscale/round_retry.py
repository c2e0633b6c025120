"""Makes a simulation's rounds survive worker failures by running them again.

A round is a function of (state, round number) once the selector is rewound,
so a failed round is run again from the same state; after each round, local
workers whose memory grew are recycled.
"""

import copy
from typing import Any


def protect(pool: Any, sim: Any) -> None:
  """Wraps `sim.run_round` (and round 0) in `pool.call`'s recovery
  (`pool`: a `worker_pool.WorkerPool`)."""
  run_round = sim.run_round
  evaluate_initial = sim.evaluate_initial

  def run_round_with_recovery(state):
    saved = copy.deepcopy(sim.selector.get_state())
    result = pool.call(
        run_round, state, description=f'round {state.round_num + 1}',
        on_retry=lambda: sim.selector.set_state(copy.deepcopy(saved)))
    pool.recycle_grown_workers(f'after round {state.round_num + 1}')
    return result

  def evaluate_initial_with_recovery(state):
    return pool.call(evaluate_initial, state, description='round 0')

  sim.run_round = run_round_with_recovery
  sim.evaluate_initial = evaluate_initial_with_recovery
