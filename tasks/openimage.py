"""OpenImage classification (FedScale's 596 classes), one client per uploader.

FedScale's layout in `--data_dir`:

    client_data_mapping/train.csv, test.csv   client_id,sample_path,label_name,label_id
    train/<sample_path>, test/<sample_path>   JPEG (or PNG) images

Images are decoded as RGB, resized to `image_size` (FedScale: 256 x 256) and
normalized with FedScale's channel means and deviations. Elements are
`(float32 [image_size, image_size, 3], int32 label_id)`. Models:
`mobilenet_v2` (tf.keras.applications, random init, group norm instead of
batch norm; FedScale's ShuffleNetV2 is not in tf.keras), `resnet18`, and
`cnn` (the small FEMNIST CNN, for CPU smoke runs).
`--task_options=image_size=64` keeps CPU runs affordable.
"""

import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources

MODELS = ('mobilenet_v2', 'resnet18', 'cnn')
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
PUBLISHED = ('Open Images: https://storage.googleapis.com/openimages/web/index.html; '
             'FedScale\'s partition: https://github.com/SymbioticLab/FedScale/tree/master/'
             'benchmark/dataset (open_images)')


def element_fn(image_size: int):
  def fn(raw):
    image = tf.io.decode_image(tf.io.read_file(raw['sample']), channels=3,
                               expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (image_size, image_size))
    image = (image - MEAN) / STD
    return tf.reshape(image, (image_size, image_size, 3)), tf.cast(raw['label'], tf.int32)
  return fn


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', image_size: int = 256,
          num_classes: int = 596) -> base.Task:
  del seed
  model = common.check_model(model, MODELS, 'openimage')
  if image_size < 32 or num_classes < 2:
    raise ValueError('--task_options: need image_size >= 32 and num_classes >= 2, got '
                     f'{image_size} and {num_classes}.')
  splits = fedscale_csv.load(data_dir, dataset='openimage', published=PUBLISHED,
                             cache_dir=cache_dir, num_classes=num_classes,
                             class_option='num_classes',
                             sample_format='image')
  source = sources.FederatedSource(splits['train'], splits['test'])
  source = source.filter_train(min_samples, max_samples)
  shape = (image_size, image_size, 3)

  def keras_model_fn():
    if model == 'mobilenet_v2':
      return models.mobilenet_v2(num_classes, shape)
    if model == 'cnn':
      return models.femnist_cnn(num_classes, shape)
    return models.resnet('resnet18', num_classes, shape)

  return common.make_task('openimage', source, element_fn(image_size), keras_model_fn)
