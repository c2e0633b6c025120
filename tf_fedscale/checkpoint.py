"""Checkpoints of a simulation through `tff.program.FileProgramStateManager`.

A checkpoint holds everything a round depends on: the TFF process state, the
round number, the virtual clock and the selector's state. Availability is a
pure function of virtual time and every random draw is derived from
(seed, round), so nothing else needs saving. TFF writes each version into a
temporary directory and renames it, so a kill mid-write leaves the previous
version usable.
"""

import asyncio
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import tensorflow_federated as tff

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
    self._manager = tff.program.FileProgramStateManager(
        root_dir, prefix=PREFIX, keep_total=keep_total, keep_first=False)

  def versions(self) -> list[int]:
    """Rounds that have a checkpoint, oldest first."""
    return asyncio.run(self._manager.get_versions()) or []

  def due(self, round_num: int, last_round: int) -> bool:
    return round_num % self.every_rounds == 0 or round_num == last_round

  def save(self, round_num: int, process_state: Any, virtual_time_s: float,
           selector_state: Mapping[str, Any]) -> None:
    state = {
        'process_state': process_state,
        'round_num': np.int64(round_num),
        'virtual_time_s': np.float64(virtual_time_s),
        'selector_state': dict(selector_state),
    }
    asyncio.run(self._manager.save(state, round_num))

  def load(self, version: int, process_state_structure: Any,
           selector_state_structure: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint of round `version`."""
    structure = {
        'process_state': process_state_structure,
        'round_num': np.int64(0),
        'virtual_time_s': np.float64(0.0),
        'selector_state': dict(selector_state_structure),
    }
    return asyncio.run(self._manager.load(version, structure))

  def load_latest(self, process_state_structure: Any,
                  selector_state_structure: Mapping[str, Any]
                  ) -> Optional[dict[str, Any]]:
    """The newest checkpoint, None if there is none.

    Raises CorruptCheckpointError, naming the older versions, if it cannot be read.
    """
    versions = self.versions()
    if not versions:
      return None
    try:
      return self.load(versions[-1], process_state_structure, selector_state_structure)
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpointError(versions[-1], versions[:-1], e) from e
