"""Tests for tf_fedscale.tasks.synthetic."""

from absl.testing import absltest
import numpy as np

from tf_fedscale.tasks import synthetic


def _pairs(client_data, client_id):
  return [(x.numpy(), int(y)) for x, y in client_data.create_tf_dataset_for_client(client_id)]


class SyntheticTest(absltest.TestCase):

  def test_shapes_counts_and_split(self):
    task = synthetic.build(num_clients=30, seed=1)
    self.assertLen(task.train_data.client_ids, 30)
    x_spec, y_spec = task.train_data.element_type_structure
    self.assertEqual(x_spec.shape, (synthetic.NUM_FEATURES,))
    self.assertEqual(y_spec.shape, ())
    sizes = synthetic.client_sizes(30, 1, 2000)
    for cid in ('0', '29'):
      n_train = len(_pairs(task.train_data, cid))
      n_test = len(_pairs(task.test_data, cid))
      self.assertEqual(n_train, task.num_train_examples[int(cid)])
      self.assertEqual(n_train + n_test, sizes[int(cid)])

  def test_sizes_are_power_law_with_floor(self):
    sizes = synthetic.client_sizes(1000, 0, 100_000)
    self.assertGreaterEqual(sizes.min(), 50)
    self.assertGreater(np.percentile(sizes, 99), 20 * np.median(sizes))

  def test_deterministic_and_seeded(self):
    a = _pairs(synthetic.build(num_clients=5, seed=2).train_data, '3')
    b = _pairs(synthetic.build(num_clients=5, seed=2).train_data, '3')
    c = _pairs(synthetic.build(num_clients=5, seed=4).train_data, '3')
    np.testing.assert_array_equal(a[0][0], b[0][0])
    self.assertFalse(np.array_equal(a[0][0], c[0][0]))

  def test_clients_differ_in_label_distribution(self):
    task = synthetic.build(num_clients=10, seed=0)
    histograms = [np.bincount([y for _, y in _pairs(task.train_data, str(i))],
                              minlength=synthetic.NUM_CLASSES) for i in range(10)]
    tops = {int(np.argmax(h)) for h in histograms}
    self.assertGreater(len(tops), 2)

  def test_shared_model_is_one_labelling_model(self):
    for shared, same in ((True, True), (False, False)):
      w0, b0 = synthetic.labelling_model(0, 3, 0.5, shared)
      w7, b7 = synthetic.labelling_model(7, 3, 0.5, shared)
      self.assertEqual(np.array_equal(w0, w7) and np.array_equal(b0, b7), same)
    task = synthetic.build(num_clients=8, seed=3, shared_model=True)
    w, b = synthetic.labelling_model(7, 3, 0.5, True)
    x, y = zip(*_pairs(task.train_data, '7'))
    np.testing.assert_array_equal(np.argmax(np.stack(x) @ w.numpy() + b.numpy(), axis=1), y)

if __name__ == '__main__':
  absltest.main()
