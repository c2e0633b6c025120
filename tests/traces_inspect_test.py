"""Tests for the tf_fedscale.traces.inspect CLI: summary text and non-empty PNGs."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from tf_fedscale import availability as availability_lib
from tf_fedscale.traces import default
from tf_fedscale.traces import formats
from tf_fedscale.traces import inspect as inspect_lib
from tf_fedscale.traces import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _inspect(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND='Agg')
  return subprocess.run([sys.executable, '-m', 'tf_fedscale.traces.inspect', *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


class InspectTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.enterContext(tempfile.TemporaryDirectory())

  def assertPlots(self, output_dir: str):
    for name in inspect_lib.PLOTS:
      path = os.path.join(output_dir, name)
      self.assertTrue(os.path.isfile(path), path)
      with open(path, 'rb') as f:
        data = f.read()
      self.assertGreater(len(data), 1000, path)
      self.assertTrue(data.startswith(PNG_MAGIC), path)

  def test_trace_files(self):
    devices = os.path.join(self.dir, 'devices.csv')
    availability = os.path.join(self.dir, 'availability.npz')
    formats.write_devices(default.generate_devices(500, seed=1), devices)
    formats.write_availability(default.generate_availability(500, seed=1), availability)
    out = os.path.join(self.dir, 'plots')
    result = _inspect(f'--device_trace={devices}', f'--availability_trace={availability}',
                      f'--output_dir={out}')
    self.assertEqual(result.returncode, 0, result.stderr)
    for text in ('Devices: 500', 'compute ms/sample', 'download kbps', 'upload kbps',
                 'slot length (min)', 'Fraction online (%) by hour of the week', 'day 6'):
      self.assertIn(text, result.stdout)
    self.assertPlots(out)

  def test_default_generator(self):
    result = _inspect('--num_devices=2000', f'--output_dir={self.dir}')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn('default generator, seed 0', result.stdout)
    self.assertPlots(self.dir)

  def test_bad_file_is_one_error_line(self):
    missing = os.path.join(self.dir, 'missing.npz')
    result = _inspect(f'--availability_trace={missing}', f'--output_dir={self.dir}')
    self.assertEqual(result.returncode, 2)
    self.assertEqual(result.stderr.strip(),
                     f'error: --availability_trace: {missing}: no such file.')

  def test_summaries_in_process(self):
    devices = default.generate_devices(100, seed=0)
    trace = default.generate_availability(100, seed=0)
    self.assertIn('spread p95/p5', inspect_lib.device_summary(devices, 'x'))
    text = inspect_lib.availability_summary(trace, 'x')
    self.assertIn('mean fraction online', text)
    self.assertLen(text.splitlines()[-7:], 7)


class StatsTest(absltest.TestCase):

  def _brute_force(self, trace, times):
    devices = np.arange(trace.num_devices)
    return np.array([trace.is_online(devices, t).mean() for t in times])

  def test_online_fraction_matches_is_online(self):
    trace = default.generate_availability(300, seed=2)
    times = np.arange(0, 2 * stats.WEEK_S, 3571.5)
    np.testing.assert_allclose(stats.online_fraction_at(trace, times),
                               self._brute_force(trace, times))

  def test_many_periods(self):
    n = 150  # more distinct periods than the exact path handles: a sample (all of them)
    rng = np.random.default_rng(0)
    period = rng.integers(1000, 5000, n).astype(np.int32)
    start = (period // 4).astype(np.int32)
    trace = availability_lib.AvailabilityTrace(
        slot_offsets=np.arange(n + 1, dtype=np.int64), slot_start_s=start,
        slot_end_s=(start * 2).astype(np.int32), period_s=period)
    times = np.array([0.0, 700.0, 1500.0, 9999.0])
    np.testing.assert_allclose(stats.online_fraction_at(trace, times),
                               self._brute_force(trace, times))

  def test_slot_lengths_join_the_wrap(self):
    trace = availability_lib.AvailabilityTrace(
        slot_offsets=np.array([0, 3, 4, 4], np.int64),
        slot_start_s=np.array([0, 100, 900, 5], np.int32),
        slot_end_s=np.array([50, 200, 1000, 10], np.int32),
        period_s=np.array([1000, 1000, 1000], np.int32))
    np.testing.assert_array_equal(np.sort(stats.slot_lengths_s(trace)), [5, 100, 150])
    np.testing.assert_allclose(stats.online_fraction_per_device(trace), [0.25, 0.005, 0.0])


if __name__ == '__main__':
  absltest.main()
