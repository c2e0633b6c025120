"""Tests for tf_fedscale.engine.client_data_cache: bounded cache and ordered prefetch."""

import threading
import time

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale.engine import client_data_cache


def _elements(dataset):
  return [tf.nest.map_structure(lambda t: t.numpy().tolist(), e) for e in dataset]


class SinglePassTest(absltest.TestCase):

  def test_same_elements_without_autotune_or_default_rewrites(self):
    def dataset():  # a new one each time: a seeded shuffle reshuffles when reread
      return tf.data.Dataset.range(50).map(lambda i: i * 2).shuffle(
          16, seed=3).repeat(2).batch(7)

    read = client_data_cache.single_pass(dataset())
    self.assertEqual(_elements(read), _elements(dataset()))
    self.assertFalse(read.options().autotune.enabled)
    self.assertFalse(read.options().experimental_optimization.apply_default_optimizations)


class MaterializedDatasetTest(absltest.TestCase):

  def test_replays_elements_of_several_shapes(self):
    dataset = tf.data.Dataset.range(7).map(lambda i: {'x': tf.cast(i, tf.float32)}).batch(3)
    materialized = client_data_cache.MaterializedDataset(dataset)
    self.assertEqual(_elements(materialized.dataset()), _elements(dataset))
    self.assertEqual(materialized.nbytes, 7 * 4)
    empty = client_data_cache.MaterializedDataset(dataset.take(0))
    self.assertEqual(_elements(empty.dataset()), [])

  def test_replays_elements_of_one_shape_and_ragged_ones(self):
    one_shape = tf.data.Dataset.range(12).map(
        lambda i: (tf.fill([2], i), tf.cast(i, tf.int32))).batch(4)
    materialized = client_data_cache.MaterializedDataset(one_shape)
    self.assertEqual(_elements(materialized.dataset()), _elements(one_shape))
    self.assertEqual(materialized.nbytes, 12 * (2 * 8 + 4))
    longer = tf.data.Dataset.range(client_data_cache._RUN_ELEMENTS + 5)  # two runs
    self.assertEqual(_elements(client_data_cache.MaterializedDataset(longer).dataset()),
                     _elements(longer))
    ragged = tf.data.Dataset.range(1, 5).map(lambda n: tf.range(n))  # lengths 1..4
    self.assertEqual(_elements(client_data_cache.MaterializedDataset(ragged).dataset()),
                     _elements(ragged))


class ClientDataCacheTest(absltest.TestCase):

  def test_hits_misses_and_eviction(self):
    builds = []

    def build(n):
      def fn():
        builds.append(n)
        return tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.float32))
      return fn

    cache = client_data_cache.ClientDataCache(max_bytes=40)  # 10 floats
    self.assertEqual(_elements(cache.get('a', build(4))), [0, 1, 2, 3])
    self.assertEqual(_elements(cache.get('a', build(4))), [0, 1, 2, 3])
    cache.get('b', build(4))
    cache.get('c', build(4))  # 48 bytes: 'a', the least recently used, goes
    self.assertEqual((len(cache), cache.nbytes, cache.hits, cache.misses), (2, 32, 1, 3))
    cache.get('a', build(4))
    self.assertEqual(builds, [4, 4, 4, 4])
    cache.get('big', build(20))  # larger than the whole cache: not kept
    self.assertNotIn('big', [k for k in cache._entries])  # pylint: disable=protected-access
    with self.assertRaisesRegex(ValueError, '-1'):
      client_data_cache.ClientDataCache(-1)

  def test_no_cache(self):
    cache = client_data_cache.ClientDataCache(0)
    dataset = tf.data.Dataset.range(3)
    self.assertIs(cache.get('a', lambda: dataset), dataset)
    self.assertLen(cache, 0)


class PrefetcherTest(absltest.TestCase):

  def test_in_order_at_most_depth_ahead(self):
    built, lock = [], threading.Lock()

    def builder(i):
      def fn():
        with lock:
          built.append(i)
        return i * i
      return fn

    prefetcher = client_data_cache.Prefetcher(depth=2)
    getters, finish = prefetcher.start([builder(i) for i in range(6)])
    time.sleep(0.3)
    self.assertEqual(built, [0, 1])  # nothing taken yet: 2 ahead
    self.assertEqual([g() for g in getters], [0, 1, 4, 9, 16, 25])
    finish()
    getters, finish = prefetcher.start([builder(i) for i in range(10, 15)])
    self.assertEqual(getters[0](), 100)
    finish()  # a round abandoned half way does not block the next one
    getters, finish = prefetcher.start([builder(7)])
    self.assertEqual(getters[0](), 49)
    finish()
    prefetcher.close()


if __name__ == '__main__':
  absltest.main()
