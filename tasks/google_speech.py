"""Google Speech Commands keyword spotting (35 words), one client per speaker.

FedScale's layout in `--data_dir`:

    client_data_mapping/train.csv, test.csv   client_id,sample_path,label_name[,label_id]
    train/<sample_path>.wav, test/<sample_path>.wav   16 kHz mono clips

Labels are positions of `label_name` in FedScale's 35-word class list (its
mapping files carry names only). Each clip becomes FedScale's input, a 32 x 32
log-mel spectrogram (`audio.py`, `--task_options=features=mfcc` for MFCCs),
scaled from [-80, 0] dB to [0, 1]. Elements are `(float32 [32, 32, 1], int32)`.
Models: `resnet34` (FedScale's, group norm), `resnet18`, `cnn`.
"""

import tensorflow as tf

from tf_fedscale.tasks import audio
from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources

# FedScale's fedscale/dataloaders/speech.py CLASSES, in its order.
CLASSES = ('up', 'two', 'sheila', 'zero', 'yes', 'five', 'one', 'happy', 'marvin', 'no',
           'go', 'seven', 'eight', 'tree', 'stop', 'down', 'forward', 'learn', 'house',
           'three', 'six', 'backward', 'dog', 'cat', 'wow', 'left', 'off', 'on', 'four',
           'visual', 'nine', 'bird', 'right', 'follow', 'bed')
MODELS = ('resnet34', 'resnet18', 'cnn')
PUBLISHED = ('Speech Commands v2: http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz '
             '(CC-BY-4.0); FedScale\'s client mapping: '
             'https://github.com/SymbioticLab/FedScale/tree/master/benchmark/dataset '
             '(google_speech)')


def element_fn(features: str):
  if features not in audio.FEATURES:
    raise ValueError(f'--task_options: features must be one of {list(audio.FEATURES)}, '
                     f'got {features!r}.')

  def fn(raw):
    x = audio.features_from_file(raw['sample'], features)
    if features == 'logmel':
      x = x / audio.TOP_DB + 1.0
    return tf.reshape(x, (audio.NUM_MELS, 32, 1)), tf.cast(raw['label'], tf.int32)

  return fn


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', features: str = 'logmel') -> base.Task:
  del seed
  model = common.check_model(model, MODELS, 'google_speech')
  fn = element_fn(features)
  splits = fedscale_csv.load(data_dir, dataset='google_speech', published=PUBLISHED,
                             label_from='label_name', classes=CLASSES, cache_dir=cache_dir,
                             num_classes=len(CLASSES), sample_format='wav')
  source = sources.FederatedSource(splits['train'], splits['test'])
  source = source.filter_train(min_samples, max_samples)
  shape = (audio.NUM_MELS, 32, 1)

  def keras_model_fn():
    if model == 'cnn':
      return models.femnist_cnn(len(CLASSES), shape)
    return models.resnet(model, len(CLASSES), shape)

  return common.make_task('google_speech', source, fn, keras_model_fn)
