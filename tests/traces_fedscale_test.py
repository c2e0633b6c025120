"""Tests for tf_fedscale.traces.fedscale (FedScale's pickles) and the traces.convert CLI."""

import datetime
import os
import pickle
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from tf_fedscale import population as population_lib
from tf_fedscale.traces import fedscale
from tf_fedscale.traces import formats
from tf_fedscale.traces import loader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# FedScale's formats: ms/sample and kbps; seconds, closed [active, inactive].
CAPACITY = {1: {'computation': 10.0, 'communication': 1000.0},
            2: {'computation': 20.0, 'communication': 2000.0},
            3: {'computation': 30.0, 'communication': 3000.0},
            4: {'computation': 40.0, 'communication': 4000.0}}
BEHAVE = {
    'a': {'duration': 10, 'active': [100, 300], 'inactive': [199, 399],
          'finish_time': 1000, 'model': 'CPH1909'},
    'b': {'duration': 10, 'active': [0, 900], 'inactive': [50, 999],
          'finish_time': 1000, 'model': 'Redmi 5A'},
    'c': {'duration': 10, 'active': [500, 100, 150], 'inactive': [600, 200, 250],
          'finish_time': 2000, 'model': 'x'},
}


class FedScaleTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def _pickle(self, name: str, data) -> str:
    path = os.path.join(self.dir, name)
    with open(path, 'wb') as f:
      pickle.dump(data, f)
    return path

  def test_capacity_gives_each_client_fedscales_profile_under_modulo(self):
    devices = loader.load_devices(self._pickle('client_device_capacity', CAPACITY))
    np.testing.assert_array_equal(devices.download_kbps, devices.upload_kbps)
    rows = population_lib.map_clients_to_rows(3, devices.num_devices, 0, 'modulo')
    for client in range(3):  # FedScale: client k (1-based) gets capacity[k % N]
      entry = CAPACITY[(client + 1) % len(CAPACITY)]
      self.assertEqual(devices.compute_ms_per_sample[rows[client]], entry['computation'])
      self.assertEqual(devices.download_kbps[rows[client]], entry['communication'])
    # Key N (never read by FedScale) sits on row 0.
    self.assertEqual(devices.compute_ms_per_sample[0], 40.0)

  def test_capacity_with_other_keys_keeps_file_order(self):
    data = {'x': CAPACITY[3], 'y': CAPACITY[1]}
    devices = loader.load_devices(self._pickle('cap', data))
    np.testing.assert_array_equal(devices.compute_ms_per_sample, [30.0, 10.0])

  def test_behave_trace_intervals(self):
    trace = loader.load_availability(self._pickle('client_behave_trace', BEHAVE))
    np.testing.assert_array_equal(trace.period_s, [1000, 1000, 2000])

    def online(device, t):
      return bool(trace.is_online([device], t)[0])

    # Closed [100, 199] stays closed, as FedScale's is_active: 199.5 is offline.
    self.assertEqual([online(0, t) for t in (99, 100, 199, 199.5, 200, 299, 300, 399, 400)],
                     [False, True, True, False, False, False, True, True, False])
    # t % finish_time: the next period repeats the slots.
    self.assertTrue(online(0, 1000 + 150))
    self.assertFalse(online(0, 1000 + 250))
    # Device b: [900, 999] and [0, 50] leave (999, 1000) offline, as FedScale's
    # 999.9 % 1000 > 999: no stretch across the wrap.
    self.assertTrue(online(1, 999))
    self.assertFalse(online(1, 999.9))
    self.assertTrue(online(1, 1000))
    self.assertEqual(trace.online_until_s([1], 950.0)[0], 999.0)
    # Device c: unsorted, overlapping intervals are sorted and merged.
    lo, hi = trace.slot_offsets[2], trace.slot_offsets[3]
    np.testing.assert_array_equal(trace.slot_start_s[lo:hi], [100, 500])
    np.testing.assert_array_equal(trace.slot_end_s[lo:hi], [250, 600])

  def test_behave_rows_follow_file_order_for_modulo(self):
    trace = loader.load_availability(self._pickle('behave', BEHAVE))
    rows = population_lib.map_clients_to_rows(3, trace.num_devices, 0, 'modulo')
    keys = list(BEHAVE)  # FedScale: client k takes keys[k % N]
    for client in range(3):
      self.assertEqual(trace.period_s[rows[client]],
                       BEHAVE[keys[(client + 1) % len(keys)]]['finish_time'])

  def test_interval_past_finish_time_is_cut_and_later_ones_dropped(self):
    data = {0: {'active': [900, 1500], 'inactive': [1200, 1600], 'finish_time': 1000}}
    with self.assertLogs(level='WARNING') as logs:
      trace = loader.load_availability(self._pickle('behave', data))
    self.assertIn('1 intervals start at or after their finish_time', logs.output[0])
    np.testing.assert_array_equal(trace.slot_start_s, [900])
    np.testing.assert_array_equal(trace.slot_end_s, [1000])

  def test_interval_ending_before_it_starts(self):
    data = {7: {'active': [10, 300], 'inactive': [20, 299], 'finish_time': 1000}}
    path = self._pickle('behave', data)
    with self.assertRaisesRegex(formats.TraceError,
                                f'^{path}: client 7: interval 1 ends at 299 s before '
                                'it starts at 300 s'):
      loader.load_availability(path)

  def test_negative_speed(self):
    path = self._pickle('cap', {1: {'computation': -3.0, 'communication': 10.0}})
    with self.assertRaisesRegex(formats.TraceError, f'^{path}: client 1: computation is -3'):
      loader.load_devices(path)

  def test_zero_bandwidth(self):
    path = self._pickle('cap', {1: {'computation': 3.0, 'communication': 0}})
    with self.assertRaisesRegex(formats.TraceError, 'client 1: communication is 0.0 kbps'):
      loader.load_devices(path)

  def test_missing_field_and_mismatched_lists(self):
    path = self._pickle('cap', {1: {'computation': 3.0}})
    with self.assertRaisesRegex(formats.TraceError, r"client 1: missing \['communication'\]"):
      loader.load_devices(path)
    path = self._pickle('behave', {5: {'active': [1, 2], 'inactive': [3],
                                       'finish_time': 10}})
    with self.assertRaisesRegex(formats.TraceError,
                                'client 5: 2 active times but 1 inactive times'):
      loader.load_availability(path)

  def test_wrong_shape(self):
    path = self._pickle('cap', [1.0, 2.0])
    with self.assertRaisesRegex(formats.TraceError, 'holds a list, expected a dict'):
      loader.load_devices(path)
    path = self._pickle('cap', {})
    with self.assertRaisesRegex(formats.TraceError, 'empty dict'):
      loader.load_devices(path)

  def test_empty_and_truncated_pickles(self):
    path = self._pickle('cap', CAPACITY)
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:len(data) // 2])
    with self.assertRaisesRegex(formats.TraceError, f'^{path}: .*(truncated|not a readable)'):
      loader.load_devices(path)
    with open(path, 'wb'):
      pass
    with self.assertRaisesRegex(formats.TraceError, 'empty or truncated pickle'):
      loader.load_devices(path)

  def test_refuses_globals(self):
    path = self._pickle('cap', {1: datetime.date(2020, 1, 1)})
    with self.assertRaisesRegex(formats.TraceError, 'refusing to load datetime.date'):
      loader.load_devices(path)

  def test_numpy_values_are_fine(self):
    data = {np.int64(0): {'computation': np.float64(5.0), 'communication': np.float32(7.0)}}
    devices = fedscale.load_device_capacity(self._pickle('cap', data))
    np.testing.assert_array_equal(devices.compute_ms_per_sample, [5.0])


class ConvertTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def _convert(self, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'tf_fedscale.traces.convert', *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)

  def test_pickles_to_native_and_back_to_the_same_traces(self):
    cap, behave = (os.path.join(self.dir, n) for n in ('cap', 'behave'))
    for path, data in ((cap, CAPACITY), (behave, BEHAVE)):
      with open(path, 'wb') as f:
        pickle.dump(data, f)
    out_d, out_a = os.path.join(self.dir, 'd.npz'), os.path.join(self.dir, 'a.csv')
    result = self._convert(f'--device_trace={cap}', f'--device_out={out_d}',
                           f'--availability_trace={behave}', f'--availability_out={out_a}')
    self.assertEqual(result.returncode, 0, result.stderr)
    want_d, want_a = loader.load_devices(cap), loader.load_availability(behave)
    got_d, got_a = loader.load_devices(out_d), loader.load_availability(out_a)
    for name in formats.DEVICE_FIELDS:
      np.testing.assert_array_equal(getattr(want_d, name), getattr(got_d, name))
    for name in formats.AVAILABILITY_FIELDS:
      np.testing.assert_array_equal(getattr(want_a, name), getattr(got_a, name))

  def test_bad_input_is_one_error_line(self):
    bad = os.path.join(self.dir, 'behave')
    with open(bad, 'wb') as f:
      pickle.dump({1: {'active': [5], 'inactive': [4], 'finish_time': 10}}, f)
    result = self._convert(f'--availability_trace={bad}',
                           f'--availability_out={self.dir}/a.npz')
    self.assertEqual(result.returncode, 2)
    self.assertEqual(result.stderr.strip(), f'error: --availability_trace: {bad}: client 1: '
                     'interval 0 ends at 4 s before it starts at 5 s.')
    self.assertFalse(os.path.exists(f'{self.dir}/a.npz'))


if __name__ == '__main__':
  absltest.main()
