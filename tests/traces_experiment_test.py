"""--device_trace / --availability_trace in experiments: loading, mapping, errors."""

import os
import pickle
import subprocess
import sys
import tempfile
import types

from absl.testing import absltest
import numpy as np

from tf_fedscale.experiments import config_util
from tf_fedscale.experiments import setup
from tf_fedscale.experiments.configs import default as default_config
from tf_fedscale.traces import default
from tf_fedscale.traces import formats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _task(num_clients: int):
  ids = [str(i) for i in range(num_clients)]
  return types.SimpleNamespace(train_data=types.SimpleNamespace(client_ids=ids),
                               num_train_examples=np.full(num_clients, 10, np.int64))


def _config(**changes):
  config = default_config.get_config()
  config.update(changes)
  return config


class TraceFlagsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def test_empty_means_the_default_generator(self):
    population = setup.build_population(_config(), _task(30))
    np.testing.assert_array_equal(population.devices.compute_ms_per_sample,
                                  default.generate_devices(30, 0).compute_ms_per_sample)
    self.assertEqual(population.availability.num_devices, 30)

  def test_native_files_are_used(self):
    devices = default.generate_devices(7, seed=5)
    trace = default.generate_availability(4, seed=5)
    formats.write_devices(devices, os.path.join(self.dir, 'd.csv'))
    formats.write_availability(trace, os.path.join(self.dir, 'a.npz'))
    population = setup.build_population(
        _config(device_trace=os.path.join(self.dir, 'd.csv'),
                availability_trace=os.path.join(self.dir, 'a.npz'),
                client_mapping='modulo'), _task(10))
    np.testing.assert_array_equal(population.device_row, (np.arange(10) + 1) % 7)
    np.testing.assert_array_equal(population.availability_row, (np.arange(10) + 1) % 4)
    np.testing.assert_array_equal(population.compute_ms_per_sample(np.arange(10)),
                                  devices.compute_ms_per_sample[(np.arange(10) + 1) % 7])

  def test_modulo_follows_the_unfiltered_numbering(self):
    task = _task(3)
    task.train_positions = np.array([1, 2, 5])  # places before --min_samples
    devices = default.generate_devices(4, seed=5)
    formats.write_devices(devices, os.path.join(self.dir, 'd.csv'))
    population = setup.build_population(
        _config(device_trace=os.path.join(self.dir, 'd.csv'), client_mapping='modulo'),
        task)
    # Clients 2, 3, 6 (1-based) take rows 2, 3, 6 % 4 = 2.
    np.testing.assert_array_equal(population.device_row, [2, 3, 2])

  def test_fedscale_pickle(self):
    path = os.path.join(self.dir, 'client_device_capacity')
    with open(path, 'wb') as f:
      pickle.dump({k: {'computation': float(k), 'communication': 100.0 * k}
                   for k in range(1, 6)}, f)
    population = setup.build_population(
        _config(device_trace=path, client_mapping='modulo'), _task(4))
    # FedScale: client k (1-based) -> capacity[k % 5].
    np.testing.assert_array_equal(population.compute_ms_per_sample(np.arange(4)),
                                  [1.0, 2.0, 3.0, 4.0])

  def _behave_trace(self, entries):
    path = os.path.join(self.dir, 'client_behave_trace')
    with open(path, 'wb') as f:
      pickle.dump({k: {'active': a, 'inactive': b, 'finish_time': 1000,
                       'duration': 0, 'model': 'x'} for k, (a, b) in entries.items()}, f)
    return path

  def test_clock_starts_when_enough_clients_are_online(self):
    # FedScale format, nobody online at t = 0: [a, b] closed -> [a, b + 1).
    path = self._behave_trace({1: ([100], [300]), 2: ([200], [400]),
                               3: ([250, 600], [260, 700])})
    population = setup.build_population(
        _config(availability_trace=path, client_mapping='modulo'), _task(3))
    # Rows: client k -> keys[k % 3]: clients 0, 1, 2 follow keys 2, 3, 1.
    self.assertEqual(setup.first_round_time_s(population, 1), 100.0)
    self.assertEqual(setup.first_round_time_s(population, 2), 200.0)
    self.assertEqual(setup.first_round_time_s(population, 3), 250.0)
    with self.assertRaisesRegex(config_util.UsageError,
                                '^--clients_per_round: 4 exceeds the population of 3'):
      setup.first_round_time_s(population, 4)

  def test_run_starts_at_the_first_full_cohort(self):
    path = self._behave_trace({1: ([100], [300]), 2: ([200], [400])})
    experiment = setup.build_experiment(_config(
        task='synthetic', task_options='num_clients=4', availability_trace=path,
        client_mapping='modulo', clients_per_round=3, rounds=1))
    self.assertEqual(experiment.start_time_s, 200.0)  # all four clients online

  def test_never_online_is_a_usage_error(self):
    path = self._behave_trace({1: ([2000], [3000])})  # after finish_time: never
    population = setup.build_population(_config(availability_trace=path), _task(2))
    with self.assertRaisesRegex(config_util.UsageError,
                                '^--availability_trace: none of the task'):
      setup.first_round_time_s(population, 1)

  def test_bad_file_is_a_usage_error(self):
    missing = os.path.join(self.dir, 'missing.npz')
    with self.assertRaisesRegex(config_util.UsageError,
                                f'^--device_trace: {missing}: no such file.$'):
      setup.build_population(_config(device_trace=missing), _task(3))
    bad = os.path.join(self.dir, 'a.csv')
    with open(bad, 'w') as f:
      f.write('# tf_fedscale availability trace v1\ndevice,period_s,start_s,end_s\n'
              '0,100,50,40\n')
    with self.assertRaisesRegex(config_util.UsageError,
                                f'^--availability_trace: {bad}: line 3: slot'):
      setup.build_population(_config(availability_trace=bad), _task(3))

  def test_cli_prints_one_line_and_exits_2(self):
    bad = os.path.join(self.dir, 'd.npz')
    with open(bad, 'wb') as f:
      f.write(b'PK\x03\x04truncated')
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
    result = subprocess.run(
        [sys.executable, '-m', 'tf_fedscale.experiments.run', f'--device_trace={bad}',
         f'--output_dir={self.dir}/out'], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    self.assertLen(errors, 1)
    self.assertStartsWith(errors[0], f'error: --device_trace: {bad}: not a readable NPZ')
    self.assertFalse(os.path.exists(f'{self.dir}/out'))


if __name__ == '__main__':
  absltest.main()
