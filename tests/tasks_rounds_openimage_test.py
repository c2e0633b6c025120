"""openimage on JPEG fixtures in FedScale's layout: one federated round with the
small CNN lowering the loss, and the default MobileNetV2 (group norm) built and
taking a few eager SGD steps (its federated round is too slow for CI on 2
cores)."""

import os
import tempfile

from absl.testing import absltest
import tensorflow as tf

from tasks import fixtures
from tasks import registry
from tf_fedscale import runtime


def setUpModule():
  global _WORKER
  _WORKER = runtime.install_local_context()


def tearDownModule():
  _WORKER.stop()


def eager_steps_lower_loss(task, client_ids, steps=2, lr=0.005, batch=8):
  """Loss on a fixed batch before and after `steps` plain SGD steps."""
  tf.keras.utils.set_random_seed(0)
  model = task.keras_model_fn()
  data = task.train_data.create_tf_dataset_for_client(client_ids[0])
  for c in client_ids[1:]:
    data = data.concatenate(task.train_data.create_tf_dataset_for_client(c))
  x, y = next(iter(data.batch(batch)))
  loss_fn, optimizer = task.loss_fn(), tf.keras.optimizers.SGD(lr)
  first = float(loss_fn(y, model(x, training=False)))
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
  return first, float(loss_fn(y, model(x, training=False)))


class OpenImageRoundTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.enterContext(tempfile.TemporaryDirectory())
    self.cache = os.path.join(self.root, 'cache')

  def build(self, name, data_dir, **kwargs):
    return registry.build_task(name, data_dir, 0, cache_dir=self.cache, **kwargs)

  def assert_round_lowers_loss(self, task, **kwargs):
    before, after = fixtures.federated_round(task, task.train_data.client_ids[:3], **kwargs)
    self.assertLess(after, before)

  def test_openimage(self):
    data = os.path.join(self.root, 'openimage')
    ids = fixtures.write_fedscale_images(data, {'train': [5, 4, 6], 'test': [2, 2]},
                                         channels=3, size=40, image_format='jpeg')
    options = 'image_size=32,num_classes=4'
    task = self.build('openimage', data, model='cnn', options=options)
    self.assertEqual(task.train_data.client_ids, ids['train'])
    self.assertEqual(task.train_data.element_type_structure[0],
                     tf.TensorSpec((32, 32, 3), tf.float32))
    self.assert_round_lowers_loss(task)
    default = self.build('openimage', data, options=options)   # MobileNetV2, group norm
    model = default.keras_model_fn()
    self.assertEqual(model.output_shape, (None, 4))
    self.assertFalse([l for l in model.layers
                      if isinstance(l, tf.keras.layers.BatchNormalization)])
    # Group-norm MobileNetV2 from random init needs a small step at first.
    before, after = eager_steps_lower_loss(default, ids['train'], lr=5e-4)
    self.assertLess(after, before)
    with self.assertRaisesRegex(ValueError, 'num_classes=4'):
      self.build('openimage', data, options='image_size=32,num_classes=3')


if __name__ == '__main__':
  absltest.main()
