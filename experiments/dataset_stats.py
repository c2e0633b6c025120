r"""Statistics of a task's federated split (FedScale's Figure 4 kind).

  python -m tf_fedscale.experiments.dataset_stats --task=femnist \
      --data_dir=/path/to/femnist --output_dir=runs/stats_femnist

Prints the number of training and test clients, the quantiles of the
per-client sample counts (all training clients), and the quantiles of the
pairwise Jensen-Shannon distance (base 2, in [0, 1]) between the label
distributions of up to --max_clients training clients (a seeded sample).
Labels are a client's class labels; for sequence tasks, its target tokens
(padding excluded); for multi-label tasks, its tag counts. Writes
`stats.json`, `sample_counts_cdf.png` and `label_jsd_cdf.png` into
--output_dir.
"""

import json
import os
from collections.abc import Sequence

from absl import flags
import numpy as np
import tensorflow as tf

from tf_fedscale import cli
from tf_fedscale.engine import runtime
from tf_fedscale import output_files
from tf_fedscale.tasks import registry

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def quantiles(values: np.ndarray) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  out = {f'p{int(q * 100)}': float(np.quantile(values, q)) for q in QUANTILES}
  out['mean'] = float(values.mean())
  return out


def label_histogram(dataset: tf.data.Dataset) -> np.ndarray:
  """Counts of each label (class ids, target tokens without padding, or tags)."""
  counts = np.zeros(0, np.float64)
  for _, y in dataset.batch(1024):
    y = y.numpy()
    if y.dtype.kind == 'f':          # multi-hot tags
      add = y.reshape(-1, y.shape[-1]).sum(axis=0)
    else:
      tokens = y.reshape(-1).astype(np.int64)
      if y.ndim > 1:
        tokens = tokens[tokens != 0]   # sequence targets: drop padding
      add = np.bincount(tokens)
    if len(add) > len(counts):
      counts = np.pad(counts, (0, len(add) - len(counts)))
    counts[:len(add)] += add
  return counts


def pairwise_js_distance(histograms: Sequence[np.ndarray]) -> np.ndarray:
  """Upper-triangle Jensen-Shannon distances (base 2) of normalized histograms."""
  width = max(len(h) for h in histograms)
  p = np.stack([np.pad(h, (0, width - len(h))) for h in histograms]).astype(np.float64)
  p = p[p.sum(axis=1) > 0]
  p /= p.sum(axis=1, keepdims=True)
  logp = np.log2(np.where(p > 0, p, 1.0))
  out = []
  for i in range(len(p) - 1):
    q = p[i + 1:]
    m = 0.5 * (p[i] + q)
    logm = np.log2(np.where(m > 0, m, 1.0))
    kl_p = np.sum(p[i] * (logp[i] - logm), axis=1)
    kl_q = np.sum(q * (logp[i + 1:] - logm), axis=1)
    out.append(np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0)))
  return np.concatenate(out) if out else np.zeros(0)


def compute(task, max_clients: int, seed: int) -> dict:
  """The statistics of `task` (see the module docstring)."""
  ids = list(task.train_data.client_ids)
  counts = np.asarray(task.num_train_examples, np.int64)
  sample = np.arange(len(ids))
  if 0 < max_clients < len(ids):
    sample = np.sort(np.random.default_rng(seed).choice(len(ids), max_clients, replace=False))
  histograms = [label_histogram(task.train_data.create_tf_dataset_for_client(ids[i]))
                for i in sample]
  distances = pairwise_js_distance(histograms)
  labels_seen = int(np.count_nonzero(np.sum(
      [np.pad(h, (0, max(map(len, histograms)) - len(h))) for h in histograms], axis=0)))
  return {
      'task': task.name,
      'train_clients': len(ids),
      'test_clients': len(task.test_data.client_ids),
      'train_samples': int(counts.sum()),
      'samples_per_client': quantiles(counts),
      'label_clients_compared': len(sample),
      'labels_seen': labels_seen,
      'label_js_distance': quantiles(distances) if len(distances) else {},
      '_counts': counts.tolist(),
      '_distances': distances.tolist(),
  }


def plot_cdfs(stats: dict, output_dir: str) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  written = []
  for key, xlabel, name, log in (
      ('_counts', 'samples per client', 'sample_counts_cdf.png', True),
      ('_distances', 'pairwise Jensen-Shannon distance of label distributions',
       'label_jsd_cdf.png', False)):
    values = np.sort(np.asarray(stats[key], np.float64))
    if not len(values):
      continue
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(values, np.arange(1, len(values) + 1) / len(values))
    if log and values.min() > 0:
      ax.set_xscale('log')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('CDF')
    ax.set_title(stats['task'])
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(output_dir, name)
    output_files.save_figure(fig, path)
    plt.close(fig)
    written.append(path)
  return written


def format_stats(stats: dict) -> str:
  lines = [f'task {stats["task"]}: {stats["train_clients"]} training clients, '
           f'{stats["test_clients"]} test clients, {stats["train_samples"]} training samples']
  q = stats['samples_per_client']
  lines.append('samples per client: ' + ', '.join(f'{k} {v:g}' for k, v in q.items()))
  if stats['label_js_distance']:
    q = stats['label_js_distance']
    lines.append(f'pairwise label JS distance ({stats["label_clients_compared"]} clients, '
                 f'{stats["labels_seen"]} labels): '
                 + ', '.join(f'{k} {v:.3f}' for k, v in q.items()))
  return '\n'.join(lines)


def define_flags() -> None:
  """Command-line flags (defined only when run as a program, so that importing
  this module next to tf_fedscale.experiments.run defines no duplicate flags)."""
  flags.DEFINE_string('task', None, 'Task name (tasks/registry.py).')
  flags.DEFINE_string('data_dir', '', 'Directory holding the task\'s files.')
  flags.DEFINE_string('model', '', 'Model variant (irrelevant to the statistics).')
  flags.DEFINE_integer('min_samples', 1, 'Drop training clients with fewer examples.')
  flags.DEFINE_integer('max_samples', 0, 'Drop training clients with more (0: no maximum).')
  flags.DEFINE_string('cache_dir', '', 'Dataset cache directory.')
  flags.DEFINE_string('task_options', '', 'Task options key=value,...')
  flags.DEFINE_integer('max_clients', 500, 'Clients whose label distributions are '
                       'compared (0: all).')
  flags.DEFINE_integer('seed', 0, 'Seed of the client sample (and partitioners).')
  flags.DEFINE_string('output_dir', None, 'Where stats.json and the plots go.')


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  # Releases the context `import tensorflow_federated` installed before teardown:
  # no "Exception ignored in ServiceManager.__del__" at exit.
  runtime.install_exit_hooks()
  f = flags.FLAGS
  if not f.task:
    cli.fail(f'--task: required; choose from {sorted(registry.TASKS)}.')
  for name in ('seed', 'max_clients'):
    if f[name].value < 0:
      cli.fail(f'--{name}: must be >= 0, got {f[name].value}.')
  output_dir = f.output_dir or os.path.join('runs', f'stats_{f.task}')
  problem = cli.output_dir_problem(output_dir)
  if problem:
    cli.fail(f'--output_dir: {problem}')
  try:
    task = registry.build_task(
        f.task, f.data_dir, f.seed, model=f.model, min_samples=f.min_samples,
        max_samples=f.max_samples, cache_dir=f.cache_dir, options=f.task_options)
  except (ValueError, FileNotFoundError) as e:
    cli.fail(registry.blame(e))
  stats = compute(task, f.max_clients, f.seed)
  print(format_stats(stats))
  try:
    os.makedirs(output_dir, exist_ok=True)
    output_files.write_text(os.path.join(output_dir, 'stats.json'), json.dumps(
        {k: v for k, v in stats.items() if not k.startswith('_')}, indent=2))
    written = plot_cdfs(stats, output_dir)
  except output_files.WriteError as e:
    cli.fail(f'--output_dir: {e}.')
  except OSError as e:
    cli.fail(f'--output_dir: cannot write {e.filename or output_dir} ({e.strerror or e}).')
  print(f'wrote {os.path.join(output_dir, "stats.json")}' +
        (f', {", ".join(written)}' if written else ''))


if __name__ == '__main__':
  define_flags()
  cli.run(main)
