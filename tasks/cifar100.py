"""CIFAR-100 image classification with ResNet-18 (group norm), FedOpt style.

Sources, tried in this order in `--data_dir`:
1. TFF's `cifar100.sqlite`: 500 train / 100 test clients of 100 images each,
   already partitioned by Pachinko allocation (PAM) over the 20 coarse and 100
   fine labels.
2. TFDS `cifar100` prepared in `--data_dir` (`<data_dir>/cifar100/3.0.2/`),
   partitioned here: by default the same PAM recipe (`--task_options=
   partition=pam,alpha=0.1,beta=10,samples_per_client=100`), or `dirichlet`,
   `powerlaw`, `iid` with `num_clients`.
Images are scaled to [0, 1] and centre-cropped to `crop` x `crop` (24 as in
Reddi et al., 2021; no random augmentation, so replays stay byte-identical).
Elements are `(float32 [crop, crop, 3], int32 fine label)`.
"""

import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import tfds_source
from tf_fedscale.tasks import tff_sqlite

MODELS = ('resnet18', 'cnn')
NUM_CLASSES = 100
PUBLISHED = ('TFF: https://storage.googleapis.com/tff-datasets-public/cifar100.sqlite.lzma; '
             'TFDS: https://www.tensorflow.org/datasets/catalog/cifar100 '
             '(https://www.cs.toronto.edu/~kriz/cifar.html)')


def _element_fn(image_key: str, label_key: str, crop: int):
  def fn(raw):
    image = tf.cast(raw[image_key], tf.float32) / 255.0
    image = tf.image.resize_with_crop_or_pad(image, crop, crop)
    return tf.reshape(image, (crop, crop, 3)), tf.cast(raw[label_key], tf.int32)
  return fn


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', partition: str = 'pam',
          num_clients: int = 500, alpha: float = 0.1, beta: float = 10.0,
          samples_per_client: int = 100, crop: int = 24) -> base.Task:
  model = common.check_model(model, MODELS, 'cifar100')
  if not 8 <= crop <= 32:
    raise ValueError(f'--task_options: crop must be in [8, 32], got {crop}.')
  if tff_sqlite.has_database('cifar100', data_dir):
    splits = tff_sqlite.load('cifar100', data_dir, cache_dir=cache_dir,
                             num_classes=NUM_CLASSES)
    element_fn = _element_fn('image', 'label', crop)
  else:
    try:
      splits = tfds_source.load(
          'cifar100', data_dir, partition=partition, num_clients=num_clients,
          alpha=alpha, beta=beta, samples_per_client=samples_per_client, seed=seed,
          x_key='image', y_key='label', coarse_key='coarse_label',
          num_classes=NUM_CLASSES, cache_dir=cache_dir)
    except FileNotFoundError:
      raise sources.missing_data_error(
          'cifar100', data_dir,
          ['TFF\'s <data_dir>/cifar100.sqlite', '(or) TFDS cifar100 prepared in '
           '<data_dir>/cifar100/<version>/'], PUBLISHED) from None
    element_fn = _element_fn('x', 'y', crop)
  source = sources.FederatedSource(splits['train'], splits['test'])
  source = source.filter_train(min_samples, max_samples)
  shape = (crop, crop, 3)

  def keras_model_fn():
    if model == 'resnet18':
      return models.resnet('resnet18', NUM_CLASSES, shape)
    return models.femnist_cnn(NUM_CLASSES, shape)

  return common.make_task('cifar100', source, element_fn, keras_model_fn)
