"""Tests for tasks/checks.py: class ids and fields against what a task needs."""

from absl.testing import absltest
import numpy as np

from tf_fedscale.tasks import checks
from tf_fedscale.tasks import storage


def _where(row: int) -> str:
  return f'f.json: user u example {row}'


class CheckClassIdsTest(absltest.TestCase):

  def test_good_columns_pass(self):
    checks.check_class_ids(np.array([0, 3, 61]), 62, _where)
    checks.check_class_ids(np.array([0.0, 61.0], np.float32), 62, _where)
    checks.check_class_ids([0, 1, 2], 3, _where)
    checks.check_class_ids([[0], [1]], 2, _where)          # LEAF's [[-1]]-style rows
    checks.check_class_ids(np.array([], np.int64), 2, _where)

  def test_first_bad_row_is_named_and_the_others_counted(self):
    for labels, row, shown in (([3, 3, 1000, -1], 2, '1000'), ([-1, 0], 0, '-1'),
                               ([0, 1.5], 1, '1.5'), ([0, float('nan')], 1, 'nan'),
                               ([0, 'a'], 1, "'a'"), ([0, True], 1, 'True'),
                               ([[0], [62]], 1, '[62]'), (np.array([7, 62]), 1, '62')):
      with self.subTest(labels=labels):
        with self.assertRaises(ValueError) as e:
          checks.check_class_ids(labels, 62, _where)
        message = str(e.exception)
        self.assertTrue(message.startswith(f'f.json: user u example {row}: label {shown} '
                                           'is not a class id in [0, 62)'), message)
    with self.assertRaisesRegex(ValueError, r'example 0: rating 9 .* \(and 2 more\); raise it'):
      checks.check_class_ids(np.array([9, 1, 7, 8]), 5, _where, 'rating', 'raise it')

  def test_a_million_labels_take_one_vectorized_pass(self):
    labels = np.random.default_rng(0).integers(0, 62, 1_000_000)
    labels[765_432] = 62
    calls = []
    with self.assertRaisesRegex(ValueError, 'example 765432: label 62'):
      checks.check_class_ids(labels, 62, lambda r: calls.append(r) or _where(r))
    self.assertEqual(calls, [765_432])   # only the bad row is located


class CheckSchemaTest(absltest.TestCase):

  NEEDS = {'x': checks.Need(False, 784, '784 pixel values'),
           'y': checks.Need(False, 1, 'one class id')}

  def test_matching_schema_passes(self):
    checks.check_schema({'x': storage.Field('float32', (784,)), 'y': storage.Field('int64')},
                        self.NEEDS, 'f.json: user u example 0')

  def test_wrong_size_type_or_missing_field(self):
    for schema, pattern in (
        ({'x': storage.Field('float32', (100,)), 'y': storage.Field('int64')},
         r'x holds float32 numbers of shape \[100\]; the task needs 784 pixel values'),
        ({'x': storage.Field(storage.STRING), 'y': storage.Field('int64')},
         r'x holds strings of shape \[\]'),
        ({'x': storage.Field('float32', (784,))}, "no 'y' values; the task needs one class id")):
      with self.subTest(pattern=pattern):
        with self.assertRaisesRegex(ValueError, '^f.json: user u example 0: ' + pattern):
          checks.check_schema(schema, self.NEEDS, 'f.json: user u example 0')


if __name__ == '__main__':
  absltest.main()
