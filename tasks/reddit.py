"""Reddit next-word prediction (LSTM language model), one client per user.

FedScale ships Reddit in two layouts; `--data_dir` may hold either:
1. JSON (fedscale/dataloaders/reddit.py): `train/*.json`, `test/*.json`, each
   `{"users": [...], "user_data": {user: {"x": [text, ...]}}}` (LEAF-like, no
   y). Each text is one example: [bos] words [eos], cut or padded to
   seq_len + 1.
2. One plain-text file per user (fedscale/dataloaders/nlp.py):
   `train/<user>`, `test/<user>`. A user's words are cut into windows of
   seq_len + 1 words (the incomplete tail dropped, as FedScale's blocks).
Words are whitespace tokens, lower-cased. The vocabulary is FedScale's
`reddit_vocab.pkl` (a pickled list of tokens, read with an unpickler that
loads no code) when present in `--data_dir`, else the `vocab_size` most
frequent training words (computed once, cached). Ids: 0 pad, 1..V words,
V+1 oov, V+2 bos, V+3 eos. Elements are `(int32 [seq_len], int32 [seq_len])`;
the model is the Stack Overflow LSTM; accuracy ignores padding.
"""

import io
import os
import pickle


from tf_fedscale.tasks import base
from tf_fedscale.tasks import checks
from tf_fedscale.tasks import common
from tf_fedscale.tasks import leaf
from tf_fedscale.tasks import models
from tf_fedscale.tasks import sources
from tf_fedscale.tasks import storage
from tf_fedscale.tasks import text

PUBLISHED = ('FedScale: https://github.com/SymbioticLab/FedScale/tree/master/benchmark/dataset '
             '(reddit; originally the pushshift.io Reddit dump)')
SPLITS = ('train', 'test')
MODELS = ('lstm',)


class _NoCodeUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    raise pickle.UnpicklingError(f'refusing to load {module}.{name} from a vocabulary file')


def read_vocab_pickle(path: str, size: int) -> list[str]:
  with open(path, 'rb') as f:
    tokens = _NoCodeUnpickler(io.BytesIO(f.read())).load()
  if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
    raise ValueError(f'{path} must hold a pickled list of token strings.')
  return list(dict.fromkeys(tokens))[:size]


def _text_files(data_dir: str, split: str) -> list[str]:
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, f)) and not f.endswith('.json')
                and '_cached_' not in f and not f.startswith('.'))


def _load_text_files(data_dir: str, cache_dir: str, seq_len: int
                     ) -> dict[str, sources.ClientSplit]:
  files = {s: _text_files(data_dir, s) for s in SPLITS}
  every = files['train'] + files['test']
  key = storage.fingerprint(every, seq_len=seq_len)
  path = os.path.join(storage.resolve_cache_dir(cache_dir), f'reddit-text-{key}.sqlite')
  if not os.path.exists(path):
    schema = {'x': storage.Field(storage.STRING)}
    with storage.writing(path, schema, {'source': 'reddit-text'}) as writer:
      for split in SPLITS:
        for file in files[split]:
          with open(file, encoding='utf-8', errors='ignore') as f:
            words = f.read().split()
          windows = [' '.join(words[i:i + seq_len + 1])
                     for i in range(0, len(words) - seq_len, seq_len + 1)]
          writer.add(split, os.path.basename(file), ({'x': w} for w in windows))
  parse = storage.build_parser(storage.read_schema(path))
  return {s: sources.open_split(path, s, parse) for s in SPLITS}


def build(data_dir: str, seed: int, *, model: str = '', min_samples: int = 1,
          max_samples: int = 0, cache_dir: str = '', vocab_size: int = 10000,
          seq_len: int = 20) -> base.Task:
  del seed
  common.check_model(model, MODELS, 'reddit')
  if vocab_size < 1 or seq_len < 1:
    raise ValueError('--task_options: vocab_size and seq_len must be >= 1.')
  if leaf.has_leaf_layout(data_dir):
    splits = leaf.load(data_dir, cache_dir, dataset='reddit', published=PUBLISHED,
                       needs={'x': checks.Need(True, 1, 'one text string per example')})
    windows = False
  elif data_dir and _text_files(data_dir, 'train') and _text_files(data_dir, 'test'):
    splits = _load_text_files(data_dir, cache_dir, seq_len)
    windows = True
  else:
    raise sources.missing_data_error(
        'reddit', data_dir, ['<data_dir>/train/*.json and <data_dir>/test/*.json (JSON with '
                             'users and user_data.x texts)',
                             '(or) one text file per user in <data_dir>/train/ and '
                             '<data_dir>/test/'], PUBLISHED)
  if set(splits) != set(SPLITS):
    raise sources.missing_data_error('reddit', data_dir, ['both train/ and test/'],
                                     PUBLISHED)
  source = sources.FederatedSource(splits['train'], splits['test'])
  source = source.filter_train(min_samples, max_samples)
  pickled = os.path.join(data_dir, 'reddit_vocab.pkl')
  if os.path.isfile(pickled):
    vocab = text.Vocabulary(read_vocab_pickle(pickled, vocab_size))
  else:
    train = splits['train']
    vocab = text.cached_vocabulary(
        'reddit', os.path.basename(train.path).split('.')[0], cache_dir, vocab_size,
        (t for _, t in storage.iter_strings(train.path, train.split, 'x')),
        tokenize=text.python_lower_split)

  def element(raw):
    ids = text.sequence_ids(text.lower_split(raw['x']), vocab.table(), vocab,
                            seq_len + 1, bos_eos=not windows)
    return text.next_token_pair(ids)

  return common.make_task(
      'reddit', source, element, lambda: models.word_lstm(vocab.size),
      metrics_fn=lambda: [
          models.MaskedAccuracy([text.PAD], name='accuracy'),
          models.MaskedAccuracy([text.PAD, vocab.oov, vocab.eos],
                                name='accuracy_no_oov_or_eos')])
