"""Tiny datasets written in each source's real on-disk format (for tests and
demos without network). The data are learnable: features depend on labels,
so a round of training lowers the loss.

Every writer takes a directory and returns facts about what it wrote
(client ids in order, per-client counts) for tests to check against.
"""

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf

# ---------------------------------------------------------------- LEAF JSON


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path`, creating its directory."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def read_text(path: str) -> str:
  with open(path) as f:
    return f.read()


def write_leaf_shard(path: str, users: Mapping[str, Mapping[str, list]]) -> None:
  """One LEAF JSON file: users in order, num_samples, user_data {x, y}."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = {'users': list(users),
          'num_samples': [len(u['x']) for u in users.values()],
          'user_data': {k: dict(v) for k, v in users.items()}}
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(data, f)


def _glyph(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
  """A label-dependent 'character': white background (1.0), dark strokes."""
  image = np.ones((size, size), np.float32)
  row, col = divmod(label, 8)
  r, c = (1 + row * 3) % (size - 2), (1 + col * 3) % (size - 2)
  image[r:r + 2, :] = 0.0
  image[:, c:c + 2] = 0.0
  return np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1).astype(np.float32)


def write_leaf_femnist(data_dir: str, train_counts: Sequence[int] = (12, 9, 15, 7),
                       test_counts: Sequence[int] = (3, 2, 4, 2), labels: Sequence[int] = (
                           0, 3, 7, 12, 40, 61), seed: int = 0) -> list[str]:
  """LEAF FEMNIST: writers split over two train shards and one test shard."""
  rng = np.random.default_rng(seed)
  writers = [f'f{1000 + i}_{i:02d}' for i in range(len(train_counts))]

  def records(counts):
    out = {}
    for w, n in zip(writers, counts):
      ys = [int(rng.choice(labels)) for _ in range(n)]
      out[w] = {'x': [[round(float(v), 4) for v in _glyph(y, rng).reshape(-1)] for y in ys],
                'y': ys}
    return out

  train = records(train_counts)
  half = len(writers) // 2
  write_leaf_shard(os.path.join(data_dir, 'train', 'all_data_0_niid_0_train_9.json'),
                   {w: train[w] for w in writers[:half]})
  write_leaf_shard(os.path.join(data_dir, 'train', 'all_data_10_niid_0_train_9.json'),
                   {w: train[w] for w in writers[half:]})
  write_leaf_shard(os.path.join(data_dir, 'test', 'all_data_0_niid_0_test_9.json'),
                   records(test_counts))
  return writers


SHAKESPEARE_TEXT = ('To be, or not to be, that is the question: Whether tis nobler in the '
                    'mind to suffer The slings and arrows of outrageous fortune, Or to take '
                    'arms against a sea of troubles And by opposing end them. ')


def write_leaf_shakespeare(data_dir: str, train_counts: Sequence[int] = (20, 12, 30),
                           test_counts: Sequence[int] = (4, 3, 5)) -> list[str]:
  """LEAF Shakespeare: x = 80 characters, y = the next one."""
  roles = [f'THE_TRAGEDY_OF_HAMLET_ROLE{i}' for i in range(len(train_counts))]
  text = SHAKESPEARE_TEXT * 20

  def records(counts, offset):
    out = {}
    for r, (role, n) in enumerate(zip(roles, counts)):
      starts = [(offset + r * 7 + 3 * i) % (len(text) - 81) for i in range(n)]
      out[role] = {'x': [text[s:s + 80] for s in starts], 'y': [text[s + 80] for s in starts]}
    return out

  write_leaf_shard(os.path.join(data_dir, 'train', 'all_data_niid_0_train_9.json'),
                   records(train_counts, 0))
  write_leaf_shard(os.path.join(data_dir, 'test', 'all_data_niid_0_test_9.json'),
                   records(test_counts, 100))
  return roles


# ------------------------------------------------------------ FedScale layout


def write_mapping(data_dir: str, split: str, rows: Sequence[Sequence[Any]],
                  header: Sequence[str] = ('client_id', 'sample_path', 'label_name',
                                           'label_id')) -> str:
  import csv  # pylint: disable=g-import-not-at-top
  path = os.path.join(data_dir, 'client_data_mapping', f'{split}.csv')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def write_fedscale_images(data_dir: str, counts: Mapping[str, Sequence[int]],
                          num_classes: int = 4, size: int = 28, channels: int = 1,
                          image_format: str = 'png', under_split: bool = True,
                          seed: int = 0,
                          label_ids: Optional[Mapping[tuple[str, int], int]] = None,
                          not_images: Sequence[tuple[str, int]] = ()
                          ) -> dict[str, list[str]]:
  """Images under <data_dir>/<split>/ (or <data_dir>/ with under_split=False)
  and mapping CSVs; `counts[split]` = samples per client. Bad inputs:
  `label_ids[(split, row)]` replaces a row's label_id in the CSV, and the files
  of `not_images` rows hold an HTML page instead. Returns client ids."""
  rng = np.random.default_rng(seed)
  ids = {}
  for split, per_client in counts.items():
    rows = []
    for c, n in enumerate(per_client):
      client = str(100 + c)
      for i in range(n):
        label = int(rng.integers(num_classes))
        pixels = np.stack([_glyph(label, rng, size)] * channels, -1)
        image = tf.constant((pixels * 255).astype(np.uint8))
        encoded = (tf.io.encode_png(image) if image_format == 'png'
                   else tf.io.encode_jpeg(image, quality=95)).numpy()
        rel = os.path.join(f'c{client}', f'img_{i}.{image_format}')
        base = os.path.join(data_dir, split) if under_split else data_dir
        os.makedirs(os.path.join(base, f'c{client}'), exist_ok=True)
        with open(os.path.join(base, rel), 'wb') as f:
          f.write(b'<html>404 not found</html>' if (split, len(rows)) in not_images
                  else encoded)
        rows.append((client, rel, f'class{label}', label))
    for (bad_split, row), label_id in (label_ids or {}).items():
      if bad_split == split:
        rows[row] = (*rows[row][:3], label_id)
    write_mapping(data_dir, split, rows)
    ids[split] = [str(100 + c) for c in range(len(per_client))]
  return ids


def tone(frequency_hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
  t = np.arange(int(seconds * rate)) / rate
  return (0.5 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def write_fedscale_speech(data_dir: str, counts: Mapping[str, Sequence[int]],
                          words: Sequence[str] = ('yes', 'no', 'up', 'down'),
                          seed: int = 0) -> dict[str, list[str]]:
  """WAV clips (a word = a tone frequency) under <data_dir>/<split>/ and FedScale's
  name-only mapping CSVs (client_id,sample_path,label_name,speaker_id)."""
  rng = np.random.default_rng(seed)
  ids = {}
  for split, per_client in counts.items():
    os.makedirs(os.path.join(data_dir, split), exist_ok=True)
    rows = []
    for c, n in enumerate(per_client):
      speaker = f'{0xabc000 + c:08x}'
      for i in range(n):
        w = int(rng.integers(len(words)))
        seconds = float(rng.uniform(0.6, 1.2))   # padded or cut to 1 s
        audio = tone(300.0 * (w + 1), seconds) + rng.normal(0, 0.01, int(seconds * 16000))
        name = f'{words[w]}_{speaker}_nohash_{i}.wav'
        wav = tf.audio.encode_wav(tf.constant(audio.astype(np.float32))[:, None], 16000)
        with open(os.path.join(data_dir, split, name), 'wb') as f:
          f.write(wav.numpy())
        rows.append((str(c), name, words[w], speaker))
    write_mapping(data_dir, split, rows, ('client_id', 'sample_path', 'label_name',
                                          'speaker_id'))
    ids[split] = [str(c) for c in range(len(per_client))]
  return ids


REVIEW_WORDS = {1: 'awful broken waste refund', 2: 'poor disappointing cheap',
                3: 'okay average fine', 4: 'good nice solid', 5: 'great excellent love perfect'}


def write_fedscale_amazon(data_dir: str, counts: Mapping[str, Sequence[int]],
                          seed: int = 0) -> dict[str, list[str]]:
  """FedScale Amazon Review mapping: data_path holds the review text, label_name
  the rating."""
  rng = np.random.default_rng(seed)
  ids = {}
  for split, per_client in counts.items():
    rows = []
    for c, n in enumerate(per_client):
      for _ in range(n):
        rating = int(rng.integers(1, 6))
        words = REVIEW_WORDS[rating].split()
        review = ' '.join(rng.choice(words, 6)) + ', the Product ARRIVED.'
        rows.append((f'A{c:04d}', review, rating, rating - 1))
    write_mapping(data_dir, split, rows, ('client_id', 'data_path', 'label_name', 'label_id'))
    ids[split] = [f'A{c:04d}' for c in range(len(per_client))]
  return ids


LM_SENTENCES = ('the cat sat on the mat', 'a dog ran in the park',
                'the cat ran to the dog', 'we sat in the sun')


def write_reddit_json(data_dir: str, counts: Mapping[str, Sequence[int]]) -> dict:
  """FedScale's Reddit JSON: {users, user_data: {u: {x: [text]}}} (no y)."""
  ids = {}
  for split, per_client in counts.items():
    users = {f'user{c}': {'x': [LM_SENTENCES[(c + i) % len(LM_SENTENCES)]
                                for i in range(n)]} for c, n in enumerate(per_client)}
    path = os.path.join(data_dir, split, f'{split}.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'users': list(users), 'user_data': users}, f)
    ids[split] = list(users)
  return ids


def write_reddit_text(data_dir: str, words: Mapping[str, Sequence[int]]) -> dict:
  """FedScale's per-user text files: <data_dir>/<split>/<user>, `words[split][c]`
  words each."""
  ids = {}
  stream = ' '.join(LM_SENTENCES * 50).split()
  for split, per_client in words.items():
    os.makedirs(os.path.join(data_dir, split), exist_ok=True)
    ids[split] = []
    for c, n in enumerate(per_client):
      name = f'user_{c:03d}'
      with open(os.path.join(data_dir, split, name), 'w', encoding='utf-8') as f:
        f.write(' '.join(stream[c: c + n]) + '\n')
      ids[split].append(name)
  return ids


# --------------------------------------------------------- TFF SQLite files


def _feature(value: Any) -> tf.train.Feature:
  """As TFF's sql_client_data_utils serializer: floats, int64s or bytes lists."""
  array = np.asarray(value)
  if array.dtype.kind in 'SUO':
    items = [v.encode() if isinstance(v, str) else v for v in np.atleast_1d(array).tolist()]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=items))
  if array.dtype.kind == 'f':
    return tf.train.Feature(float_list=tf.train.FloatList(value=array.reshape(-1)))
  return tf.train.Feature(int64_list=tf.train.Int64List(value=array.reshape(-1)))


def write_tff_sqlite(path: str, splits: Mapping[str, Mapping[str, Sequence[Mapping]]],
                     index: bool = True) -> None:
  """A database in TFF's schema; `splits[split_name][client_id]` = examples."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with sqlite3.connect(path) as con:
    con.execute('CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, '
                'serialized_example_proto BLOB NOT NULL)')
    con.execute('CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT '
                'NOT NULL, num_examples INTEGER NOT NULL)')
    for split, clients in splits.items():
      for client, examples in clients.items():
        for e in examples:
          proto = tf.train.Example(features=tf.train.Features(
              feature={k: _feature(v) for k, v in e.items()}))
          con.execute('INSERT INTO examples VALUES (?, ?, ?)',
                      (split, client, proto.SerializeToString()))
        con.execute('INSERT INTO client_metadata VALUES (?, ?, ?)',
                    (client, split, len(examples)))
    if index:
      con.execute('CREATE INDEX ex ON examples (split_name, client_id)')


def write_tff_emnist(data_dir: str, seed: int = 0,
                     replace: Optional[Mapping[tuple[str, str, int], Mapping]] = None
                     ) -> list[str]:
  """emnist_all.sqlite with all_* (labels 0-61) and digits_only_* splits;
  `replace[(split_name, writer, k)]` overrides fields of that example (a bad
  input: a label out of range, pixels of the wrong shape)."""
  rng = np.random.default_rng(seed)
  writers = ['f0000_14', 'f0001_41', "f0002_'q"]
  splits = {}
  for split, n in (('train', 8), ('test', 3)):
    for prefix, labels in (('all', (0, 5, 20, 61)), ('digits_only', (0, 5, 9))):
      splits[f'{prefix}_{split}'] = {
          w: [{'label': int(y), 'pixels': _glyph(int(y), rng)}
              for y in rng.choice(labels, n + i)] for i, w in enumerate(writers)}
  for (split, writer, k), fields in (replace or {}).items():
    splits[split][writer][k] = dict(splits[split][writer][k], **fields)
  write_tff_sqlite(os.path.join(data_dir, 'emnist_all.sqlite'), splits)
  return writers


def write_tff_shakespeare(data_dir: str) -> dict[str, list[int]]:
  """shakespeare.sqlite: a few snippets per role; returns snippet lengths."""
  lengths = {}
  splits = {'train': {}, 'test': {}}
  for split, n in (('train', 4), ('test', 2)):
    for r, role in enumerate(('KING_LEAR_KENT', 'HAMLET_OPHELIA')):
      snippets = [SHAKESPEARE_TEXT[(r * 13 + i * 29) % 100:][: 50 + 37 * i] for i in range(n)]
      splits[split][role] = [{'snippets': s} for s in snippets]
      lengths[(split, role)] = [len(s) for s in snippets]
  write_tff_sqlite(os.path.join(data_dir, 'shakespeare.sqlite'), splits)
  return lengths


def write_tff_stackoverflow(data_dir: str) -> list[str]:
  """stackoverflow.sqlite plus stackoverflow.word_count and .tag_count."""
  posts = [('how to sort a list in python', 'sort list', 'python|list'),
           ('java null pointer exception', 'npe help', 'java|exception'),
           ('sort a dict by value python', 'dict sort', 'python|dictionary'),
           ('sql join two tables', 'join', 'sql')]
  users = ['00001', '00002', '00003']
  splits = {}
  for split, n in (('train', 6), ('heldout', 2), ('test', 2)):
    splits[split] = {u: [dict(zip(('tokens', 'title', 'tags'), posts[(i + k) % len(posts)]),
                              creation_date='2010-01-01', type='question')
                         for k in range(n + i)] for i, u in enumerate(users)}
  write_tff_sqlite(os.path.join(data_dir, 'stackoverflow.sqlite'), splits)
  words = ['sort', 'python', 'a', 'list', 'how', 'to', 'in', 'java', 'null', 'sql', 'dict']
  with open(os.path.join(data_dir, 'stackoverflow.word_count'), 'w') as f:
    f.writelines(f'{w} {100 - i}\n' for i, w in enumerate(words))
  with open(os.path.join(data_dir, 'stackoverflow.tag_count'), 'w') as f:
    json.dump({'python': 10, 'java': 7, 'list': 5, 'sql': 4, 'exception': 3}, f)
  return users


def write_tff_cifar100(data_dir: str, seed: int = 0) -> list[str]:
  """cifar100.sqlite: images as int64 (32, 32, 3), fine and coarse labels."""
  rng = np.random.default_rng(seed)
  clients = ['0', '1', '2']
  splits = {}
  for split, n in (('train', 10), ('test', 4)):
    splits[split] = {}
    for c in clients:
      examples = []
      for _ in range(n):
        label = int(rng.choice([3, 17, 42, 99]))
        image = (np.stack([_glyph(label % 24, rng, 32)] * 3, -1) * 255).astype(np.int64)
        examples.append({'coarse_label': label // 5, 'image': image, 'label': label})
      splits[split][c] = examples
  write_tff_sqlite(os.path.join(data_dir, 'cifar100.sqlite'), splits)
  return clients


# ------------------------------------------------------------------- TFDS


def write_tfds(data_dir: str, name: str = 'toy_images', num_train: int = 120,
               num_test: int = 40, num_classes: int = 10, size: int = 8,
               channels: int = 3, seed: int = 0,
               declared_num_classes: Optional[int] = None) -> None:
  """A prepared TFDS dataset <data_dir>/<name>/1.0.0 with features image,
  label (ClassLabel), coarse_label (ClassLabel, label // 5) and user (Text).
  `declared_num_classes` rewrites the label's ClassLabel size in its
  features.json afterwards (a bad input: labels beyond the declared classes)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(num_classes, size=n)
    images = np.stack([np.stack([_glyph(int(y), rng, size)] * channels, -1)
                       for y in labels])
    return tf.data.Dataset.from_tensor_slices({
        'image': (images * 255).astype(np.uint8), 'label': labels,
        'coarse_label': labels // 5,
        'user': np.array([f'user{i % 7}'.encode() for i in range(n)])})

  builder = tfds.dataset_builders.TfDataBuilder(
      name=name, version='1.0.0', data_dir=data_dir,
      split_datasets={'train': split(num_train), 'test': split(num_test)},
      features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(size, size, channels)),
          'label': tfds.features.ClassLabel(num_classes=num_classes),
          'coarse_label': tfds.features.ClassLabel(num_classes=(num_classes + 4) // 5),
          'user': tfds.features.Text()}))
  builder.download_and_prepare()
  if declared_num_classes is not None:
    path = os.path.join(data_dir, name, '1.0.0', 'features.json')
    with open(path, encoding='utf-8') as f:
      features = json.load(f)
    features['featuresDict']['features']['label']['classLabel']['numClasses'] = str(
        declared_num_classes)
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(features, f)


# ------------------------------------------------------------ smoke checks


def mean_loss(task, weights, client_ids: Sequence[str], batch_size: int = 64) -> float:
  """Example-weighted loss of `weights` (tff ModelWeights) on the clients'
  training data, computed eagerly with the task's Keras model and loss."""
  model = task.keras_model_fn()
  weights.assign_weights_to(model)
  loss_fn = task.loss_fn()
  total, count = 0.0, 0
  for client in client_ids:
    for x, y in task.train_data.create_tf_dataset_for_client(client).batch(batch_size):
      total += float(loss_fn(y, model(x, training=False))) * len(y)
      count += len(y)
  return total / count


def federated_round(task, client_ids: Sequence[str], batch_size: int = 4,
                    local_steps: int = 3, client_lr: float = 0.05) -> tuple[float, float]:
  """(loss before, loss after) one FedAvg round on `client_ids`, run by the
  current TFF context with the datasets built from client ids in the worker
  (as `Simulation` does)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from tf_fedscale import algorithms  # pylint: disable=g-import-not-at-top
  from tf_fedscale import local_work  # pylint: disable=g-import-not-at-top
  from tf_fedscale import seeding  # pylint: disable=g-import-not-at-top
  work = local_work.LocalWork(batch_size=batch_size, local_steps=local_steps)
  process = tff.simulation.compose_dataset_computation_with_learning_process(
      task.train_data.preprocess(work.preprocess).dataset_computation,
      algorithms.build_process('fedavg', task.model_fn(), client_lr, 1.0))
  state = process.set_model_weights(
      process.initialize(), seeding.initial_model_weights(task.keras_model_fn, 0))
  before = mean_loss(task, process.get_model_weights(state), client_ids)
  state = process.next(state, list(client_ids)).state
  return before, mean_loss(task, process.get_model_weights(state), client_ids)
