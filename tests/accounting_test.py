"""Tests for tf_fedscale.accounting, on hand-computed cases."""

from absl.testing import absltest
import numpy as np

from tf_fedscale import accounting
from tf_fedscale import availability
from tf_fedscale import population as population_lib

Status = accounting.Status
MB = 1_000_000


def _population(compute_ms, down_kbps, up_kbps, slots=None):
  n = len(compute_ms)
  devices = population_lib.DeviceProfiles(
      np.array(compute_ms, np.float32), np.array(down_kbps, np.float32),
      np.array(up_kbps, np.float32))
  if slots is None:
    avail = availability.AvailabilityTrace.always(n)
  else:
    offsets = np.arange(n + 1, dtype=np.int64)
    avail = availability.AvailabilityTrace(
        offsets, np.array([s for s, _ in slots], np.int32),
        np.array([e for _, e in slots], np.int32),
        np.full(n, availability.SECONDS_PER_WEEK, np.int32))
  return population_lib.Population(
      client_ids=[str(i) for i in range(n)], num_examples=np.full(n, 100),
      devices=devices, availability=avail,
      device_row=np.arange(n, dtype=np.int32),
      availability_row=np.arange(n, dtype=np.int32))


class AccountingTest(absltest.TestCase):

  def test_four_megabyte_model_over_1000_kbps(self):
    # FedScale's kbit is 1024 bits: 4 MB = 4e6 x 8 / 1024 = 31,250 kbit, so
    # 31.25 s down at 1,000 kbps and 62.5 s up at 500 kbps;
    # 100 samples x 10 ms x 3 (forward + backward) = 3 s of compute.
    pop = _population([10.0], [1000.0], [500.0])
    acc = accounting.LatencyAccountant(pop, clients_per_round=1)
    out = acc.account(1, [0], [100], bytes_down=4 * MB, bytes_up=4 * MB,
                      start_time_s=0.0)
    self.assertAlmostEqual(out.download_s[0], 31.25, places=4)
    self.assertAlmostEqual(out.compute_s[0], 3.0, places=4)
    self.assertAlmostEqual(out.upload_s[0], 62.5, places=4)
    self.assertAlmostEqual(out.duration_s, 96.75, places=4)
    self.assertEqual(out.status[0], Status.COMPLETED)
    self.assertEqual(out.bytes_down[0], 4 * MB)
    self.assertEqual(out.bytes_up[0], 4 * MB)

  def test_client_whose_slot_ends_mid_round_drops(self):
    # Both need 31.25 + 31.25 s; client 1 goes offline 40 s into the round.
    pop = _population([0.0, 0.0], [1000.0] * 2, [1000.0] * 2,
                      slots=[(0, 1000), (0, 40)])
    acc = accounting.LatencyAccountant(pop, clients_per_round=2)
    out = acc.account(1, [0, 1], [0, 0], bytes_down=4 * MB, bytes_up=4 * MB,
                      start_time_s=0.0)
    np.testing.assert_array_equal(out.status, [Status.COMPLETED, Status.DROPPED_OFFLINE])
    np.testing.assert_array_equal(out.completed, [0])
    self.assertAlmostEqual(out.end_s[1], 40.0)
    # It received the whole model (31.25 s) but uploaded nothing.
    self.assertEqual(out.bytes_down[1], 4 * MB)
    self.assertEqual(out.bytes_up[1], 0)
    self.assertAlmostEqual(out.duration_s, 62.5, places=4)

  def test_overcommit_keeps_the_fastest(self):
    pop = _population([10.0, 40.0, 20.0, 30.0], [1e9] * 4, [1e9] * 4)
    acc = accounting.LatencyAccountant(pop, clients_per_round=2)
    out = acc.account(1, [0, 1, 2, 3], [100] * 4, bytes_down=0, bytes_up=0,
                      start_time_s=0.0)
    np.testing.assert_array_equal(
        out.status, [Status.COMPLETED, Status.STRAGGLER, Status.COMPLETED, Status.STRAGGLER])
    self.assertAlmostEqual(out.duration_s, 6.0, places=4)  # client 2: 100 x 20 ms x 3
    np.testing.assert_allclose(out.end_s, [3.0, 6.0, 6.0, 6.0], rtol=1e-6)

  def test_deadline_cuts_slow_clients(self):
    pop = _population([10.0, 40.0], [1e9] * 2, [1e9] * 2)
    acc = accounting.LatencyAccountant(pop, deadline_s=5.0)
    out = acc.account(1, [0, 1], [100, 100], bytes_down=0, bytes_up=0,
                      start_time_s=0.0)
    np.testing.assert_array_equal(out.status, [Status.COMPLETED, Status.MISSED_DEADLINE])
    self.assertEqual(out.duration_s, 5.0)

  def test_rounds_are_timed_from_the_given_start(self):
    # Online only in [0, 50): round 1 takes 30 s, round 2 would end at 60 s.
    pop = _population([100.0], [1e9], [1e9], slots=[(0, 50)])
    acc = accounting.LatencyAccountant(pop, clients_per_round=1)
    first = acc.account(1, [0], [100], bytes_down=0, bytes_up=0, start_time_s=0.0)
    self.assertEqual(first.status[0], Status.COMPLETED)
    self.assertAlmostEqual(first.duration_s, 30.0, places=4)
    second = acc.account(2, [0], [100], bytes_down=0, bytes_up=0,
                         start_time_s=first.start_time_s + first.duration_s)
    self.assertEqual(second.start_time_s, 30.0)
    self.assertEqual(second.status[0], Status.DROPPED_OFFLINE)
    self.assertAlmostEqual(second.start_time_s + second.duration_s, 50.0, places=4)
    # Pure: timing round 1 again gives round 1 again.
    again = acc.account(1, [0], [100], bytes_down=0, bytes_up=0, start_time_s=0.0)
    self.assertEqual(again.duration_s, first.duration_s)

  def test_fewer_than_k_finishers_end_the_round_at_the_last_finisher(self):
    # FedScale's tictak_client_tasks: drop-outs are removed first, the round
    # lasts until the last of the rest. K = 3: client 0 finishes at 60 s,
    # clients 1 and 2 need 200 s but leave at 100 s and 150 s.
    pop = _population([200.0, 2000.0 / 3, 2000.0 / 3], [1e9] * 3, [1e9] * 3,
                      slots=[(0, 1000), (0, 100), (0, 150)])
    acc = accounting.LatencyAccountant(pop, clients_per_round=3)
    out = acc.account(1, [0, 1, 2], [100] * 3, bytes_down=0, bytes_up=0,
                      start_time_s=0.0)
    np.testing.assert_array_equal(
        out.status, [Status.COMPLETED, Status.DROPPED_OFFLINE, Status.DROPPED_OFFLINE])
    self.assertAlmostEqual(out.duration_s, 60.0, places=3)  # not 150 s
    np.testing.assert_allclose(out.end_s, [60.0, 60.0, 60.0], rtol=1e-5)

  def test_drop_outs_leaving_after_the_close_are_not_stragglers(self):
    # K = 1: client 0 finishes at 3 s; client 1 would finish at 12 s but leaves
    # at 5 s: FedScale drops it before ranking (no straggler feedback).
    pop = _population([10.0, 40.0], [1e9] * 2, [1e9] * 2, slots=[(0, 1000), (0, 5)])
    acc = accounting.LatencyAccountant(pop, clients_per_round=1)
    out = acc.account(1, [0, 1], [100, 100], bytes_down=0, bytes_up=0,
                      start_time_s=0.0)
    np.testing.assert_array_equal(out.status, [Status.COMPLETED, Status.DROPPED_OFFLINE])
    self.assertAlmostEqual(out.duration_s, 3.0, places=4)

  def test_nobody_finishing_lasts_until_the_last_drop_out(self):
    pop = _population([1000.0, 1000.0], [1e9] * 2, [1e9] * 2, slots=[(0, 20), (0, 50)])
    acc = accounting.LatencyAccountant(pop, clients_per_round=1)
    out = acc.account(1, [0, 1], [100, 100], bytes_down=0, bytes_up=0,
                      start_time_s=0.0)
    self.assertAlmostEqual(out.duration_s, 50.0, places=4)

  def test_needs_a_way_to_end_rounds(self):
    with self.assertRaisesRegex(ValueError, 'clients_per_round, deadline_s'):
      accounting.LatencyAccountant(_population([1.0], [1.0], [1.0]))


if __name__ == '__main__':
  absltest.main()
