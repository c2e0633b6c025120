"""google_speech on WAV fixtures in FedScale's layout: log-mel/MFCC features,
one federated round with the small CNN lowering the loss, and FedScale's
ResNet-34 built and taking a few eager SGD steps (its federated round is too
slow for CI on 2 cores)."""

import os

from absl.testing import absltest
import tensorflow as tf

from tests import cases
from tests import fixtures


class SpeechRoundTest(cases.TaskRoundTestCase):

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
    self.assert_eager_steps_lower_loss(default, ids['train'])
    mfcc = self.build('google_speech', data, model='cnn', options='features=mfcc')
    self.assertEqual(mfcc.train_data.element_type_structure[0].shape, (32, 32, 1))


if __name__ == '__main__':
  absltest.main()
