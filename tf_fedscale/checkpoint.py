"""Checkpoints of a simulation through `tff.program.FileProgramStateManager`.

A checkpoint is a nested structure of arrays that the simulation assembles:
for the synchronous driver the TFF process state, the round number, the virtual
clock and the selector's state; for FedBuff also the clients in flight and the
buffer. Availability is a pure function of virtual time and every random draw
is derived from the seed and the round (or server step), so nothing else needs
saving. TFF writes each version into a temporary directory and renames it, so a
kill mid-write leaves the previous version usable.
"""

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any, Optional

import tensorflow as tf
import tensorflow_federated as tff

from tf_fedscale.engine import coroutines
from tf_fedscale.engine import runtime
from tf_fedscale import output_files

PREFIX = 'round_'


def _is_temporary(name: str) -> bool:
  """A directory TFF writes a checkpoint into before renaming it."""
  return name.startswith(PREFIX) and '_temp' in name


class CorruptCheckpointError(Exception):
  """A checkpoint cannot be read: `.version` is its round, `.previous` the earlier ones."""

  def __init__(self, version: int, previous: list[int], cause: Exception):
    self.version = version
    self.previous = previous
    super().__init__(f'checkpoint of round {version} cannot be read '
                     f'({type(cause).__name__}: {cause})')


class Checkpointer:
  """Saves every `every_rounds` rounds (and on request); loads the newest."""

  def __init__(self, root_dir: str, every_rounds: int, keep_total: int = 3):
    if every_rounds < 1:
      raise ValueError(f'every_rounds must be >= 1, got {every_rounds}.')
    self.every_rounds = every_rounds
    self.root_dir = root_dir
    runtime.release_tff_import_context_at_exit()  # a clean exit without a context
    self._manager = tff.program.FileProgramStateManager(
        root_dir, prefix=PREFIX, keep_total=keep_total, keep_first=False)

  def versions(self) -> list[int]:
    """Rounds that have a checkpoint, oldest first."""
    return coroutines.run(self._manager.get_versions()) or []

  def due(self, round_num: int, last_round: int) -> bool:
    return round_num % self.every_rounds == 0 or round_num == last_round

  def save(self, round_num: int, state: Mapping[str, Any]) -> None:
    """Saves `state` (a nested structure of arrays) as round `round_num`;
    raises output_files.WriteError when it cannot be written (and removes
    what the failed save left)."""
    try:
      coroutines.run(self._manager.save(dict(state), round_num))
    except (OSError, tf.errors.OpError) as e:
      self._remove(_is_temporary)
      raise output_files.WriteError(os.path.join(self.root_dir, f'{PREFIX}{round_num}'),
                                    e) from e

  def remove_after(self, round_num: int) -> None:
    """Removes the checkpoints of later rounds, and the temporary directories
    of a save that was killed (a resume from `round_num` writes them again)."""
    if os.path.isdir(self.root_dir):
      later = {f'{PREFIX}{v}' for v in self.versions() if v > round_num}
      self._remove(lambda name: name in later or _is_temporary(name))

  def _remove(self, doomed: Callable[[str], bool]) -> None:
    for entry in os.scandir(self.root_dir):
      if doomed(entry.name):
        try:
          shutil.rmtree(entry.path)
        except OSError as e:
          raise output_files.WriteError(entry.path, e) from e

  def load(self, version: int, structure: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint of round `version`, unflattened like `structure`."""
    return coroutines.run(self._manager.load(version, dict(structure)))

  def load_checked(self, version: int, structure: Mapping[str, Any]) -> dict[str, Any]:
    """`load`, raising CorruptCheckpointError (naming the older versions) if
    the checkpoint cannot be read."""
    try:
      return self.load(version, structure)
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpointError(
          version, [v for v in self.versions() if v < version], e) from e

  def load_latest(self, structure: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The newest checkpoint, None if there is none (see `load_checked`)."""
    versions = self.versions()
    return self.load_checked(versions[-1], structure) if versions else None
