"""traces/validate_compute.py and the compute-cost fit, on FLASH's real grids
(../shared; skipped when absent, failed then in CI, see cases.SharedDataTestCase)."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
from scipy import optimize

from tf_fedscale import model_cost
from tf_fedscale.traces import calibrate
from tf_fedscale.traces import calibrated
from tf_fedscale.traces import flash_grids
from tests import cases

SHARED = cases.SHARED


class ValidateComputeTest(cases.SharedDataTestCase):

  def setUp(self):
    super().setUp()
    for folder in (calibrate.FLASH, calibrate.AGGREGATES):
      self.dataset(os.path.basename(folder))

  def test_output_layer_point_features_by_hand(self):
    # Output grid point (0.25, 1.0, 0.4, 1.0): dense 250 -> 10,000, batch 20, seq 10.
    with open(os.path.join(SHARED, calibrate.FLASH, 'regression', 'redmi_note8',
                           'output.json')) as f:
      raw = json.load(f)
    index = int(np.flatnonzero(np.all(np.isclose(raw['X'], [0.25, 1.0, 0.4, 1.0]),
                                      axis=1))[0])
    grid = flash_grids.read_grid(SHARED, 'redmi_note8')
    row = np.flatnonzero(grid.layer == 'output')[index]
    np.testing.assert_allclose(
        grid.features[row],
        [3 * 10 * (2 * 250 * 10_000 + 10_000) * 20, 250 * 10_000 + 10_000, 0, 1])
    self.assertEqual(grid.seconds[row], np.ravel(raw['Y'])[index])

  def test_committed_coefficients_are_reproduced(self):
    fitted, diagnostics = calibrate.fit_compute_cost(SHARED)
    for name, value in fitted.items():
      self.assertAlmostEqual(calibrated.COMPUTE_COST[name] / value, 1.0, delta=1e-3,
                             msg=name)
    for phone, score in {'nexus6': 15.0, 'redmi_note8': 19.0,
                         'sumsung_note10': np.sqrt(49.0 * 45.0)}.items():
      self.assertAlmostEqual(diagnostics['phone_cpu_f_score'][phone], score, places=9)

  def test_cli_figures_match_an_independent_fit(self):
    done = subprocess.run([sys.executable, '-m', 'tf_fedscale.traces.validate_compute',
                           f'--shared_dir={SHARED}'], cwd=cases.REPO_ROOT, check=True,
                          capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    records = [json.loads(line) for line in done.stdout.splitlines()]
    variants = [('flops', 'cpu_f_score'), ('flops', 'fitted_to_phone'),
                ('fedscale', 'cpu_f_score')]
    self.assertEqual([(r['phone'], r['compute_model'], r['speed']) for r in records],
                     [(p, *v) for p in [*flash_grids.PHONE_SOCS, 'all'] for v in variants])
    speeds = flash_grids.phone_speeds(SHARED)
    grids = {p: flash_grids.read_grid(SHARED, p) for p in speeds}
    pooled = []
    for record in records[:-3:3]:
      phone = record['phone']
      self.assertNotIn(phone, record['trained_on'])
      rows = np.concatenate([g.features / (speeds[p] * g.seconds[:, None])
                             for p, g in grids.items() if p != phone])
      scale = rows.max(axis=0)
      fit = optimize.lsq_linear(rows / scale, np.ones(len(rows)), bounds=(0, np.inf),
                                tol=1e-12)
      predicted = grids[phone].features @ (fit.x / scale) / speeds[phone]
      errors = np.abs(predicted / grids[phone].seconds - 1) * 100
      pooled.append(errors)
      self.assertAlmostEqual(record['median_abs_pct_error'], np.median(errors), delta=0.05)
      self.assertAlmostEqual(record['p90_abs_pct_error'], np.quantile(errors, 0.9),
                             delta=0.05)
      self.assertEqual(record['points'], 60_000)
      # FedScale's rule: time = c x batch / speed, c fitted to the two phones.
      a = np.concatenate([g.batch_size / (speeds[p] * g.seconds)
                          for p, g in grids.items() if p != phone])
      c = np.linalg.lstsq(a[:, None], np.ones(len(a)), rcond=None)[0][0]
      fedscale = np.abs(c * grids[phone].batch_size / speeds[phone]
                        / grids[phone].seconds - 1) * 100
      self.assertAlmostEqual(records[records.index(record) + 2]['median_abs_pct_error'],
                             np.median(fedscale), delta=0.05)
    self.assertAlmostEqual(records[-3]['median_abs_pct_error'],
                           np.median(np.concatenate(pooled)), delta=0.05)
    self.assertEqual(records[-3]['points'], 180_000)

  def test_coefficients_are_non_negative_and_predict_the_fitted_phones(self):
    coefficients = model_cost.StepCoefficients(**calibrated.COMPUTE_COST)
    speeds = flash_grids.phone_speeds(SHARED)
    grid = flash_grids.read_grid(SHARED, 'sumsung_note10')
    ratio = flash_grids.predict_s(coefficients, grid, speeds['sumsung_note10']) / grid.seconds
    self.assertBetween(float(np.median(ratio)), 0.5, 2.0)


if __name__ == '__main__':
  absltest.main()
