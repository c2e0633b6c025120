"""--compute_model: per-layer costs of Keras models, and the flops compute time."""

import csv
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale import accounting
from tf_fedscale import availability
from tf_fedscale import keras_cost
from tf_fedscale import model_cost
from tf_fedscale import population as population_lib
from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import setup
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale.tasks import models
from tf_fedscale.traces import compute_model
from tf_fedscale.traces import flash_grids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**changes):
  return config_util.apply_overrides(default_config.get_config(), changes)


def _femnist_cnn_forward_flops() -> int:
  conv1 = 26 * 26 * 32 * (2 * 3 * 3 * 1 + 1)
  conv2 = 24 * 24 * 64 * (2 * 3 * 3 * 32 + 1)
  pool, flatten = 12 * 12 * 64, 12 * 12 * 64
  dense1 = 2 * 9216 * 128 + 128
  dense2 = 2 * 128 * 62 + 62
  return conv1 + conv2 + pool + flatten + dense1 + dense2


class KerasCostTest(absltest.TestCase):

  def test_cnn_counted_by_hand(self):
    model = models.femnist_cnn()
    cost = keras_cost.keras_model_cost(model, (28, 28, 1))
    self.assertEqual(cost.forward_flops, _femnist_cnn_forward_flops())
    self.assertEqual(cost.params, model.count_params())
    self.assertEqual(cost.sequential_steps, 0)
    self.assertEqual(cost.training_flops, 3 * cost.forward_flops)

  def test_lstm_counted_by_hand(self):
    model = models.char_lstm(vocab_size=90, embedding_dim=8, units=16, layers=1)
    cost = keras_cost.keras_model_cost(model, (5,))
    lstm = 5 * (2 * 4 * 16 * (8 + 16) + 14 * 16)
    self.assertEqual(cost.forward_flops, 5 * 8 + lstm + 5 * (2 * 16 * 90 + 90))
    self.assertEqual(cost.params, model.count_params())
    self.assertEqual(cost.sequential_steps, 5)

  def test_params_match_keras_for_every_task_model(self):
    for model, shape in ((models.resnet('resnet18', 10, (32, 32, 3), width=8), (32, 32, 3)),
                         (models.mobilenet_v2(10, (32, 32, 3), alpha=0.35), (32, 32, 3)),
                         (models.word_lstm(100, 8, 16, 8), (6,)),
                         (models.text_classifier(100, 5, 8, 8), (6,))):
      with self.subTest(model.name):
        cost = keras_cost.keras_model_cost(model, shape)
        self.assertEqual(cost.params, sum(int(np.prod(w.shape))
                                          for w in model.trainable_weights))
        self.assertGreater(cost.forward_flops, 0)

  def test_unknown_dimensions_and_layers_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'unknown dimension'):
      keras_cost.keras_model_cost(models.text_classifier(100, 5, 8, 8), (None,))
    conv1d = tf.keras.Sequential([tf.keras.layers.Conv1D(4, 3)])
    with self.assertRaisesRegex(ValueError, "no cost rule for layer .*Conv1D"):
      keras_cost.keras_model_cost(conv1d, (10, 2))


class FlopsComputeTimeTest(absltest.TestCase):

  def _compute_s(self, model, shape, coefficients, batch_size=20):
    devices = population_lib.DeviceProfiles.uniform(4, compute_ms_per_sample=10.0,
                                                     download_kbps=1e6, upload_kbps=1e6)
    factor = compute_model.flops_scale(keras_cost.keras_model_cost(model, shape),
                                       batch_size, coefficients)
    pop = population_lib.Population.build(
        [str(i) for i in range(4)], np.full(4, 100), compute_model.scale_devices(
            devices, factor), availability.AvailabilityTrace.always(4), seed=0)
    accountant = accounting.LatencyAccountant(pop, clients_per_round=4)
    _, compute_s, _ = accountant.client_times(np.arange(4), np.full(4, 100), 0, 0)
    return compute_s

  def test_cnn_costs_its_flop_ratio_over_logistic_regression(self):
    flops_only = model_cost.StepCoefficients(1e-9, 0.0, 0.0, 0.0)
    cnn = self._compute_s(models.femnist_cnn(), (28, 28, 1), flops_only)
    logistic = self._compute_s(models.logistic_regression(784, 62), (784,), flops_only)
    logistic_flops = 2 * 784 * 62 + 62
    np.testing.assert_allclose(cnn / logistic,
                               _femnist_cnn_forward_flops() / logistic_flops, rtol=1e-5)

  def test_fitted_coefficients_charge_the_cnn_more_by_its_cost_ratio(self):
    cnn_model, lr_model = models.femnist_cnn(), models.logistic_regression(784, 62)
    cnn = self._compute_s(cnn_model, (28, 28, 1), compute_model.COEFFICIENTS)
    logistic = self._compute_s(lr_model, (784,), compute_model.COEFFICIENTS)
    c = compute_model.COEFFICIENTS

    def by_hand(flops, params):  # seconds per example, batch 20, speed 1
      return (c.s_per_flop * 3 * flops * 20 + c.s_per_param * params + c.s_per_step) / 20

    expected = (by_hand(_femnist_cnn_forward_flops(), cnn_model.count_params())
                / by_hand(2 * 784 * 62 + 62, lr_model.count_params()))
    self.assertGreater(expected, 1.5)
    np.testing.assert_allclose(cnn / logistic, expected, rtol=1e-5)

  def test_reference_workload_keeps_the_trace_milliseconds(self):
    # The reference next-word step, layer by layer as FLASH timed it, has factor 1.
    cost = sum((flash_grids.layer_cost(layer, *np.array(flash_grids.sizes(layer, point))[
        [0, 1, 3], 0]) for layer, point in flash_grids.REFERENCE_LAYERS.items()),
               model_cost.Cost(0.0, 0.0))
    extra_steps = len(flash_grids.REFERENCE_LAYERS) - 1  # three measured steps
    c = compute_model.COEFFICIENTS
    per_example = (c.step_s(cost, 20) + extra_steps * c.s_per_step) / 20
    reference = flash_grids.reference_step_s(c) / 20
    self.assertAlmostEqual(per_example / reference, 1.0, places=9)


class ExperimentTest(absltest.TestCase):

  def test_auto_is_flops_on_the_default_devices_and_fedscale_on_a_file(self):
    self.assertEqual(config_util.resolved_compute_model(_config()), 'flops')
    self.assertEqual(config_util.resolved_compute_model(_config(device_trace='d.csv')),
                     'fedscale')
    config = setup.apply_task_defaults(_config(), set())
    self.assertEqual(config.compute_model, 'flops')  # what config.json records

  def test_flops_scales_the_default_devices(self):
    flops = setup.build_experiment(_config(task_options='num_clients=60',
                                           clients_per_round=5))
    fedscale = setup.build_experiment(_config(task_options='num_clients=60',
                                              clients_per_round=5,
                                              compute_model='fedscale'))
    ratio = (flops.population.devices.compute_ms_per_sample
             / fedscale.population.devices.compute_ms_per_sample)
    cost = keras_cost.keras_model_cost(flops.task.keras_model_fn(), (60,))
    np.testing.assert_allclose(ratio, compute_model.flops_scale(cost, 10), rtol=1e-6)

  def test_backward_factor_is_refused_under_flops(self):
    with self.assertRaisesRegex(config_util.UsageError,
                                '^--backward_factor: --compute_model=flops counts'):
      config_util.validate(_config(backward_factor=2.0, compute_model='flops'),
                           setup.choices())
    config_util.validate(_config(backward_factor=2.0, compute_model='fedscale'),
                         setup.choices())

  def test_cli_run_files(self):
    # config.json records the resolved compute model, clients.csv the compute
    # seconds, metrics.csv the accuracy spread, which the report plots.
    with tempfile.TemporaryDirectory() as out:
      subprocess.run(
          [sys.executable, '-m', 'tf_fedscale.experiments.run', f'--output_dir={out}',
           '--task_options=num_clients=20', '--clients_per_round=3', '--rounds=1',
           '--eval_every=1', '--eval_clients=5', '--execution=inprocess'],
          cwd=ROOT, check=True, capture_output=True, env=dict(
              os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
      with open(os.path.join(out, 'config.json')) as f:
        self.assertEqual(json.load(f)['compute_model'], 'flops')
      with open(os.path.join(out, 'clients.csv')) as f:
        header = f.readline().strip().split(',')
        row = dict(zip(header, f.readline().strip().split(',')))
      self.assertGreater(float(row['compute_s']), 0.0)
      with open(os.path.join(out, 'metrics.csv')) as f:
        rows = list(csv.DictReader(f))
      spread = [float(rows[-1][f'eval_accuracy_{k}']) for k in ('worst10', 'p10', 'p50',
                                                               'p90')]
      self.assertEqual(spread, sorted(spread))
      self.assertTrue(os.path.isfile(os.path.join(out, 'report', 'accuracy_spread.png')))


if __name__ == '__main__':
  absltest.main()
