"""Tests for the dataset loaders: each on a tiny file set in its real format."""

import json
import lzma
import os
import shutil
import sqlite3
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import audio
from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import femnist
from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import partition
from tf_fedscale.tasks import shakespeare
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage
from tf_fedscale.tasks import tfds_source
from tf_fedscale.tasks import tff_sqlite
from tests import fixtures


def _elements(split: sources.ClientSplit, client_id: str) -> list:
  return list(split.client_data.create_tf_dataset_for_client(client_id).as_numpy_iterator())


class LoaderTestCase(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.enterContext(tempfile.TemporaryDirectory())
    self.cache = os.path.join(self.root, 'cache')

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)


class StorageTest(LoaderTestCase):

  def test_roundtrip_and_quoted_client_ids(self):
    schema = {'x': storage.Field('float32', (2, 3)), 'y': storage.Field('int64'),
              's': storage.Field(storage.STRING), 'v': storage.Field(storage.STRING, (2,))}
    path = self.path('store.sqlite')
    with storage.writing(path, schema, {'note': 'hi'}) as writer:
      writer.add('train', "o'brien", [{'x': np.full((2, 3), 1.5), 'y': 7, 's': 'é',
                                        'v': ['a', 'b']}])
      writer.add('train', 'b', [])   # no examples: not recorded
      writer.add('train', "o'brien", [{'x': np.zeros((2, 3)), 'y': -1, 's': '', 'v': ['', 'c']}])
    self.assertEqual(storage.read_meta(path)['note'], 'hi')
    self.assertEqual(storage.read_schema(path), schema)
    split = sources.open_split(path, 'train', storage.build_parser(schema))
    self.assertEqual(split.client_ids, ("o'brien",))
    np.testing.assert_array_equal(split.num_examples, [2])
    first, second = _elements(split, "o'brien")
    np.testing.assert_array_equal(first['x'], np.full((2, 3), 1.5, np.float32))
    self.assertEqual((first['y'], first['s'].decode()), (7, 'é'))
    self.assertEqual(list(second['v']), [b'', b'c'])
    self.assertEqual(second['y'], -1)

  def test_failed_write_leaves_nothing(self):
    path = self.path('bad.sqlite')
    with self.assertRaises(ValueError):
      with storage.writing(path, {'x': storage.Field('float32', (2,))}) as writer:
        writer.add('train', 'a', [{'x': [1.0, 2.0, 3.0]}])
    self.assertEmpty([f for f in os.listdir(self.root)])

  def test_filter_sizes(self):
    path = self.path('s.sqlite')
    with storage.writing(path, {'y': storage.Field('int64')}) as writer:
      for client, n in (('a', 2), ('b', 5), ('c', 9)):
        writer.add('train', client, [{'y': 0}] * n)
    split = sources.open_split(path, 'train', storage.build_parser(storage.read_schema(path)))
    self.assertEqual(split.filter_sizes(3, 0).client_ids, ('b', 'c'))
    self.assertEqual(split.filter_sizes(1, 5).client_ids, ('a', 'b'))
    # Places before filtering survive it (FedScale's client numbering).
    self.assertEqual(split.filter_sizes(3, 0).positions.tolist(), [1, 2])
    source = sources.FederatedSource(split, split)
    with self.assertRaisesRegex(ValueError, 'min_samples'):
      source.filter_train(10, 0)


class LeafTest(LoaderTestCase):

  def test_femnist_shards_clients_specs_counts(self):
    data = self.path('femnist')
    writers = fixtures.write_leaf_femnist(data, train_counts=(5, 3, 4, 2),
                                          test_counts=(1, 2, 1, 1))
    splits = leaf.load(data, self.cache)
    train, test = splits['train'], splits['test']
    # Shard order (0 before 10), then each shard's users order.
    self.assertEqual(train.client_ids, tuple(writers))
    np.testing.assert_array_equal(train.num_examples, [5, 3, 4, 2])
    np.testing.assert_array_equal(test.num_examples, [1, 2, 1, 1])
    spec = train.client_data.element_type_structure
    self.assertEqual(spec['x'], tf.TensorSpec((784,), tf.float32))
    self.assertEqual(spec['y'], tf.TensorSpec((), tf.int64))
    with open(os.path.join(data, 'train', 'all_data_10_niid_0_train_9.json')) as f:
      raw = json.load(f)
    got = _elements(train, writers[2])
    np.testing.assert_allclose(got[0]['x'], raw['user_data'][writers[2]]['x'][0], atol=1e-6)
    self.assertEqual([e['y'] for e in got], raw['user_data'][writers[2]]['y'])

  def test_bad_examples_name_file_user_and_example(self):
    data = self.path('bad')
    users = {'u1': {'x': [[1, 2]] * 3, 'y': [1, 2, 3]},
             'u2': {'x': [[1, 2], [1, 2], [1, 2, 3]], 'y': [0, 1, 2]}}
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'a.json'), users)
    with self.assertRaisesRegex(ValueError, r"a.json: user 'u2' example 2: x: expected shape"):
      leaf.load(data, self.cache)
    users['u2']['x'][2] = [1, 2]
    users['u1']['y'][1] = 7
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'a.json'), users)
    with self.assertRaisesRegex(ValueError, r"user 'u1' example 1: label 7 is not a class "
                                r'id in \[0, 5\)'):
      leaf.load(data, self.cache, num_classes=5)
    self.assertLen(leaf.load(data, self.cache, num_classes=8)['train'].client_ids, 2)

  def test_fields_the_task_needs_are_checked_naming_the_schema_example(self):
    data = self.path('short')
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'a.json'),
                              {'u1': {'x': [[0.5] * 100] * 2, 'y': [1, 2]}})
    with self.assertRaisesRegex(
        ValueError, r"a.json: user 'u1' example 0: x holds float32 numbers of shape \[100\]; "
        'the task needs 784 pixel values'):
      leaf.load(data, self.cache, needs=femnist.LEAF_NEEDS)
    with self.assertRaisesRegex(ValueError, 'x holds float32 numbers .* needs one string'):
      leaf.load(data, self.cache, needs=shakespeare.LEAF_NEEDS)

  def test_users_must_match_user_data(self):
    data = self.path('users')
    path = os.path.join(data, 'train', 'a.json')
    fixtures.write_leaf_shard(path, {'u1': {'x': [[1.0]], 'y': [0]},
                                     'u2': {'x': [[2.0]], 'y': [1]}})
    with open(path) as f:
      raw = json.load(f)
    for users, error in ((['u1', 'u3'], "have no entry in \"user_data\", e.g. 'u3'"),
                         ('u1', '"users" must be a list')):
      with open(path, 'w') as f:
        json.dump(dict(raw, users=users), f)
      with self.assertRaisesRegex(ValueError, error):
        leaf.load(data, self.cache)
    with open(path, 'w') as f:
      json.dump(dict(raw, users=['u1']), f)
    with self.assertLogs(level='WARNING') as logs:
      splits = leaf.load(data, self.cache)
    self.assertEqual(splits['train'].client_ids, ('u1',))
    self.assertIn("left out (LEAF lists every user), e.g. 'u2'", '\n'.join(logs.output))

  def test_cached_conversion_is_reused_and_invalidated(self):
    data = self.path('leaf')
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'a.json'),
                              {'u1': {'x': [[1, 2]], 'y': [3]}})
    fixtures.write_leaf_shard(os.path.join(data, 'test', 'a.json'),
                              {'u1': {'x': [[1.5, 2]], 'y': [4]}})
    first = leaf.load(data, self.cache)['train'].path
    self.assertEqual(leaf.load(data, self.cache)['train'].path, first)
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'a.json'),
                              {'u1': {'x': [[1, 2], [3, 4]], 'y': [3, 5]}})
    os.utime(os.path.join(data, 'train', 'a.json'), ns=(1, 1))
    splits = leaf.load(data, self.cache)
    self.assertNotEqual(splits['train'].path, first)
    np.testing.assert_array_equal(splits['train'].num_examples, [2])
    # Ints in the first shard, floats later: vectors are stored as float32.
    self.assertEqual(_elements(splits['test'], 'u1')[0]['x'].tolist(), [1.5, 2.0])
    fixtures.write_leaf_shard(os.path.join(data, 'test', 'a.json'),
                              {'u1': {'x': [[1.5, 2]], 'y': [4.5]}})
    with self.assertRaisesRegex(ValueError, 'non-integer'):
      leaf.load(data, self.cache)

  def test_value_types(self):
    data = self.path('types')
    users = {
        'tweeter': {'x': [['1', 'Mon', 'NO_QUERY', 'tweeter', 'so happy', 'training']],
                    'y': [1]},
    }
    fixtures.write_leaf_shard(os.path.join(data, 'test', 's.json'), users)
    (split,) = leaf.load(data, self.cache).values()
    self.assertEqual(split.split, 'test')
    element = _elements(split, 'tweeter')[0]
    self.assertEqual(element['x'][4], b'so happy')
    data = self.path('vehicle')
    fixtures.write_leaf_shard(os.path.join(data, 'train', 'mytrain.json'),
                              {'f_00000': {'x': [[0.5, -1.0], [2.0, 0.0]], 'y': [[-1], [1]]}})
    split = leaf.load(data, self.cache)['train']
    self.assertEqual([e['y'].tolist() for e in _elements(split, 'f_00000')], [[-1], [1]])

  def test_label_filter_and_num_samples_mismatch(self):
    data = self.path('digits')
    fixtures.write_leaf_shard(os.path.join(data, 'train', 's.json'), {
        'a': {'x': [[0.0], [1.0], [2.0]], 'y': [3, 40, 9]},
        'b': {'x': [[0.0]], 'y': [55]}})
    with open(os.path.join(data, 'train', 's.json')) as f:
      raw = json.load(f)
    raw['num_samples'] = [4, 1]
    with open(os.path.join(data, 'train', 's.json'), 'w') as f:
      json.dump(raw, f)
    split = leaf.load(data, self.cache, label_below=10)['train']
    self.assertEqual(split.client_ids, ('a',))
    self.assertEqual([e['y'] for e in _elements(split, 'a')], [3, 9])
    meta = storage.read_meta(split.path)
    self.assertEqual(meta['declared_num_samples'], {'train': 5})
    self.assertLen(meta['num_samples_mismatches'], 1)

  def test_errors(self):
    with self.assertRaises(FileNotFoundError) as e:
      leaf.load(self.path('nowhere'), self.cache, dataset='femnist')
    self.assertIn('train/*.json', str(e.exception))
    self.assertIn('github.com/TalwalkarLab/leaf', str(e.exception))
    bad = self.path('bad')
    os.makedirs(os.path.join(bad, 'train'))
    with open(os.path.join(bad, 'train', 'x.json'), 'w') as f:
      f.write('{"users": ["a"], "user_data": {"a": {"x": [[1]], "y": [1, 2]}}}')
    with self.assertRaisesRegex(ValueError, 'mismatched'):
      leaf.load(bad, self.cache)


class FedScaleCsvTest(LoaderTestCase):

  def test_images_under_split_dirs(self):
    data = self.path('openimage')
    ids = fixtures.write_fedscale_images(data, {'train': [3, 1, 2], 'test': [2]},
                                         channels=3, image_format='jpeg')
    splits = fedscale_csv.load(data, dataset='openimage', published='x', num_classes=4,
                               cache_dir=self.cache)
    self.assertEqual(splits['train'].client_ids, tuple(ids['train']))
    np.testing.assert_array_equal(splits['train'].num_examples, [3, 1, 2])
    element = _elements(splits['train'], ids['train'][2])[1]
    self.assertTrue(os.path.isfile(element['sample'].decode()))
    self.assertTrue(element['sample'].decode().startswith(os.path.join(data, 'train')))
    mapping = fedscale_csv.read_mapping(fedscale_csv.mapping_path(data, 'train'))
    self.assertEqual(element['label'], mapping.label_ids[-1])

  def test_paths_relative_to_data_dir_and_missing_files(self):
    data = self.path('femnist')
    fixtures.write_fedscale_images(data, {'train': [2], 'test': [1]}, under_split=False)
    splits = fedscale_csv.load(data, dataset='femnist', published='x', num_classes=4,
                               cache_dir=self.cache)
    sample = _elements(splits['train'], '100')[0]['sample'].decode()
    self.assertEqual(os.path.dirname(os.path.dirname(sample)), data)
    os.remove(os.path.join(data, 'c100', 'img_1.png'))
    with self.assertRaisesRegex(FileNotFoundError, r'1 of 2 samples .* missing'):
      fedscale_csv.load(data, dataset='femnist', published='x', num_classes=4,
                        cache_dir=self.path('c2'))

  def test_speech_name_only_mapping(self):
    data = self.path('speech')
    ids = fixtures.write_fedscale_speech(data, {'train': [2, 3], 'test': [1]})
    mapping = fedscale_csv.read_mapping(fedscale_csv.mapping_path(data, 'train'))
    self.assertIsNone(mapping.label_ids)
    self.assertEqual(mapping.client_ids, ids['train'])
    classes = ('down', 'no', 'up', 'yes')
    splits = fedscale_csv.load(data, dataset='speech', published='x', label_from='label_name',
                               classes=classes, num_classes=4, cache_dir=self.cache)
    got = [e['label'] for e in _elements(splits['train'], ids['train'][1])]
    rows = [classes.index(n) for c, n in zip(mapping.client_of_row, mapping.label_names)
            if c == 1]
    self.assertEqual(got, rows)
    with self.assertRaisesRegex(ValueError, 'unknown label names'):
      fedscale_csv.load(data, dataset='speech', published='x', label_from='label_name',
                        classes=('yes',), num_classes=1, cache_dir=self.path('c2'))
    with self.assertRaisesRegex(ValueError, 'no label_id column'):
      fedscale_csv.load(data, dataset='speech', published='x', num_classes=4,
                        cache_dir=self.path('c3'))

  def test_inline_text_with_rating_labels(self):
    data = self.path('amazon')
    ids = fixtures.write_fedscale_amazon(data, {'train': [2, 1], 'test': [1]})
    splits = fedscale_csv.load(data, dataset='amazon', published='x', label_from='rating',
                               inline=True, num_classes=5, cache_dir=self.cache)
    element = _elements(splits['train'], ids['train'][1])[0]
    self.assertIn(b'the Product ARRIVED', element['sample'])
    mapping = fedscale_csv.read_mapping(fedscale_csv.mapping_path(data, 'train'))
    self.assertEqual(element['label'], int(mapping.label_names[-1]) - 1)

  def test_label_ids_outside_the_classes_name_file_line_client_and_example(self):
    data = self.path('bad_labels')
    fixtures.write_fedscale_images(data, {'train': [2, 3], 'test': [1]},
                                   label_ids={('train', 3): 62, ('train', 4): -1})
    with self.assertRaisesRegex(
        ValueError, r"client_data_mapping/train.csv:5: client '101' example 1: label_id 62 "
        r'is not a class id in \[0, 62\) \(and 1 more\)'):
      fedscale_csv.load(data, dataset='femnist', published='x', num_classes=62,
                        cache_dir=self.cache)
    self.assertFalse(os.listdir(self.cache) if os.path.isdir(self.cache) else [])

  def test_sample_files_must_be_what_the_task_decodes(self):
    images = self.path('images')
    fixtures.write_fedscale_images(images, {'train': [2, 2], 'test': [1]},
                                   not_images=[('train', 3)])
    with self.assertRaisesRegex(
        ValueError, r"train.csv:5: client '101' example 1: sample .*c101/img_1.png is not a "
        r"JPEG, PNG, GIF or BMP image \(it starts with b'<html>40'\)"):
      fedscale_csv.load(images, dataset='femnist', published='x', num_classes=4,
                        sample_format='image', cache_dir=self.cache)
    speech = self.path('speech')
    fixtures.write_fedscale_speech(speech, {'train': [1, 2], 'test': [1]})
    clip = fedscale_csv.read_mapping(fedscale_csv.mapping_path(speech, 'test')).samples[0]
    fedscale_csv.load(speech, dataset='speech', published='x', label_from='label_name',
                      classes=('down', 'no', 'up', 'yes'), num_classes=4,
                      sample_format='wav', cache_dir=self.cache)
    with open(os.path.join(speech, 'test', clip), 'r+b') as f:
      f.write(b'RIFX')
    with self.assertRaisesRegex(ValueError, "test.csv:2: client '0' example 0: .* is not a "
                                'RIFF/WAVE file'):
      fedscale_csv.load(speech, dataset='speech', published='x', label_from='label_name',
                        classes=('down', 'no', 'up', 'yes'), num_classes=4,
                        sample_format='wav', cache_dir=self.path('c2'))

  def test_missing_mapping(self):
    with self.assertRaises(FileNotFoundError) as e:
      fedscale_csv.load(self.path('none'), dataset='google_speech', num_classes=35,
                        published='https://example.org/speech', cache_dir=self.cache)
    message = str(e.exception)
    self.assertIn('client_data_mapping/train.csv', message)
    self.assertIn('https://example.org/speech', message)
    os.makedirs(self.path('h', 'client_data_mapping'))
    with open(self.path('h', 'client_data_mapping', 'train.csv'), 'w') as f:
      f.write('who,what\n1,2\n')
    with self.assertRaisesRegex(ValueError, 'lacks client_id'):
      fedscale_csv.read_mapping(self.path('h', 'client_data_mapping', 'train.csv'))


class TffSqliteTest(LoaderTestCase):

  def test_emnist_splits(self):
    data = self.path('tff')
    writers = fixtures.write_tff_emnist(data)
    splits = tff_sqlite.load('emnist', data, ('train', 'test', 'digits_train'), self.cache)
    self.assertEqual(splits['train'].client_ids, tuple(writers))
    np.testing.assert_array_equal(splits['train'].num_examples, [8, 9, 10])
    np.testing.assert_array_equal(splits['test'].num_examples, [3, 4, 5])
    spec = splits['train'].client_data.element_type_structure
    self.assertEqual(spec['pixels'], tf.TensorSpec((28, 28), tf.float32))
    self.assertEqual(spec['label'], tf.TensorSpec((), tf.int32))
    digits = [e['label'] for e in _elements(splits['digits_train'], writers[2])]
    self.assertLen(digits, 10)
    self.assertTrue(all(0 <= d <= 9 for d in digits))

  def test_other_databases(self):
    data = self.path('tff')
    fixtures.write_tff_shakespeare(data)
    fixtures.write_tff_stackoverflow(data)
    fixtures.write_tff_cifar100(data)
    shakespeare = tff_sqlite.load('shakespeare', data, cache_dir=self.cache)['train']
    self.assertEqual(shakespeare.client_ids, ('KING_LEAR_KENT', 'HAMLET_OPHELIA'))
    self.assertIsInstance(_elements(shakespeare, 'HAMLET_OPHELIA')[0]['snippets'], bytes)
    so = tff_sqlite.load('stackoverflow', data, ('train', 'heldout', 'test'), self.cache)
    np.testing.assert_array_equal(so['heldout'].num_examples, [2, 3, 4])
    self.assertEqual(_elements(so['train'], '00002')[0]['tags'], b'java|exception')
    cifar = tff_sqlite.load('cifar100', data, cache_dir=self.cache)['test']
    element = _elements(cifar, '1')[0]
    self.assertEqual((element['image'].shape, element['image'].dtype), ((32, 32, 3), np.uint8))
    self.assertEqual(element['coarse_label'], element['label'] // 5)

  def test_every_example_is_parsed_and_its_label_checked_once(self):
    data = self.path('tff')
    fixtures.write_tff_emnist(data, replace={('all_train', 'f0001_41', 4): {'label': 70}})
    with self.assertRaisesRegex(
        ValueError, r"emnist_all.sqlite: split 'all_train' client 'f0001_41' example 4: "
        r'label 70 is not a class id in \[0, 62\)'):
      tff_sqlite.load('emnist', data, cache_dir=self.cache, num_classes=62)
    # The digits splits are fine; their verdict is cached and the check skipped.
    tff_sqlite.load('emnist', data, ('digits_train',), self.cache, num_classes=10)
    self.assertLen([f for f in os.listdir(self.cache) if f.startswith('tff-checked-')], 1)
    with self.assertRaisesRegex(ValueError, 'label 5 is not a class id in'):
      tff_sqlite.load('emnist', data, ('digits_train',), self.path('c2'), num_classes=5)

  def test_examples_of_the_wrong_shape_or_type_are_named(self):
    for fields, reason in (({'pixels': np.zeros((27, 28), np.float32)}, 'pixels'),
                           ({'label': 'seven'}, 'label')):
      with self.subTest(reason):
        data = self.path(reason)
        fixtures.write_tff_emnist(data, replace={('all_test', "f0002_'q", 1): fields})
        with self.assertRaisesRegex(
            ValueError, "split 'all_test' client \"f0002_'q\" example 1: does not fit "
            rf"TFF's format \(pixels float32 \[28, 28\], label int64 \[\]\): .*{reason}"):
          tff_sqlite.load('emnist', data, cache_dir=self.cache, num_classes=62)

  def test_lzma_archive_is_decompressed_into_the_cache(self):
    data = self.path('tff')
    fixtures.write_tff_shakespeare(self.path('raw'))
    os.makedirs(data)
    with open(self.path('raw', 'shakespeare.sqlite'), 'rb') as src, lzma.open(
        os.path.join(data, 'shakespeare.sqlite.lzma'), 'wb') as dst:
      shutil.copyfileobj(src, dst)
    split = tff_sqlite.load('shakespeare', data, cache_dir=self.cache)['test']
    self.assertTrue(split.path.startswith(self.cache))
    self.assertLen(split, 2)

  def test_missing_and_malformed(self):
    with self.assertRaises(FileNotFoundError) as e:
      tff_sqlite.load('stackoverflow', self.path('empty'))
    self.assertIn('stackoverflow.sqlite', str(e.exception))
    self.assertIn('tff-datasets-public', str(e.exception))
    os.makedirs(self.path('bad'))
    with sqlite3.connect(self.path('bad', 'cifar100.sqlite')) as con:
      con.execute('CREATE TABLE other (a TEXT)')
    with self.assertRaisesRegex(ValueError, 'not a TFF ClientData SQLite file'):
      tff_sqlite.load('cifar100', self.path('bad'), cache_dir=self.cache)


class TfdsTest(LoaderTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tfds_root = tempfile.mkdtemp()
    fixtures.write_tfds(cls._tfds_root, num_train=120, num_test=40)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls._tfds_root)
    super().tearDownClass()

  def test_partitions(self):
    natural = tfds_source.load('toy_images', self._tfds_root, partition='feature:user',
                               cache_dir=self.cache)
    # Clients in first-appearance order of TFDS's (deterministic) record order.
    self.assertCountEqual(natural['train'].client_ids, [f'user{i}' for i in range(7)])
    self.assertEqual(natural['train'].total_examples, 120)
    spec = natural['train'].client_data.element_type_structure
    self.assertEqual(spec['x'], tf.TensorSpec((8, 8, 3), tf.uint8))
    dirichlet = tfds_source.load('toy_images', self._tfds_root, partition='dirichlet',
                                 num_clients=6, alpha=0.1, cache_dir=self.cache)
    self.assertEqual(dirichlet['train'].client_ids, tuple(f'train_{k}' for k in range(6)))
    np.testing.assert_array_equal(dirichlet['train'].num_examples, [20] * 6)
    pam = tfds_source.load('toy_images', self._tfds_root, partition='pam',
                           samples_per_client=30, cache_dir=self.cache)
    self.assertLen(pam['train'], 4)
    self.assertLen(pam['test'], 1)

  def test_labels_beyond_the_declared_classes(self):
    root = self.path('tfds')
    fixtures.write_tfds(root, num_train=30, num_test=10, declared_num_classes=4)
    with self.assertRaisesRegex(
        ValueError, r"toy_images/1.0.0: split 'train' example \d+ \(before partitioning "
        r'into clients\): label \d+ is not a class id in \[0, 4\)'):
      tfds_source.load('toy_images', root, partition='iid', num_clients=3, num_classes=4,
                       cache_dir=self.cache)

  def test_not_prepared(self):
    with self.assertRaises(FileNotFoundError) as e:
      tfds_source.load('no_such_dataset_xyz', self._tfds_root, cache_dir=self.cache)
    self.assertIn('tfds build no_such_dataset_xyz', str(e.exception))
    with self.assertRaisesRegex(ValueError, 'unknown partition'):
      tfds_source.load('toy_images', self._tfds_root, partition='zipf', cache_dir=self.cache)


class PartitionTest(absltest.TestCase):

  def _check_disjoint_cover(self, parts, n):
    joined = np.concatenate(parts)
    self.assertLen(np.unique(joined), len(joined))
    self.assertEqual(len(joined), n)

  def test_iid_and_power_law(self):
    rng = np.random.default_rng(0)
    self._check_disjoint_cover(partition.iid(103, 10, rng), 103)
    sizes = partition.power_law_sizes(10_000, 100, 1.2, rng, min_size=5)
    self.assertEqual(sizes.sum(), 10_000)
    self.assertGreaterEqual(sizes.min(), 5)
    self.assertGreater(sizes.max(), 10 * np.median(sizes))
    self._check_disjoint_cover(partition.iid_with_sizes(sizes, rng), 10_000)

  def test_dirichlet_skew_grows_as_alpha_shrinks(self):
    labels = np.repeat(np.arange(10), 200)
    spread = {}
    for alpha in (0.05, 100.0):
      parts = partition.dirichlet(labels, 20, alpha, np.random.default_rng(1))
      self._check_disjoint_cover(parts, 2000)
      spread[alpha] = np.mean([len(np.unique(labels[p])) for p in parts])
    self.assertLess(spread[0.05], 4)
    self.assertGreater(spread[100.0], 9.5)

  def test_pam(self):
    fine = np.repeat(np.arange(20), 50)
    coarse = fine // 5
    parts = partition.pam(fine, coarse, 10, 100, 0.1, 10.0, np.random.default_rng(2))
    self._check_disjoint_cover(parts, 1000)
    self.assertTrue(all(len(p) == 100 for p in parts))
    # Sparse coarse-label mixtures: most clients are dominated by one coarse label.
    top = [np.bincount(coarse[p], minlength=4).max() / 100 for p in parts]
    self.assertGreater(np.median(top), 0.5)

  def test_by_feature(self):
    ids, parts = partition.by_feature([b'b', b'a', b'b'])
    self.assertEqual(ids, ['b', 'a'])
    self.assertEqual([p.tolist() for p in parts], [[0, 2], [1]])


class AudioTest(absltest.TestCase):

  def test_log_mel_shape_range_and_pitch(self):
    peaks = []
    for hz in (300.0, 2400.0):
      wav = tf.audio.encode_wav(tf.constant(fixtures.tone(hz, 0.7))[:, None], 16000)
      features = audio.log_mel(audio.decode_clip(wav))
      self.assertEqual(features.shape, (32, 32))
      self.assertLessEqual(float(tf.reduce_max(features)), 0.0)
      self.assertGreaterEqual(float(tf.reduce_min(features)), -audio.TOP_DB)
      peaks.append(int(tf.argmax(tf.reduce_mean(features[:, :10], axis=1))))
    self.assertLess(peaks[0], peaks[1])
    mfcc = audio.mfcc(audio.decode_clip(wav))
    self.assertEqual(mfcc.shape, (32, 32))


if __name__ == '__main__':
  absltest.main()
