"""Running `tff.program` coroutines from synchronous code, inside a notebook too.

`asyncio.run` raises when the calling thread already runs an event loop (Jupyter,
Colab, any asyncio program). There the coroutine runs on a fresh loop in a helper
thread, and the caller waits for its result as before.
"""

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar('T')


def run(coroutine: Coroutine[Any, Any, T]) -> T:
  """Runs `coroutine` to completion and returns its result (or raises its error)."""
  try:
    asyncio.get_running_loop()
  except RuntimeError:  # no loop in this thread: the ordinary case
    return asyncio.run(coroutine)
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    return pool.submit(asyncio.run, coroutine).result()
