"""Any prepared TFDS image-classification dataset as a federated task.

    --task=tfds --data_dir=~/tensorflow_datasets \
        --task_options=name=mnist,partition=dirichlet,alpha=0.5,num_clients=100

`name` is a TFDS name (with `/config` if any) prepared in `--data_dir`;
clients come from `partition` (`feature:<key>` for a natural partition by a
per-example feature, or `iid`, `powerlaw`, `dirichlet`, `pam`; see
`tfds_source.py`). Images (`image_key`, uint8 [h, w, c]) are scaled to
[0, 1]; labels are `label_key`. Models: `cnn` (the FEMNIST CNN on the
dataset's shape) or `resnet18` (group norm).
"""

import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage
from tf_fedscale.tasks import tfds_source

MODELS = ('cnn', 'resnet18')


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', name: str = '',
          partition: str = 'dirichlet', num_clients: int = 100, alpha: float = 0.5,
          beta: float = 10.0, samples_per_client: int = 100, image_key: str = 'image',
          label_key: str = 'label', coarse_key: str = 'coarse_label',
          train_split: str = 'train', test_split: str = 'test') -> base.Task:
  model = common.check_model(model, MODELS, 'tfds')
  if not name:
    raise ValueError('--task_options: name=<TFDS dataset> is required for --task=tfds '
                     '(e.g. name=mnist,partition=dirichlet).')
  num_classes = _num_classes(data_dir, name, label_key)
  splits = tfds_source.load(
      name, data_dir, partition=partition, num_clients=num_clients, alpha=alpha,
      beta=beta, samples_per_client=samples_per_client, seed=seed, x_key=image_key,
      y_key=label_key, coarse_key=coarse_key, splits=(train_split, test_split),
      num_classes=num_classes, cache_dir=cache_dir)
  train, test = splits[train_split], splits[test_split]
  meta = storage.read_schema(train.path)
  shape = meta['x'].shape
  if len(shape) == 2:
    shape = (*shape, 1)
  if len(shape) != 3 or meta['y'].shape != ():
    raise ValueError(f'TFDS {name}: {image_key} must be an image [h, w(, c)] and '
                     f'{label_key} a scalar label, got {meta["x"].shape} and '
                     f'{meta["y"].shape}.')
  source = sources.FederatedSource(train, test).filter_train(min_samples, max_samples)

  def element(raw):
    x = tf.cast(raw['x'], tf.float32)
    if raw['x'].dtype == tf.uint8:
      x = x / 255.0
    return tf.reshape(x, shape), tf.cast(raw['y'], tf.int32)

  def keras_model_fn():
    if model == 'cnn':
      return models.femnist_cnn(num_classes, shape)
    return models.resnet('resnet18', num_classes, shape)

  return common.make_task(f'tfds:{name}', source, element, keras_model_fn)


def _num_classes(data_dir: str, name: str, label_key: str) -> int:
  features = tfds_source.open_builder(name, data_dir).info.features
  if label_key not in features:
    raise ValueError(f'TFDS {name} has no feature {label_key!r} (it has '
                     f'{sorted(features)}); set --task_options=label_key.')
  feature = features[label_key]
  num = getattr(feature, 'num_classes', None)
  if not num:
    raise ValueError(f'TFDS {name}: {label_key} is not a ClassLabel feature; cannot tell '
                     'the number of classes.')
  return int(num)
