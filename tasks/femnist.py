"""FEMNIST (62 classes) and EMNIST digits (10 classes), split by writer.

Sources, tried in this order in `--data_dir`:
1. LEAF JSON: `train/*.json`, `test/*.json` (x = 784 floats in [0, 1], 1.0 is
   the background; y = 0..61).
2. TFF's `emnist_all.sqlite` (splits all_* / digits_only_*), same pixels.
3. FedScale's layout: `client_data_mapping/{train,test}.csv` and the writers'
   image files (PNG/JPEG, read as grayscale and resized to 28x28).
Elements are `(float32 [28, 28, 1], int32 label)`.

Models: `cnn` (the FedAvg / Adaptive FedOpt CNN, the default) and `resnet18`
(group norm; FedScale's FEMNIST model).
"""

import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import checks
from tf_fedscale.tasks import common
from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import tff_sqlite

MODELS = ('cnn', 'resnet18')
PUBLISHED = ('LEAF FEMNIST: https://github.com/TalwalkarLab/leaf (data/femnist/preprocess.sh); '
             'TFF: https://storage.googleapis.com/tff-datasets-public/emnist_all.sqlite.lzma; '
             'FedScale layout: https://github.com/SymbioticLab/FedScale/tree/master/benchmark/dataset')
SHAPE = (28, 28, 1)
LEAF_NEEDS = {'x': checks.Need(False, 28 * 28, '784 pixel values (28 x 28) per example'),
              'y': checks.Need(False, 1, 'one class id per example')}


def _from_leaf(raw):
  return tf.reshape(raw['x'], SHAPE), tf.cast(raw['y'], tf.int32)


def _from_tff(raw):
  return tf.reshape(raw['pixels'], SHAPE), raw['label']


def _from_image_file(raw):
  image = tf.io.decode_image(tf.io.read_file(raw['sample']), channels=1,
                             expand_animations=False)
  image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, SHAPE[:2], antialias=True)
  return tf.reshape(image, SHAPE), tf.cast(raw['label'], tf.int32)


def load_source(data_dir: str, digits: bool, cache_dir: str):
  """(FederatedSource, element fn) from whichever format `data_dir` holds."""
  name = 'emnist' if digits else 'femnist'
  if leaf.has_leaf_layout(data_dir):
    splits = leaf.load(data_dir, cache_dir, dataset=name, published=PUBLISHED,
                       label_below=10 if digits else None, num_classes=62,
                       needs=LEAF_NEEDS)
    fn = _from_leaf
  elif tff_sqlite.has_database('emnist', data_dir):
    names = ('digits_train', 'digits_test') if digits else ('train', 'test')
    loaded = tff_sqlite.load('emnist', data_dir, names, cache_dir,
                             num_classes=10 if digits else 62)
    splits = {'train': loaded[names[0]], 'test': loaded[names[1]]}
    fn = _from_tff
  elif fedscale_csv.has_fedscale_layout(data_dir) and not digits:
    splits = fedscale_csv.load(data_dir, dataset=name, published=PUBLISHED,
                               cache_dir=cache_dir, num_classes=62,
                               sample_format='image')
    fn = _from_image_file
  else:
    expected = ['LEAF JSON shards <data_dir>/train/*.json and <data_dir>/test/*.json',
                '(or) TFF\'s <data_dir>/emnist_all.sqlite']
    if not digits:
      expected.append('(or) FedScale\'s <data_dir>/client_data_mapping/{train,test}.csv '
                      'with the image files')
    raise sources.missing_data_error(name, data_dir, expected, PUBLISHED)
  for split in ('train', 'test'):
    if split not in splits:
      raise sources.missing_data_error(name, data_dir, [f'the {split} split'], PUBLISHED)
  return sources.FederatedSource(splits['train'], splits['test']), fn


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', digits: bool = False) -> base.Task:
  del seed  # the natural partition involves no randomness
  model = common.check_model(model, MODELS, 'emnist' if digits else 'femnist')
  num_classes = 10 if digits else 62
  source, element_fn = load_source(data_dir, digits, cache_dir)
  source = source.filter_train(min_samples, max_samples)

  def keras_model_fn():
    if model == 'cnn':
      return models.femnist_cnn(num_classes, SHAPE)
    return models.resnet('resnet18', num_classes, SHAPE)

  return common.make_task('emnist' if digits else 'femnist', source, element_fn,
                          keras_model_fn)
