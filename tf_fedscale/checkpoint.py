"""Checkpoints of a simulation through `tff.program.FileProgramStateManager`.

A checkpoint is a nested structure of arrays that the simulation assembles:
for the synchronous driver the TFF process state, the round number, the virtual
clock and the selector's state; for FedBuff also the clients in flight and the
buffer. Availability is a pure function of virtual time and every random draw
is derived from the seed and the round (or server step), so nothing else needs
saving. TFF writes each version into a temporary directory and renames it, so a
kill mid-write leaves the previous version usable.
"""

from collections.abc import Mapping
from typing import Any, Optional

import tensorflow_federated as tff

from tf_fedscale.engine import coroutines
from tf_fedscale.engine import runtime

PREFIX = 'round_'


class CorruptCheckpointError(Exception):
  """The newest checkpoint cannot be read; `.version` and `.previous` say which."""

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
    runtime.release_tff_import_context_at_exit()  # a clean exit without a context
    self._manager = tff.program.FileProgramStateManager(
        root_dir, prefix=PREFIX, keep_total=keep_total, keep_first=False)

  def versions(self) -> list[int]:
    """Rounds that have a checkpoint, oldest first."""
    return coroutines.run(self._manager.get_versions()) or []

  def due(self, round_num: int, last_round: int) -> bool:
    return round_num % self.every_rounds == 0 or round_num == last_round

  def save(self, round_num: int, state: Mapping[str, Any]) -> None:
    """Saves `state` (a nested structure of arrays) as round `round_num`."""
    coroutines.run(self._manager.save(dict(state), round_num))

  def load(self, version: int, structure: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint of round `version`, unflattened like `structure`."""
    return coroutines.run(self._manager.load(version, dict(structure)))

  def load_latest(self, structure: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The newest checkpoint, None if there is none.

    Raises CorruptCheckpointError, naming the older versions, if it cannot be read.
    """
    versions = self.versions()
    if not versions:
      return None
    try:
      return self.load(versions[-1], structure)
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpointError(versions[-1], versions[:-1], e) from e
