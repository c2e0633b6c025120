"""Shakespeare next-character prediction, one client per speaking role.

Sources, tried in this order in `--data_dir`:
1. LEAF JSON (`train/*.json`, `test/*.json`): x = 80 characters, y = the next
   one. An element is x's character ids and the same window shifted by one
   (x[1:] + y): next-character targets at every position.
2. TFF's `shakespeare.sqlite` (`snippets` of each role): as Reddi et al.
   (2021), each snippet becomes [bos] chars [eos], a client's ids are chunked
   into windows of seq_len + 1 (the last one padded), each window gives
   (window[:-1], window[1:]).
Characters map to TFF's 86-character vocabulary (0 pad, 87 oov, 88 bos,
89 eos). Elements are `(int32 [seq_len], int32 [seq_len])`; the model is the
character LSTM (embedding 8, 2 x LSTM 256); accuracy ignores padding.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import checks
from tf_fedscale.tasks import common
from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage
from tf_fedscale.tasks import text
from tf_fedscale.tasks import tff_sqlite

PUBLISHED = ('LEAF: https://github.com/TalwalkarLab/leaf (data/shakespeare/preprocess.sh); '
             'TFF: https://storage.googleapis.com/tff-datasets-public/shakespeare.sqlite.lzma')
VOCAB = text.Vocabulary(text.SHAKESPEARE_CHARS)
MODELS = ('lstm',)
LEAF_NEEDS = {'x': checks.Need(True, 1, 'one string (the characters) per example'),
              'y': checks.Need(True, 1, 'one string (the next character) per example')}


def _fixed(ids: tf.Tensor, length: int) -> tf.Tensor:
  ids = tf.cast(ids[:length], tf.int32)
  return tf.reshape(tf.pad(ids, [[0, length - tf.shape(ids)[0]]]), [length])


def _leaf_element(seq_len: int):
  def fn(raw):
    ids = _fixed(text.char_ids(tf.strings.join([raw['x'], raw['y']]), VOCAB.table()),
                 seq_len + 1)
    return text.next_token_pair(ids)
  return fn


def _snippet_windows(seq_len: int):
  def transform(dataset: tf.data.Dataset) -> tf.data.Dataset:
    def to_ids(raw):
      ids = text.char_ids(raw['snippets'], VOCAB.table())
      return tf.concat([[VOCAB.bos], ids, [VOCAB.eos]], 0)
    windows = dataset.map(to_ids).unbatch().batch(seq_len + 1)
    return windows.map(lambda ids: text.next_token_pair(_fixed(ids, seq_len + 1)))
  return transform


def snippet_window_counts(split: sources.ClientSplit, seq_len: int) -> np.ndarray:
  """Windows per client of TFF snippets: ceil(sum(len + 2) / (seq_len + 1))."""
  tokens = dict.fromkeys(split.client_ids, 0)
  for client, snippet in storage.iter_strings(split.path, split.split, 'snippets'):
    if client in tokens:
      tokens[client] += len(snippet) + 2
  return np.array([-(-tokens[c] // (seq_len + 1)) for c in split.client_ids], np.int64)


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', seq_len: int = 80) -> base.Task:
  del seed
  common.check_model(model, MODELS, 'shakespeare')
  if seq_len < 1:
    raise ValueError(f'--task_options: seq_len must be >= 1, got {seq_len}.')
  if leaf.has_leaf_layout(data_dir):
    splits = leaf.load(data_dir, cache_dir, dataset='shakespeare', published=PUBLISHED,
                       needs=LEAF_NEEDS)
    if set(splits) != {'train', 'test'}:
      raise sources.missing_data_error('shakespeare', data_dir,
                                       ['<data_dir>/train/*.json and <data_dir>/test/*.json'],
                                       PUBLISHED)
    source = sources.FederatedSource(splits['train'], splits['test'])
    source = source.filter_train(min_samples, max_samples)
    element = _leaf_element(seq_len)
    extra = {}
  elif tff_sqlite.has_database('shakespeare', data_dir):
    splits = tff_sqlite.load('shakespeare', data_dir, cache_dir=cache_dir)
    train = splits['train']
    # Sizes are counted in windows, the unit the clients train on.
    train = dataclasses.replace(train, num_examples=snippet_window_counts(train, seq_len))
    source = sources.FederatedSource(train, splits['test']).filter_train(
        min_samples, max_samples)
    element = None
    extra = dict(train_dataset_fn=_snippet_windows(seq_len),
                 test_dataset_fn=_snippet_windows(seq_len))
  else:
    raise sources.missing_data_error(
        'shakespeare', data_dir,
        ['LEAF JSON shards <data_dir>/train/*.json and <data_dir>/test/*.json',
         '(or) TFF\'s <data_dir>/shakespeare.sqlite'], PUBLISHED)

  return common.make_task(
      'shakespeare', source, element, lambda: models.char_lstm(VOCAB.size),
      metrics_fn=lambda: [models.MaskedAccuracy([text.PAD], name='accuracy')], **extra)
