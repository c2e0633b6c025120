"""Tests for tf_fedscale.traces.formats (the native format) and tf_fedscale.traces.loader."""

import os
import tempfile
import zipfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale import population as population_lib
from tf_fedscale.traces import default
from tf_fedscale.traces import formats
from tf_fedscale.traces import loader

WEEK = availability_lib.SECONDS_PER_WEEK


def _devices() -> population_lib.DeviceProfiles:
  return population_lib.DeviceProfiles(
      compute_ms_per_sample=np.array([0.1, 40.5, 1e-7, 0.0, 123456.79], np.float32),
      download_kbps=np.array([np.inf, 20000.0, 1.5, 3.3333333, 7.0], np.float32),
      upload_kbps=np.array([1.0, 6000.0, 0.1, 2.0, np.inf], np.float32))


def _availability() -> availability_lib.AvailabilityTrace:
  # Device 0: a slot to the period's end and one from 0 (wrap); 1: none;
  # 2: another period; 3: one slot.
  return availability_lib.AvailabilityTrace(
      slot_offsets=np.array([0, 2, 2, 3, 4], np.int64),
      slot_start_s=np.array([0, 600000, 5, 10], np.int32),
      slot_end_s=np.array([100, WEEK, 86400, 20], np.int32),
      period_s=np.array([WEEK, WEEK, 86400, 3600], np.int32))


def _assert_same(test, a, b, fields):
  for name in fields:
    x, y = getattr(a, name), getattr(b, name)
    test.assertEqual(x.dtype, y.dtype, name)
    np.testing.assert_array_equal(x, y, err_msg=name)


class RoundTripTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  @parameterized.parameters('.csv', '.npz')
  def test_devices_round_trip_exactly(self, ext):
    path = os.path.join(self.dir, 'devices' + ext)
    devices = _devices()
    formats.write_devices(devices, path)
    _assert_same(self, devices, loader.load_devices(path), formats.DEVICE_FIELDS)

  @parameterized.parameters('.csv', '.npz')
  def test_availability_round_trips_exactly(self, ext):
    path = os.path.join(self.dir, 'availability' + ext)
    trace = _availability()
    formats.write_availability(trace, path)
    _assert_same(self, trace, loader.load_availability(path), formats.AVAILABILITY_FIELDS)

  @parameterized.parameters('.csv', '.npz')
  def test_generated_population_round_trips(self, ext):
    devices = default.generate_devices(300, seed=3)
    trace = default.generate_availability(300, seed=3)
    formats.write_devices(devices, os.path.join(self.dir, 'd' + ext))
    formats.write_availability(trace, os.path.join(self.dir, 'a' + ext))
    _assert_same(self, devices, formats.read_devices(os.path.join(self.dir, 'd' + ext)),
                 formats.DEVICE_FIELDS)
    _assert_same(self, trace, formats.read_availability(os.path.join(self.dir, 'a' + ext)),
                 formats.AVAILABILITY_FIELDS)

  def test_csv_layout_is_documented_one(self):
    formats.write_devices(_devices(), os.path.join(self.dir, 'd.csv'))
    formats.write_availability(_availability(), os.path.join(self.dir, 'a.csv'))
    with open(os.path.join(self.dir, 'd.csv')) as f:
      self.assertEqual(f.read().splitlines()[:4], [
          '# tf_fedscale device trace v1',
          'device,compute_ms_per_sample,download_kbps,upload_kbps',
          '0,0.1,inf,1.0', '1,40.5,20000.0,6000.0'])
    with open(os.path.join(self.dir, 'a.csv')) as f:
      self.assertEqual(f.read().splitlines(), [
          '# tf_fedscale availability trace v1', 'device,period_s,start_s,end_s',
          f'0,{WEEK},0,100', f'0,{WEEK},600000,{WEEK}', f'1,{WEEK},,',
          '2,86400,5,86400', '3,3600,10,20'])


class BadInputTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def _write(self, name: str, text: str) -> str:
    path = os.path.join(self.dir, name)
    with open(path, 'w') as f:
      f.write(text)
    return path

  def _npz(self, name: str, **arrays) -> str:
    path = os.path.join(self.dir, name)
    with open(path, 'wb') as f:
      np.savez(f, **arrays)
    return path

  def assertTraceError(self, load, path, regex):
    with self.assertRaisesRegex(formats.TraceError, regex) as cm:
      load(path)
    self.assertTrue(str(cm.exception).startswith(path + ': '), str(cm.exception))

  @parameterized.parameters('d.csv', 'd.npz')
  def test_empty_file(self, name):
    path = self._write(name, '')
    self.assertTraceError(loader.load_devices, path, 'empty')

  def test_missing_file(self):
    path = os.path.join(self.dir, 'nope.npz')
    self.assertTraceError(loader.load_availability, path, 'no such file')

  def test_truncated_npz(self):
    path = os.path.join(self.dir, 'a.npz')
    formats.write_availability(default.generate_availability(200, 0), path)
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:len(data) // 2])
    self.assertTraceError(loader.load_availability, path, 'truncated or corrupt')

  def test_npz_of_the_other_kind(self):
    path = os.path.join(self.dir, 'a.npz')
    formats.write_availability(_availability(), path)
    self.assertTraceError(loader.load_devices, path,
                          'this is a availability trace, not a device trace')

  def test_csv_of_the_other_kind(self):
    path = os.path.join(self.dir, 'd.csv')
    formats.write_devices(_devices(), path)
    self.assertTraceError(loader.load_availability, path,
                          'this is a device trace, not a availability trace')

  def test_newer_version(self):
    path = self._write('d.csv', '# tf_fedscale device trace v2\n')
    self.assertTraceError(loader.load_devices, path, 'format version 2')
    path = self._npz('d.npz', format=np.array('tf_fedscale.devices'), version=np.array(9))
    self.assertTraceError(loader.load_devices, path, 'format version 9')

  def test_wrong_header(self):
    path = self._write('d.csv', '# tf_fedscale device trace v1\ndevice,ms,down,up\n0,1,2,3\n')
    self.assertTraceError(loader.load_devices, path, 'line 2 .* expected the header')

  def test_short_row(self):
    path = self._write('d.csv', '# tf_fedscale device trace v1\n'
                       'device,compute_ms_per_sample,download_kbps,upload_kbps\n'
                       '0,1,2,3\n1,1,2\n')
    self.assertTraceError(loader.load_devices, path, 'line 4: 3 fields, expected 4')

  def test_negative_speed_names_line(self):
    path = self._write('d.csv', '# tf_fedscale device trace v1\n'
                       'device,compute_ms_per_sample,download_kbps,upload_kbps\n'
                       '0,1,2,3\n1,1,-2,3\n2,-1,2,3\n')
    self.assertTraceError(loader.load_devices, path,
                          r'line 4: download_kbps=-2.0; speeds must be non-negative')

  def test_not_a_number(self):
    path = self._write('d.csv', '# tf_fedscale device trace v1\n'
                       'device,compute_ms_per_sample,download_kbps,upload_kbps\n'
                       '0,fast,2,3\n')
    self.assertTraceError(loader.load_devices, path,
                          "line 3: compute_ms_per_sample is 'fast', not a number")

  def test_device_numbers_out_of_order(self):
    path = self._write('d.csv', '# tf_fedscale device trace v1\n'
                       'device,compute_ms_per_sample,download_kbps,upload_kbps\n'
                       '0,1,2,3\n2,1,2,3\n')
    self.assertTraceError(loader.load_devices, path, 'line 4: device 2, expected device 1')

  def test_negative_speed_in_npz_names_device(self):
    path = self._npz('d.npz', format=np.array('tf_fedscale.devices'), version=np.array(1),
                     compute_ms_per_sample=np.array([1, -5, 2], np.float32),
                     download_kbps=np.ones(3, np.float32), upload_kbps=np.ones(3, np.float32))
    self.assertTraceError(loader.load_devices, path, 'device 1 has compute_ms_per_sample=-5')

  def test_wrong_shape_npz(self):
    path = self._npz('d.npz', format=np.array('tf_fedscale.devices'), version=np.array(1),
                     compute_ms_per_sample=np.ones(3, np.float32),
                     download_kbps=np.ones(2, np.float32), upload_kbps=np.ones(3, np.float32))
    self.assertTraceError(loader.load_devices, path, r'download_kbps has shape \(2,\)')

  def test_no_devices(self):
    path = self._npz('d.npz', format=np.array('tf_fedscale.devices'), version=np.array(1),
                     **{name: np.zeros(0, np.float32) for name in formats.DEVICE_FIELDS})
    self.assertTraceError(loader.load_devices, path, 'holds no devices')
    path = self._write('a.csv', '# tf_fedscale availability trace v1\n'
                       'device,period_s,start_s,end_s\n')
    self.assertTraceError(loader.load_availability, path, 'no rows after the header')

  def test_missing_array(self):
    path = self._npz('a.npz', format=np.array('tf_fedscale.availability'),
                     version=np.array(1), period_s=np.ones(2, np.int32))
    self.assertTraceError(loader.load_availability, path, 'missing arrays')

  def test_slot_ending_before_start(self):
    path = self._write('a.csv', '# tf_fedscale availability trace v1\n'
                       'device,period_s,start_s,end_s\n0,100,10,20\n1,100,50,40\n')
    self.assertTraceError(loader.load_availability, path,
                          r'line 4: slot \[50, 40\) ends at or before its start')
    path = self._npz('a.npz', format=np.array('tf_fedscale.availability'),
                     version=np.array(1), slot_offsets=np.array([0, 1, 2]),
                     slot_start_s=np.array([10, 50], np.int32),
                     slot_end_s=np.array([20, 40], np.int32),
                     period_s=np.array([100, 100], np.int32))
    self.assertTraceError(loader.load_availability, path,
                          'slot 1 ends at 40 s, before its start 50 s')

  def test_overlapping_slots(self):
    path = self._write('a.csv', '# tf_fedscale availability trace v1\n'
                       'device,period_s,start_s,end_s\n0,100,10,30\n0,100,20,40\n')
    self.assertTraceError(loader.load_availability, path,
                          'line 4: .* starts before the previous one ends')

  def test_slot_outside_period(self):
    path = self._write('a.csv', '# tf_fedscale availability trace v1\n'
                       'device,period_s,start_s,end_s\n0,100,10,101\n')
    self.assertTraceError(loader.load_availability, path, 'line 3: .* outside the period')

  def test_inconsistent_period(self):
    path = self._write('a.csv', '# tf_fedscale availability trace v1\n'
                       'device,period_s,start_s,end_s\n0,100,10,20\n0,200,30,40\n')
    self.assertTraceError(loader.load_availability, path, 'line 4: device 0 has period_s 200')

  def test_unknown_extension_for_writing(self):
    with self.assertRaisesRegex(formats.TraceError, 'use .csv or .npz'):
      formats.write_devices(_devices(), os.path.join(self.dir, 'd.json'))

  def test_always_online_is_not_written(self):
    with self.assertRaisesRegex(formats.TraceError, 'always-online'):
      formats.write_availability(availability_lib.AvailabilityTrace.always(3),
                                 os.path.join(self.dir, 'a.npz'))

  def test_pickled_arrays_are_refused(self):
    path = self._npz('d.npz', format=np.array('tf_fedscale.devices'), version=np.array(1),
                     compute_ms_per_sample=np.array([{'x': 1}], object),
                     download_kbps=np.ones(1, np.float32), upload_kbps=np.ones(1, np.float32))
    self.assertTraceError(loader.load_devices, path, 'not a readable NPZ.*allow_pickle')

  def test_zip_that_is_not_a_trace(self):
    path = os.path.join(self.dir, 'd.npz')
    with zipfile.ZipFile(path, 'w') as z:
      z.writestr('other.npy', b'not an array')
    self.assertTraceError(loader.load_devices, path, "format is None, expected")


if __name__ == '__main__':
  absltest.main()
