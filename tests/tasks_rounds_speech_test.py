"""google_speech on WAV fixtures in FedScale's layout: log-mel/MFCC features,
one federated round with the small CNN lowering the loss, and FedScale's
ResNet-34 built and taking a few eager SGD steps (its federated round is too
slow for CI on 2 cores)."""

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


class SpeechRoundTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.enterContext(tempfile.TemporaryDirectory())
    self.cache = os.path.join(self.root, 'cache')

  def build(self, name, data_dir, **kwargs):
    return registry.build_task(name, data_dir, 0, cache_dir=self.cache, **kwargs)

  def assert_round_lowers_loss(self, task, **kwargs):
    before, after = fixtures.federated_round(task, task.train_data.client_ids[:3], **kwargs)
    self.assertLess(after, before)

  def test_google_speech(self):
    data = os.path.join(self.root, 'speech')
    ids = fixtures.write_fedscale_speech(data, {'train': [5, 4, 6], 'test': [2, 2]})
    task = self.build('google_speech', data, model='cnn')
    self.assertEqual(task.train_data.client_ids, ids['train'])
    self.assertEqual(task.train_data.element_type_structure,
                     (tf.TensorSpec((32, 32, 1), tf.float32), tf.TensorSpec((), tf.int32)))
    x, _ = next(iter(task.train_data.create_tf_dataset_for_client('0')))
    self.assertBetween(float(tf.reduce_min(x)), 0.0, 1.0)
    self.assertAlmostEqual(float(tf.reduce_max(x)), 1.0, places=5)
    self.assert_round_lowers_loss(task)
    default = self.build('google_speech', data)   # FedScale's ResNet-34
    self.assertEqual(default.keras_model_fn().name, 'resnet34')
    before, after = eager_steps_lower_loss(default, ids['train'])
    self.assertLess(after, before)
    mfcc = self.build('google_speech', data, model='cnn', options='features=mfcc')
    self.assertEqual(mfcc.train_data.element_type_structure[0].shape, (32, 32, 1))


if __name__ == '__main__':
  absltest.main()
