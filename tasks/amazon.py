"""Amazon Review rating classification (1-5 stars), one client per reviewer.

FedScale's layout (fedscale/dataloaders/amazon.py) in `--data_dir`:

    client_data_mapping/train.csv, test.csv   client_id,data_path,label_name,label_id

where `data_path` holds the review text itself and `label_name` the star
rating (class = rating - 1, as FedScale). Words are lower-cased letters,
digits and apostrophes; the vocabulary is the `vocab_size` most frequent
training words (computed once, cached); ids 0 pad, 1..V words, V+1 oov. A
review becomes its first `seq_len` word ids, padded. Elements are
`(int32 [seq_len], int32 class)`; the model is an embedding + LSTM classifier.
"""

import os

import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import fedscale_csv
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage
from tf_fedscale.tasks import text

MODELS = ('lstm',)
PUBLISHED = ('FedScale: https://github.com/SymbioticLab/FedScale/tree/master/benchmark/dataset '
             '(amazon_review; originally https://nijianmo.github.io/amazon/)')


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', vocab_size: int = 10000,
          seq_len: int = 64, num_classes: int = 5) -> base.Task:
  del seed
  common.check_model(model, MODELS, 'amazon')
  if vocab_size < 1 or seq_len < 1 or num_classes < 2:
    raise ValueError('--task_options: need vocab_size >= 1, seq_len >= 1 and '
                     'num_classes >= 2.')
  splits = fedscale_csv.load(data_dir, dataset='amazon', published=PUBLISHED,
                             label_from='rating', inline=True, cache_dir=cache_dir,
                             num_classes=num_classes,
                             class_option='num_classes')
  train = splits['train']
  source = sources.FederatedSource(train, splits['test'])
  source = source.filter_train(min_samples, max_samples)
  vocab = text.cached_vocabulary(
      'amazon', os.path.basename(train.path).split('.')[0], cache_dir, vocab_size,
      (t for _, t in storage.iter_strings(train.path, train.split, 'sample')))

  def element(raw):
    ids = text.sequence_ids(text.normalize_words(raw['sample']), vocab.table(), vocab,
                            seq_len, bos_eos=False)
    return ids, tf.cast(raw['label'], tf.int32)

  return common.make_task(
      'amazon', source, element, lambda: models.text_classifier(vocab.size, num_classes))
