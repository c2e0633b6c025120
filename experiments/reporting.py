"""Reports of a run directory: PNG figures and a Markdown summary, and the
console progress of a running simulation.

Reads only files a run writes (metrics.csv, clients.csv, client_accuracy.csv),
so a report can be made for any run, finished or not.
"""

import csv
import math
import os
import sys
from collections.abc import Sequence
from typing import Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tqdm

from tf_fedscale import output_files

REPORT_DIR = 'report'
STATUS_COLORS = {'completed': 'tab:green', 'straggler': 'tab:gray',
                 'dropped_offline': 'tab:red', 'missed_deadline': 'tab:purple'}


def format_duration(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


class Progress:
  """A progress bar on a terminal (round, virtual time, last accuracy), one line
  per round otherwise (logs, CI)."""

  def __init__(self, rounds: int, stream=sys.stdout):
    self.rounds = rounds
    self._stream = stream
    self._bar = (tqdm.tqdm(total=rounds, file=stream, unit='round', dynamic_ncols=True)
                 if stream.isatty() else None)
    self._last_accuracy = float('nan')

  def update(self, record: dict) -> None:
    if not math.isnan(record['eval_accuracy']):
      self._last_accuracy = record['eval_accuracy']
    summary = (f'virtual {format_duration(record["virtual_time_s"])}  '
               f'done {record["completed"]}/{record["selected"]}  '
               f'dropped {record["dropped"]}  acc {self._last_accuracy:.3f}')
    if self._bar is not None:
      self._bar.n = record['round']
      self._bar.set_postfix_str(summary)
      return
    print(f'round {record["round"]:>4}/{self.rounds}  {summary}  '
          f'train_loss {record["train_loss"]:.4f}  ({record["wall_clock_s"]:.1f} s)',
          file=self._stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def read_csv(path: str) -> dict[str, np.ndarray]:
  """Columns of a CSV; numeric columns as float arrays."""
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  columns = {}
  for key in (rows[0].keys() if rows else []):
    values = [r[key] for r in rows]
    try:
      columns[key] = np.array([float(v) if v != '' else np.nan for v in values])
    except ValueError:
      columns[key] = np.array(values)
  return columns


def read_clients(run_dir: str) -> dict[str, np.ndarray]:
  """<run_dir>/clients.csv as columns ({} when the run wrote none)."""
  path = os.path.join(run_dir, 'clients.csv')
  return read_csv(path) if os.path.exists(path) else {}


def run_summary(run_dir: str, target_accuracy: Optional[float] = None
                ) -> list[tuple[str, str]]:
  """`summary_rows` of the run in `run_dir`."""
  return summary_rows(read_csv(os.path.join(run_dir, 'metrics.csv')), target_accuracy,
                      read_clients(run_dir))


def time_to_accuracy(metrics: dict[str, np.ndarray], target: float
                     ) -> Optional[tuple[int, float]]:
  """(round, virtual seconds) at which eval accuracy first reaches `target`."""
  reached = np.flatnonzero(metrics['eval_accuracy'] >= target)
  if not reached.size:
    return None
  i = reached[0]
  return int(metrics['round'][i]), float(metrics['virtual_time_s'][i])


def summary_rows(metrics: dict[str, np.ndarray],
                 target_accuracy: Optional[float] = None,
                 clients: Optional[dict[str, np.ndarray]] = None) -> list[tuple[str, str]]:
  """The headline numbers of a run, as (name, value) rows; with the client
  timeline (`clients`), also the client time lost to drop-outs and cut stragglers."""
  evaluated = ~np.isnan(metrics['eval_accuracy'])
  acc = metrics['eval_accuracy'][evaluated]
  # Elapsed virtual time: the clock may start later than t = 0 (--start_time_h).
  elapsed_s = metrics['virtual_time_s'][-1] - metrics['virtual_time_s'][0]
  durations = metrics['round_duration_s'][metrics['round'] > 0]
  rows = [
      ('rounds', f'{int(metrics["round"][-1])}'),
      ('eval accuracy (first -> final, best)',
       f'{acc[0]:.3f} -> {acc[-1]:.3f}, {acc.max():.3f}' if acc.size else 'n/a'),
      ('virtual time', f'{format_duration(elapsed_s)} ({elapsed_s:.0f} s)'),
      ('round duration (median, slowest)',
       f'{np.median(durations):.0f} s, {durations.max():.0f} s' if durations.size else 'n/a'),
      ('clients completed', f'{int(metrics["completed"].sum())}'),
      ('clients dropped (offline)', f'{int(metrics["dropped"].sum())}'),
      ('stragglers cut', f'{int(metrics["stragglers"].sum() + metrics["missed_deadline"].sum())}'),
      ('bytes moved (down + up)',
       f'{(metrics["bytes_down"].sum() + metrics["bytes_up"].sum()) / 1e6:.1f} MB'),
      ('client compute', f'{metrics["client_compute_s"].sum() / 3600:.2f} h'),
  ]
  if clients and clients['round'].size:
    busy_s = clients['end_s']  # seconds from round start until done, dropped or cut
    lost = clients['status'] != 'completed'
    rows.append(('client time to finish (median of completed)',
                 f'{np.median(busy_s[~lost]):.0f} s' if (~lost).any() else 'n/a'))
    rows.append(('client time lost (drop-outs, stragglers)',
                 f'{busy_s[clients["status"] == "dropped_offline"].sum() / 3600:.2f} h, '
                 f'{busy_s[lost & (clients["status"] != "dropped_offline")].sum() / 3600:.2f} h'
                 f' ({100 * busy_s[lost].sum() / max(busy_s.sum(), 1e-9):.0f}% of all)'))
  if target_accuracy:
    reached = time_to_accuracy(metrics, target_accuracy)
    rows.append((f'time to accuracy {target_accuracy:g}',
                 f'round {reached[0]}, {format_duration(reached[1])}' if reached
                 else 'not reached'))
  return rows


def format_table(rows: Sequence[tuple[str, str]]) -> str:
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)


def _plot_learning_curves(metrics, path: str, target: Optional[float]) -> None:
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  hours = metrics['virtual_time_s'] / 3600
  evaluated = ~np.isnan(metrics['eval_accuracy'])
  for col, (x, label) in enumerate([(metrics['round'], 'round'),
                                    (hours, 'virtual time (h)')]):
    axes[0, col].plot(x[evaluated], metrics['eval_accuracy'][evaluated], marker='o', ms=3)
    if target:
      axes[0, col].axhline(target, color='tab:red', ls='--', lw=1, label=f'target {target:g}')
      axes[0, col].legend()
    axes[0, col].set(xlabel=label, ylabel='test accuracy')
    trained = ~np.isnan(metrics['train_loss'])
    axes[1, col].plot(x[trained], metrics['train_loss'][trained], label='train', lw=1)
    axes[1, col].plot(x[evaluated], metrics['eval_loss'][evaluated], label='test', marker='o', ms=3)
    axes[1, col].set(xlabel=label, ylabel='loss')
    axes[1, col].legend()
  fig.suptitle('Accuracy and loss over rounds and over virtual wall-clock time')
  fig.tight_layout()
  output_files.save_figure(fig, path)
  plt.close(fig)


SPREAD_COLUMNS = ('eval_accuracy_p10', 'eval_accuracy_p50', 'eval_accuracy_p90',
                  'eval_accuracy_worst10')


def _plot_accuracy_spread(metrics, path: str) -> None:
  """Accuracy over test clients per evaluated round: the 10th-90th percentile
  band, the median, the mean of the worst 10 % and the example-weighted mean."""
  evaluated = ~np.isnan(metrics['eval_accuracy_p50'])
  rounds = metrics['round'][evaluated]
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.fill_between(rounds, metrics['eval_accuracy_p10'][evaluated],
                  metrics['eval_accuracy_p90'][evaluated], color='tab:blue', alpha=0.25,
                  label='10th-90th percentile')
  ax.plot(rounds, metrics['eval_accuracy_p50'][evaluated], color='tab:blue', label='median')
  ax.plot(rounds, metrics['eval_accuracy_worst10'][evaluated], color='tab:red', ls='--',
          label='mean of the worst 10 %')
  ax.plot(rounds, metrics['eval_accuracy'][evaluated], color='black', lw=1,
          label='example-weighted mean')
  ax.set(xlabel='round', ylabel='test accuracy of a client',
         title='Accuracy across test clients over rounds')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def choose_timeline_round(clients: dict[str, np.ndarray]) -> int:
  """The latest round in which someone dropped out, else the latest round."""
  dropped = clients['round'][clients['status'] != 'completed']
  return int(dropped.max() if dropped.size else clients['round'].max())


def _plot_timeline(clients, round_num: int, path: str) -> None:
  mask = clients['round'] == round_num
  order = np.argsort(clients['end_s'][mask])
  rows = {k: v[mask][order] for k, v in clients.items()}
  n = len(order)
  fig, ax = plt.subplots(figsize=(10, max(3, 0.18 * n + 1.5)))
  for i in range(n):
    end = rows['end_s'][i]
    start = 0.0
    for phase, color in (('download_s', 'tab:blue'), ('compute_s', 'tab:orange'),
                         ('upload_s', 'tab:green')):
      length = min(rows[phase][i], max(end - start, 0.0))
      ax.barh(i, length, left=start, color=color, height=0.8)
      start += rows[phase][i]
    status = rows['status'][i]
    if status != 'completed':
      ax.plot(end, i, marker='x', color=STATUS_COLORS.get(status, 'black'), ms=6)
  handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ('tab:blue', 'tab:orange', 'tab:green')]
  handles += [plt.Line2D([], [], marker='x', ls='', color=STATUS_COLORS[s])
              for s in ('straggler', 'dropped_offline', 'missed_deadline')]
  ax.legend(handles, ['download', 'compute', 'upload', 'cut: straggler',
                      'dropped: went offline', 'cut: deadline'], loc='lower right', fontsize=8)
  ax.set_xlim(0, 1.05 * max(float(rows['end_s'].max()), 1e-3))
  ax.set(xlabel='seconds since round start', ylabel='invited clients (by end time)',
         title=f'Participant timeline, round {round_num}')
  fig.tight_layout()
  output_files.save_figure(fig, path)
  plt.close(fig)


def _plot_client_accuracy(client_acc, path: str) -> None:
  acc = np.sort(client_acc['accuracy'])
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  axes[0].hist(acc, bins=20, color='tab:blue')
  axes[0].set(xlabel='final test accuracy', ylabel='test clients')
  axes[1].plot(acc, np.arange(1, len(acc) + 1) / len(acc))
  axes[1].axvline(np.percentile(acc, 10), color='tab:red', ls='--', label='10th percentile')
  axes[1].set(xlabel='final test accuracy', ylabel='CDF over test clients')
  axes[1].legend()
  fig.suptitle('Final accuracy across test clients')
  fig.tight_layout()
  output_files.save_figure(fig, path)
  plt.close(fig)


def _plot_system_cost(metrics, path: str) -> None:
  fig, axes = plt.subplots(1, 3, figsize=(13, 4))
  rounds = metrics['round']
  axes[0].plot(rounds, np.cumsum(metrics['bytes_down']) / 1e6, label='down')
  axes[0].plot(rounds, np.cumsum(metrics['bytes_up']) / 1e6, label='up')
  axes[0].set(xlabel='round', ylabel='cumulative MB moved')
  axes[0].legend()
  axes[1].plot(rounds, np.cumsum(metrics['client_compute_s']) / 3600)
  axes[1].set(xlabel='round', ylabel='cumulative client compute (h)')
  bottom = np.zeros_like(rounds)
  for key, color in (('dropped', 'tab:red'), ('stragglers', 'tab:gray'),
                     ('missed_deadline', 'tab:purple')):
    axes[2].bar(rounds, metrics[key], bottom=bottom, color=color, label=key, width=1.0)
    bottom = bottom + metrics[key]
  axes[2].set(xlabel='round', ylabel='clients lost per round')
  axes[2].legend()
  fig.suptitle('System cost')
  fig.tight_layout()
  output_files.save_figure(fig, path)
  plt.close(fig)


class RunFilesError(ValueError):
  """A run file the report needs is missing, cut or not a run's output."""


METRICS_COLUMNS = ('round', 'virtual_time_s', 'round_duration_s', 'train_loss', 'eval_loss',
                   'eval_accuracy', 'completed', 'dropped', 'stragglers', 'missed_deadline',
                   'bytes_down', 'bytes_up', 'client_compute_s')
CLIENTS_COLUMNS = ('round', 'status', 'download_s', 'compute_s', 'upload_s', 'end_s')


def _read_checked(path: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
  """read_csv, refusing a file that is cut, lacks `columns` or has text in them."""
  try:
    with open(path, newline='') as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise RunFilesError(f'{path}: cannot read ({e}).') from e
  if not rows or any(c not in rows[0] for c in columns):
    missing = [c for c in columns if not rows or c not in rows[0]]
    raise RunFilesError(f'{path}: lacks the columns {missing}; it is cut or was not '
                        'written by experiments.run.')
  width = len(rows[0])
  for line, row in enumerate(rows[1:], start=2):
    if len(row) != width:
      raise RunFilesError(f'{path}: line {line} has {len(row)} of {width} fields '
                          '(the file is cut or damaged).')
  table = read_csv(path) if len(rows) > 1 else {c: np.zeros(0) for c in rows[0]}
  for column in columns:
    if column != 'status' and table[column].dtype.kind != 'f':
      raise RunFilesError(f'{path}: column {column!r} holds text where numbers belong.')
  return table


def _plan_timeline(clients: dict[str, np.ndarray], timeline_round: Optional[int]
                   ) -> Optional[int]:
  if not clients.get('round', np.zeros(0)).size:
    if timeline_round is not None:
      raise RunFilesError(f'--timeline_round: the run has no clients.csv rows, so no '
                          f'timeline of round {timeline_round}.')
    return None
  if timeline_round is None:
    return choose_timeline_round(clients)
  rounds = np.unique(clients['round']).astype(int)
  if timeline_round not in rounds:
    raise RunFilesError(f'--timeline_round: round {timeline_round} invited no clients; '
                        f'choose one of rounds {rounds.min()}-{rounds.max()} in clients.csv.')
  return timeline_round


def write_report(run_dir: str, target_accuracy: Optional[float] = None,
                 timeline_round: Optional[int] = None) -> str:
  """Writes <run_dir>/report/{*.png, summary.md}; returns the summary's path.

  Reads and checks every input first (raises RunFilesError naming the file or
  --timeline_round), so a bad input leaves an earlier report untouched.
  """
  metrics = _read_checked(os.path.join(run_dir, 'metrics.csv'), METRICS_COLUMNS)
  if not metrics['round'].size:
    raise RunFilesError(f'{os.path.join(run_dir, "metrics.csv")}: holds no rounds yet.')
  clients_path = os.path.join(run_dir, 'clients.csv')
  clients = (_read_checked(clients_path, CLIENTS_COLUMNS)
             if os.path.exists(clients_path) else {})
  round_num = _plan_timeline(clients, timeline_round)
  acc_path = os.path.join(run_dir, 'client_accuracy.csv')
  client_acc = (_read_checked(acc_path, ('accuracy',))
                if os.path.exists(acc_path) else {})

  out = os.path.join(run_dir, REPORT_DIR)
  if os.path.islink(out):
    raise RunFilesError(f'{out} is a symbolic link, and a report is written only inside '
                        'the run directory; remove it.')
  os.makedirs(out, exist_ok=True)
  _plot_learning_curves(metrics, os.path.join(out, 'accuracy_loss.png'), target_accuracy)
  _plot_system_cost(metrics, os.path.join(out, 'system_cost.png'))
  lines = ['# Run summary', '', f'Run directory: `{run_dir}`', '',
           '| metric | value |', '|---|---|']
  clients = read_clients(run_dir)
  lines += [f'| {k} | {v} |' for k, v in summary_rows(metrics, target_accuracy, clients)]
  figures = ['accuracy_loss.png', 'system_cost.png']
  if all(c in metrics for c in SPREAD_COLUMNS) and (~np.isnan(metrics[SPREAD_COLUMNS[1]])).any():
    _plot_accuracy_spread(metrics, os.path.join(out, 'accuracy_spread.png'))
    figures.append('accuracy_spread.png')

  if round_num is not None:
    name = f'timeline_round_{round_num}.png'
    _plot_timeline(clients, round_num, os.path.join(out, name))
    figures.append(name)
    lines += ['', '## Drop-outs by cause', '', '| status | clients |', '|---|---|']
    statuses, counts = np.unique(clients['status'], return_counts=True)
    lines += [f'| {s} | {c} |' for s, c in zip(statuses, counts)]

  if client_acc.get('accuracy', np.zeros(0)).size:
    _plot_client_accuracy(client_acc, os.path.join(out, 'client_accuracy.png'))
    figures.append('client_accuracy.png')
    acc = client_acc['accuracy']
    lines += ['', '## Fairness across test clients', '',
              f'- clients: {len(acc)}', f'- mean accuracy: {acc.mean():.3f}',
              f'- 10th percentile: {np.percentile(acc, 10):.3f}',
              f'- variance: {acc.var():.4f}']
  lines += ['', '## Figures', ''] + [f'![{f}]({f})' for f in figures]
  path = os.path.join(out, 'summary.md')
  output_files.write_text(path, '\n'.join(lines) + '\n')
  return path
