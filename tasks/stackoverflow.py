"""Stack Overflow next-word prediction (LSTM) and tag prediction (logistic
regression), one client per user, from TFF's `stackoverflow.sqlite`.

Needs in `--data_dir` (what `tff.simulation.datasets.stackoverflow` downloads):
`stackoverflow.sqlite`, `stackoverflow.word_count` (lines `word count`, most
frequent first) and, for tags, `stackoverflow.tag_count` (JSON {tag: count});
the two count files may also sit in `<data_dir>/datasets/` (Keras' cache).

Preprocessing as Reddi et al. (2021) / google-research/federated:
- next word: the `tokens` of a post split on spaces, the 10,000 most frequent
  words (0 pad, 10,001 oov, 10,002 bos, 10,003 eos), [bos] words [eos] cut or
  padded to seq_len + 1 = 21, element = (ids[:-1], ids[1:]); at most
  `max_elements` (1,000) posts per training client.
- tags: x = the mean one-hot of the words of tokens + title over the
  vocabulary (oov dropped), y = multi-hot of the post's tags among the 500 most
  frequent; sigmoid outputs, summed binary cross-entropy, recall@5.
"""

import collections
import json
import os

import numpy as np
import tensorflow as tf

from tf_fedscale.tasks import base
from tf_fedscale.tasks import common
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import text
from tf_fedscale.tasks import tff_sqlite

NWP_MODELS = ('lstm',)
TAG_MODELS = ('logistic',)
PUBLISHED = ('https://storage.googleapis.com/tff-datasets-public/stackoverflow.sqlite.lzma, '
             '.../stackoverflow.word_count.tar.bz2 and .../stackoverflow.tag_count.tar.bz2 '
             '(what tff.simulation.datasets.stackoverflow.load_data, load_word_counts and '
             'load_tag_counts download)')


def _find(data_dir: str, name: str) -> str:
  for folder in (data_dir, os.path.join(data_dir, 'datasets'), os.path.join(data_dir, '.tff')):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  raise sources.missing_data_error(
      'stackoverflow', data_dir, [f'<data_dir>/{name}', 'next to stackoverflow.sqlite'],
      PUBLISHED)


def load_word_counts(data_dir: str, size: int) -> list[str]:
  """The `size` most frequent words of `stackoverflow.word_count`."""
  words = []
  with open(_find(data_dir, 'stackoverflow.word_count'), encoding='utf-8') as f:
    for line in f:
      parts = line.split()
      if len(parts) == 2:
        words.append(parts[0])
      if len(words) >= size:
        break
  return words


def load_tag_counts(data_dir: str, size: int) -> list[str]:
  """The `size` most frequent tags of `stackoverflow.tag_count`."""
  with open(_find(data_dir, 'stackoverflow.tag_count'), encoding='utf-8') as f:
    counts = json.load(f, object_pairs_hook=collections.OrderedDict)
  return [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])][:size]


def _table(tokens: list[str]) -> tf.lookup.StaticHashTable:
  """token -> 0..len-1, unknown -> len."""
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(tokens, tf.string),
                                          tf.range(len(tokens), dtype=tf.int64)),
      default_value=len(tokens))


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', tag_prediction: bool = False,
          vocab_size: int = 10000, seq_len: int = 20, num_tags: int = 500,
          max_elements: int = 1000) -> base.Task:
  del seed
  name = 'stackoverflow_tag' if tag_prediction else 'stackoverflow_nwp'
  common.check_model(model, TAG_MODELS if tag_prediction else NWP_MODELS, name)
  for option, value in (('vocab_size', vocab_size), ('seq_len', seq_len),
                        ('num_tags', num_tags), ('max_elements', max_elements)):
    if value < 1:
      raise ValueError(f'--task_options: {option} must be >= 1, got {value}.')
  if not tff_sqlite.has_database('stackoverflow', data_dir):
    raise sources.missing_data_error(
        name, data_dir, ['TFF\'s <data_dir>/stackoverflow.sqlite',
                         'stackoverflow.word_count (and .tag_count for tags) beside it'],
        PUBLISHED)
  words = load_word_counts(data_dir, vocab_size)
  tags = load_tag_counts(data_dir, num_tags) if tag_prediction else []
  splits = tff_sqlite.load('stackoverflow', data_dir, cache_dir=cache_dir)
  source = sources.FederatedSource(splits['train'], splits['test'])
  source = source.filter_train(min_samples, max_samples)
  capped = np.minimum(source.train.num_examples, max_elements)
  train_take = lambda ds: ds.take(max_elements)

  if tag_prediction:
    def element(raw):
      sentence = tf.strings.join([raw['tokens'], raw['title']], separator=' ')
      ids = _table(words).lookup(tf.strings.split(sentence))
      x = tf.reduce_mean(tf.one_hot(ids, len(words) + 1), axis=0)[:len(words)]
      tag_ids = _table(tags).lookup(tf.strings.split(raw['tags'], sep='|'))
      y = tf.reduce_sum(tf.one_hot(tag_ids, len(tags) + 1), axis=0)[:len(tags)]
      return tf.reshape(x, [len(words)]), tf.reshape(y, [len(tags)])

    return common.make_task(
        name, source, element, lambda: models.logistic_regression(len(words), len(tags)),
        loss_fn=lambda: tf.keras.losses.BinaryCrossentropy(
            from_logits=False, reduction=tf.keras.losses.Reduction.SUM),
        metrics_fn=lambda: [tf.keras.metrics.Recall(top_k=5, name='recall_at_5'),
                            tf.keras.metrics.Precision(name='precision')],
        num_train_examples=capped,
        train_dataset_fn=lambda ds: train_take(ds).map(element))

  vocab = text.Vocabulary(words)

  def element(raw):
    ids = text.sequence_ids(tf.strings.split(raw['tokens']), vocab.table(), vocab,
                            seq_len + 1)
    return text.next_token_pair(ids)

  return common.make_task(
      name, source, element, lambda: models.word_lstm(vocab.size),
      metrics_fn=lambda: [
          models.MaskedAccuracy([text.PAD], name='accuracy'),
          models.MaskedAccuracy([text.PAD, vocab.oov, vocab.eos],
                                name='accuracy_no_oov_or_eos')],
      num_train_examples=capped,
      train_dataset_fn=lambda ds: train_take(ds).map(element))
