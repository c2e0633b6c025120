"""Text to token ids in TF ops (inside dataset functions), and vocabularies.

Id layout of every word/char vocabulary of size V (as TFF's research tasks):
0 = pad, 1..V = vocabulary, V+1 = out-of-vocabulary, V+2 = beginning of
sequence, V+3 = end of sequence; models see V + 4 ids.
"""

import collections
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence

import tensorflow as tf

from tf_fedscale.tasks import storage

# The 86 characters of TFF's Shakespeare tasks (Reddi et al., 2021).
SHAKESPEARE_CHARS = list(
    'dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#\'/37;?bfjnrvzBFJNRVZ"&*.26:\naeimquyAEIMQUY]!%)-159\r')
PAD = 0
_NORMALIZE = "[^a-z0-9']+"


class Vocabulary:
  """Tokens -> ids with pad/oov/bos/eos around them (see the module docstring)."""

  def __init__(self, tokens: Sequence[str]):
    if len(set(tokens)) != len(tokens):
      raise ValueError('vocabulary tokens must be unique.')
    self.tokens = list(tokens)

  @property
  def oov(self) -> int:
    return len(self.tokens) + 1

  @property
  def bos(self) -> int:
    return len(self.tokens) + 2

  @property
  def eos(self) -> int:
    return len(self.tokens) + 3

  @property
  def size(self) -> int:
    """Ids a model must predict over."""
    return len(self.tokens) + 4

  def table(self) -> tf.lookup.StaticHashTable:
    """A lookup table; build it inside the dataset function (graph), not eagerly."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.tokens, tf.string),
            tf.range(1, len(self.tokens) + 1, dtype=tf.int64)),
        default_value=self.oov)


def normalize_words(text: tf.Tensor) -> tf.Tensor:
  """Lower-cased words (letters, digits, apostrophes) of a scalar string."""
  text = tf.strings.lower(text, encoding='utf-8')
  return tf.strings.split(tf.strings.strip(tf.strings.regex_replace(text, _NORMALIZE, ' ')))


def python_words(text: str) -> list[str]:
  """`normalize_words` in Python (for building vocabularies)."""
  return re.sub(_NORMALIZE, ' ', text.lower()).split()


def lower_split(text: tf.Tensor) -> tf.Tensor:
  """Lower-cased whitespace tokens (for pre-tokenized text such as Reddit's)."""
  return tf.strings.split(tf.strings.lower(text, encoding='utf-8'))


def python_lower_split(text: str) -> list[str]:
  """`lower_split` in Python."""
  return text.lower().split()


def sequence_ids(words: tf.Tensor, table: tf.lookup.StaticHashTable, vocab: Vocabulary,
                 length: int, bos_eos: bool = True) -> tf.Tensor:
  """int32 [length] ids: [bos] words [eos], cut to `length`, then padded."""
  ids = table.lookup(words)
  if bos_eos:
    ids = tf.concat([[vocab.bos], ids, [vocab.eos]], 0)
  ids = ids[:length]
  ids = tf.pad(ids, [[0, length - tf.shape(ids)[0]]], constant_values=PAD)
  return tf.cast(tf.reshape(ids, [length]), tf.int32)


def next_token_pair(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(inputs, targets) = (ids[:-1], ids[1:])."""
  return ids[:-1], ids[1:]


def char_ids(text: tf.Tensor, table: tf.lookup.StaticHashTable) -> tf.Tensor:
  """int64 ids of the characters of a scalar string."""
  return table.lookup(tf.strings.unicode_split(text, 'UTF-8'))


def most_common(counter: collections.Counter, size: int) -> list[str]:
  """The `size` most frequent tokens, ties broken alphabetically (deterministic)."""
  return [t for t, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def cached_vocabulary(name: str, key: str, cache_dir: str, size: int,
                      texts: Iterable[str],
                      tokenize: Callable[[str], list[str]] = python_words) -> Vocabulary:
  """The `size` most common tokens of `texts`, computed once and cached as JSON."""
  path = os.path.join(storage.resolve_cache_dir(cache_dir), f'vocab-{name}-{key}-{size}.json')
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      return Vocabulary(json.load(f))
  counter = collections.Counter()
  for text in texts:
    counter.update(tokenize(text))
  tokens = most_common(counter, size)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.partial'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(tokens, f)
  os.replace(tmp, path)
  return Vocabulary(tokens)
