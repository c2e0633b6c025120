"""`make demo`: the default experiment on a task a linear model can learn, in daytime.

- Synthetic(0.5, 0.5) with `shared_model=True`: one labelling model for all 1,000
  clients (their features and sizes still differ), so eval accuracy climbs within 30
  rounds; with per-client models (the default task) FedAvg plateaus near 0.18.
- 20 rounds of 50 clients (about 1 visit per client), evaluated every 2 rounds on 200
  test clients: the curve has 11 points, and the run takes about 2 CPU-minutes.
- The virtual clock starts at noon (`start_time_h=12`), when online devices are on short
  daytime top-up charges: some leave mid-round (drop-outs) on top of the stragglers cut
  by the 1.3x over-commitment. At midnight nearly every online device is on its long
  overnight charge and drop-outs are rare.
"""

import ml_collections

from tf_fedscale.experiments.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.task_options = 'shared_model=true'
  config.start_time_h = 12.0
  config.rounds = 20
  config.eval_every = 2
  return config
