"""Tests that every random draw comes from --seed: DP and compressed runs replay, and a
resumed run equals the uninterrupted one, byte for byte (in this process)."""

import csv
import io
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import setup
from tf_fedscale.experiments.configs import default as default_config

SMALL = dict(task_options='num_clients=30', clients_per_round=3, eval_every=1,
             eval_clients=5, local_steps=2, batch_size=5, checkpoint_every=1,
             execution='inprocess')
RESULTS = ('metrics.csv', 'clients.csv')


def _run(output_dir: str, rounds: int, resume: bool = False, **changes) -> dict[str, str]:
  """The run's result files after `rounds` (continuing the newest checkpoint
  with `resume`)."""
  config = config_util.apply_overrides(default_config.get_config(),
                                       dict(SMALL, rounds=rounds, **changes))
  os.makedirs(output_dir, exist_ok=True)
  setup.build_experiment(config).run(output_dir, resume=resume)
  results = {}
  for name in RESULTS:
    with open(os.path.join(output_dir, name), newline='') as f:
      results[name] = f.read()
  return results


class ReplayTest(parameterized.TestCase):

  @parameterized.parameters('dp', 'quantize')
  def test_same_seed_same_bytes_and_resume_equals_the_uninterrupted_run(self, aggregator):
    tmp = self.enterContext(tempfile.TemporaryDirectory())
    reference = _run(os.path.join(tmp, 'reference'), 4, aggregator=aggregator)
    # Rounds 0-2 come from a second run of the same flags, 3-4 from its checkpoint.
    resumed_dir = os.path.join(tmp, 'resumed')
    _run(resumed_dir, 2, aggregator=aggregator)
    self.assertEqual(_run(resumed_dir, 4, resume=True, aggregator=aggregator), reference)
    # Every round evaluated a model that moved: the files hold what the draws made.
    rows = list(csv.DictReader(io.StringIO(reference['metrics.csv'])))
    self.assertLen({row['eval_loss'] for row in rows}, 5)


if __name__ == '__main__':
  absltest.main()
