"""Tasks by name: `--task=NAME --data_dir=PATH`."""

from collections.abc import Callable

from tasks import base
from tasks import synthetic

TaskBuilder = Callable[..., base.Task]

TASKS: dict[str, TaskBuilder] = {
    'synthetic': lambda data_dir, seed: synthetic.build(seed=seed),
}


def build_task(name: str, data_dir: str, seed: int) -> base.Task:
  """The task `name`; raises ValueError for unknown names or missing files."""
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; choose from {sorted(TASKS)}.')
  return TASKS[name](data_dir=data_dir, seed=seed)
