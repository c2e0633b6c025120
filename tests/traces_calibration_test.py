"""Checks traces/calibrated.py against the FLASH files in ../shared (skipped when
they are absent, failed then in CI, see cases.SharedDataTestCase): the closed-form fits reproduce the committed
numbers, and the generator with them matches the data.

Tolerances: refitted compute and network parameters equal the committed ones to
their 4 significant digits (0.1%); generated weekly online hours within 25% of
the 1,000 real devices' 10th-90th percentiles and the mean online fraction
within 0.03; the committed availability fit's loss below 0.1 (sum of squared
log-errors of those quantiles and the relative error of the mean).
"""

import os

from absl.testing import absltest
import numpy as np

from tf_fedscale.traces import calibrate
from tf_fedscale.traces import calibrated
from tf_fedscale.traces import default
from tf_fedscale.traces import stats
from tests import cases

SHARED = cases.SHARED


class CalibrationTest(cases.SharedDataTestCase):

  def setUp(self):
    super().setUp()
    for folder in (calibrate.FLASH, calibrate.AGGREGATES):
      self.dataset(os.path.basename(folder))

  def assertMatchesCommitted(self, fitted: dict):
    for name, value in fitted.items():
      self.assertAlmostEqual(calibrated.FITTED[name] / value, 1.0, delta=1e-3, msg=name)

  def test_compute_fit_is_reproduced(self):
    fitted, diagnostics = calibrate.fit_compute(SHARED)
    self.assertMatchesCommitted(fitted)
    self.assertEqual(diagnostics['phones'], 254)
    self.assertEqual(calibrated.TARGETS['compute_ms_quantiles'],
                     diagnostics['phone_ms_quantiles'])

  def test_network_fit_is_reproduced(self):
    fitted, _ = calibrate.fit_network(SHARED)
    self.assertMatchesCommitted(fitted)
    self.assertGreater(fitted['download_median_kbps'], fitted['upload_median_kbps'])

  def test_availability_targets_are_the_data(self):
    hours = calibrate.weekly_charging_hours(SHARED)
    self.assertLen(hours, 1000)
    targets = calibrate.availability_targets(hours)
    for key in ('weekly_online_hours_quantiles', 'mean_online_fraction'):
      self.assertEqual(calibrated.TARGETS[key], targets[key])

  def test_generator_matches_real_charging(self):
    hours = calibrate.weekly_charging_hours(SHARED)
    trace = default.generate_availability(20_000, seed=7)
    generated = stats.online_fraction_per_device(trace) * calibrate.WEEK_H
    for q in calibrate.FIT_QUANTILES:
      self.assertAlmostEqual(np.quantile(generated, q) / np.quantile(hours, q), 1.0,
                             delta=0.25, msg=f'q={q}')
    self.assertAlmostEqual(generated.mean(), hours.mean(), delta=0.03 * calibrate.WEEK_H)
    loss = calibrate._availability_loss(  # pylint: disable=protected-access
        generated, calibrate.availability_targets(hours))
    self.assertLess(loss, 0.1)

  def test_generator_matches_ai_benchmark(self):
    phones = calibrate.ai_benchmark_phones(SHARED)
    scores = np.array([p['ai_score'] for p in phones if p['ram_gb'] > calibrate.MIN_RAM_GB])
    phone_ms = calibrate.fit_compute(SHARED)[1]['scale_ms_times_score'] / scores
    generated = default.generate_devices(20_000, seed=7).compute_ms_per_sample
    for q in calibrate.FIT_QUANTILES:
      self.assertAlmostEqual(np.quantile(generated, q) / np.quantile(phone_ms, q), 1.0,
                             delta=0.2, msg=f'q={q}')


if __name__ == '__main__':
  absltest.main()
