"""Tests for tf_fedscale.engine.coroutines: the same result with and without a running loop."""

import asyncio

from absl.testing import absltest

from tf_fedscale.engine import coroutines


async def _double(x: int) -> int:
  await asyncio.sleep(0)
  return 2 * x


async def _fail() -> None:
  raise ValueError('bad value 7')


class CoroutinesTest(absltest.TestCase):

  def test_without_a_running_loop(self):
    self.assertEqual(coroutines.run(_double(21)), 42)

  def test_inside_a_running_loop(self):

    async def notebook_cell():
      with self.assertRaises(RuntimeError):  # what plain asyncio.run does here
        coroutine = _double(1)
        try:
          asyncio.run(coroutine)
        finally:
          coroutine.close()
      return coroutines.run(_double(21))

    self.assertEqual(asyncio.run(notebook_cell()), 42)

  def test_errors_reach_the_caller_inside_a_loop(self):

    async def notebook_cell():
      coroutines.run(_fail())

    with self.assertRaisesRegex(ValueError, 'bad value 7'):
      asyncio.run(notebook_cell())


if __name__ == '__main__':
  absltest.main()
