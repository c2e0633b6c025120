"""Resume is exact from every write point of a run.

The run is killed at its n-th write, for every n: a write of a result file
(cut in half: a row half-appended, a temporary file half-written and never
renamed) or a checkpoint save (before it, and after it). The kill is an
exception that no code of the run catches, raised in-process so that the
~40 kill points cost one TensorFlow import; resume_test.py kills real
processes. Then `--resume` must leave every result file byte-identical to an
uninterrupted run's. wall_clock.csv holds measured seconds: its rounds must
match, not its values.
"""

import filecmp
import os
import tempfile
from unittest import mock

from absl.testing import absltest

from tf_fedscale import checkpoint
from tf_fedscale import output_files
from tf_fedscale.experiments import run
from tests import bad_input_cases

ARGS = ('--rounds=3', '--clients_per_round=4', '--eval_every=2', '--eval_clients=6',
        '--checkpoint_every=2', '--local_epochs=0', '--local_steps=2')
DETERMINED = ('config.json', 'metrics.csv', 'clients.csv', 'client_accuracy.csv')


class _Killed(BaseException):
  """The end of the process at a write point (nothing in the run catches it)."""


class _Writes:
  """Counts write points; at number `kill_at` (0: never) writes half and dies."""

  def __init__(self, kill_at: int = 0):
    self.kill_at, self.count = kill_at, 0
    self._write_all = output_files._write_all  # pylint: disable=protected-access
    self._save = checkpoint.Checkpointer.save

  def _due(self) -> bool:
    self.count += 1
    return self.count == self.kill_at

  def write_all(self, fd: int, data: bytes) -> None:
    if self._due():
      self._write_all(fd, data[:len(data) // 2])
      raise _Killed(f'write point {self.count}')
    self._write_all(fd, data)

  def save(self, checkpointer, round_num, state) -> None:
    if self._due():
      raise _Killed(f'before checkpoint {round_num}')
    self._save(checkpointer, round_num, state)
    if self._due():
      raise _Killed(f'after checkpoint {round_num}')


def _run(output_dir: str, *extra: str, writes: _Writes) -> tuple[int, str]:
  with mock.patch.object(output_files, '_write_all', writes.write_all), \
       mock.patch.object(checkpoint.Checkpointer, 'save',
                         lambda *a: writes.save(*a)):
    status, _, stderr = bad_input_cases.run_in_process(
        run.main, ['run', f'--output_dir={output_dir}', *ARGS, *extra])
  return status, stderr


def _rounds(path: str) -> list[str]:
  with open(path, newline='') as f:
    return [line.split(',')[0] for line in f]


def _listing(run_dir: str) -> list[str]:
  return sorted(os.path.relpath(os.path.join(folder, name), run_dir)
                for folder, dirs, files in os.walk(run_dir) for name in dirs + files)


class ResumeKillPointsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.enterClassContext(tempfile.TemporaryDirectory())
    cls.reference = os.path.join(cls.tmp, 'reference')
    cls.points = _Writes()
    status, stderr = _run(cls.reference, writes=cls.points)
    assert status == 0, stderr[-3000:]

  def assert_same_as_reference(self, run_dir: str) -> None:
    for name in DETERMINED:
      self.assertTrue(filecmp.cmp(os.path.join(self.reference, name),
                                  os.path.join(run_dir, name), shallow=False), name)
    self.assertEqual(_rounds(os.path.join(run_dir, 'wall_clock.csv')),
                     _rounds(os.path.join(self.reference, 'wall_clock.csv')))
    self.assertEqual(_listing(run_dir), _listing(self.reference))

  def test_resume_after_a_kill_at_every_write_point_equals_the_uninterrupted_run(self):
    self.assertGreater(self.points.count, 20)
    for kill_at in range(2, self.points.count + 1):  # 1: config.json, see below
      with self.subTest(kill_at=kill_at):
        run_dir = os.path.join(self.tmp, f'killed_at_{kill_at}')
        status, stderr = _run(run_dir, writes=_Writes(kill_at))
        self.assertEqual(status, 1, stderr[-2000:])
        self.assertIn('_Killed', stderr)
        status, stderr = _run(run_dir, '--resume', writes=_Writes())
        self.assertEqual(status, 0, stderr[-3000:])
        self.assertNotIn('Traceback', stderr)
        self.assert_same_as_reference(run_dir)

  def test_a_kill_before_config_json_leaves_a_directory_to_run_again(self):
    run_dir = os.path.join(self.tmp, 'killed_writing_config')
    status, _ = _run(run_dir, writes=_Writes(1))
    self.assertEqual(status, 1)
    self.assertEqual([n for n in os.listdir(run_dir) if not n.endswith('.tmp')], [])
    status, stderr = _run(run_dir, '--resume', writes=_Writes())
    self.assertEqual(status, 2)
    self.assertIn('no run to resume', stderr)
    status, stderr = _run(run_dir, writes=_Writes())
    self.assertEqual(status, 0, stderr[-3000:])
    self.assert_same_as_reference(run_dir)


if __name__ == '__main__':
  absltest.main()
