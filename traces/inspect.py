r"""Summarises a device and an availability trace and plots them.

  python -m tf_fedscale.traces.inspect --device_trace=devices.npz \
      --availability_trace=availability.npz --output_dir=runs/traces
  python -m tf_fedscale.traces.inspect --num_devices=100000      # the default generator

Prints quantiles of compute and bandwidth, the fraction online by hour of the
week and slot-length quantiles, and writes compute_cdf.png, bandwidth_cdf.png,
online_fraction.png and slot_length_cdf.png into --output_dir. Run it as a
module (`python -m tf_fedscale.traces.inspect`): as a script its directory would shadow the
standard library's `inspect`.
"""

import os
from collections.abc import Sequence

from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from tf_fedscale import availability as availability_lib  # pylint: disable=g-import-not-at-top
from tf_fedscale import cli  # pylint: disable=g-import-not-at-top
from tf_fedscale import population as population_lib  # pylint: disable=g-import-not-at-top
from tf_fedscale.traces import default  # pylint: disable=g-import-not-at-top
from tf_fedscale.traces import loader  # pylint: disable=g-import-not-at-top
from tf_fedscale.traces import stats  # pylint: disable=g-import-not-at-top
from tf_fedscale.traces.formats import TraceError  # pylint: disable=g-import-not-at-top

PLOTS = ('compute_cdf.png', 'bandwidth_cdf.png', 'online_fraction.png',
         'slot_length_cdf.png')
SHORT_SLOT_S = 600  # "shorter than a round": 10 minutes


def _quantile_row(name: str, values: np.ndarray, fmt: str = '{:>10.4g}') -> str:
  q = stats.quantiles(values)
  return f'{name:<22}' + ''.join(fmt.format(v) for v in q.values())


def _header() -> str:
  return f'{"":<22}' + ''.join(f'{f"p{round(q * 100)}":>10}' for q in stats.QUANTILES)


def _spread(values: np.ndarray) -> float:
  q = stats.quantiles(values, (0.05, 0.95))
  return q[0.95] / q[0.05] if q[0.05] > 0 else float('inf')


def device_summary(devices: population_lib.DeviceProfiles, source: str) -> str:
  lines = [f'Devices: {devices.num_devices:,} ({source})', _header(),
           _quantile_row('compute ms/sample', devices.compute_ms_per_sample),
           _quantile_row('download kbps', devices.download_kbps),
           _quantile_row('upload kbps', devices.upload_kbps),
           'spread p95/p5: ' + ', '.join(
               f'{name} {_spread(getattr(devices, field)):.1f}x' for name, field in (
                   ('compute', 'compute_ms_per_sample'), ('download', 'download_kbps'),
                   ('upload', 'upload_kbps')))]
  return '\n'.join(lines)


def availability_summary(trace: availability_lib.AvailabilityTrace, source: str) -> str:
  n = trace.num_devices
  lines = [f'Availability: {n:,} devices ({source})']
  if trace.always_online:
    return '\n'.join(lines + ['always online'])
  slots = len(trace.slot_start_s)
  periods = np.unique(trace.period_s)
  period_text = (f'{periods[0]} s' if len(periods) == 1 else
                 f'{len(periods)} distinct, {periods.min()} to {periods.max()} s')
  share = stats.online_fraction_per_device(trace)
  lengths = stats.slot_lengths_s(trace)
  lines += [f'slots: {slots:,} ({slots / max(n, 1):.1f} per device); period: {period_text}',
            f'mean fraction online: {share.mean():.1%}; devices never online: '
            f'{np.mean(share == 0):.1%}',
            _header(),
            _quantile_row('online share (%)', 100 * share),
            _quantile_row('slot length (min)', lengths / 60.0),
            f'slots shorter than {SHORT_SLOT_S // 60} min: '
            f'{np.mean(lengths < SHORT_SLOT_S):.1%}' if lengths.size else 'no slots',
            'Fraction online (%) by hour of the week (t = 0 is day 0, 00:00):',
            '       ' + ''.join(f'{h:>4}' for h in range(24))]
  by_hour = stats.online_fraction_by_hour(trace)
  lines += [f'day {d}  ' + ''.join(f'{100 * v:>4.0f}' for v in row)
            for d, row in enumerate(by_hour)]
  return '\n'.join(lines)


def _cdf(ax, values: np.ndarray, label: str) -> None:
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values) & (values > 0)]
  if values.size == 0:
    return
  levels = np.linspace(0.0, 1.0, 1001)
  ax.plot(np.quantile(values, levels), levels, label=label)


def _finish(fig, ax, path: str, xlabel: str, title: str, log: bool = True) -> None:
  if log:
    ax.set_xscale('log')
  ax.set_xlabel(xlabel)
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_plots(devices: population_lib.DeviceProfiles,
                trace: availability_lib.AvailabilityTrace, output_dir: str) -> list[str]:
  """The four PNGs; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  paths = [os.path.join(output_dir, name) for name in PLOTS]

  fig, ax = plt.subplots(figsize=(6, 4))
  _cdf(ax, devices.compute_ms_per_sample, 'compute')
  ax.set_ylabel('CDF of devices')
  _finish(fig, ax, paths[0], 'inference ms per sample', 'Compute speed')

  fig, ax = plt.subplots(figsize=(6, 4))
  _cdf(ax, devices.download_kbps, 'download')
  _cdf(ax, devices.upload_kbps, 'upload')
  ax.set_ylabel('CDF of devices')
  _finish(fig, ax, paths[1], 'kbps', 'Network bandwidth')

  fig, ax = plt.subplots(figsize=(8, 3.5))
  times = np.arange(0, stats.WEEK_S, 600)
  ax.plot(times / 3600.0, 100 * stats.online_fraction_at(trace, times))
  for day in range(1, 7):
    ax.axvline(24 * day, color='grey', alpha=0.3)
  ax.set_xlim(0, 168)
  ax.set_ylim(bottom=0)
  ax.set_ylabel('% of devices online')
  _finish(fig, ax, paths[2], 'hour of the week', 'Devices online over a week', log=False)

  fig, ax = plt.subplots(figsize=(6, 4))
  _cdf(ax, stats.slot_lengths_s(trace) / 60.0, 'slots')
  ax.axvline(SHORT_SLOT_S / 60, color='grey', linestyle='--', alpha=0.6)
  ax.set_ylabel('CDF of online slots')
  _finish(fig, ax, paths[3], 'minutes', 'Length of online slots')
  return paths


def load(device_trace: str, availability_trace: str, num_devices: int, seed: int):
  """(devices, device source text, availability, availability source text)."""
  if availability_trace:
    trace, trace_source = loader.load_availability(availability_trace), availability_trace
  else:
    trace = default.generate_availability(num_devices, seed)
    trace_source = f'default generator, seed {seed}'
  if device_trace:
    devices, device_source = loader.load_devices(device_trace), device_trace
  else:
    devices = default.generate_devices(num_devices, seed)
    device_source = f'default generator, seed {seed}'
  return devices, device_source, trace, trace_source


def define_flags() -> None:
  """The CLI's flags (defined only when run, so importing this module is free)."""
  flags.DEFINE_string('device_trace', '', 'Device trace (native .csv/.npz or FedScale '
                      'pickle); empty: the default generator.')
  flags.DEFINE_string('availability_trace', '',
                      'Availability trace; empty: the default generator.')
  flags.DEFINE_integer('num_devices', 100_000,
                       'Devices to generate when a trace is not given.')
  flags.DEFINE_integer('seed', 0, 'Seed of the default generator.')
  flags.DEFINE_string('output_dir', 'runs/traces', 'Where the PNGs go.')


def main(argv: Sequence[str]) -> None:
  args = flags.FLAGS
  cli.start(argv)
  if args.num_devices < 1:
    cli.fail(f'--num_devices: must be positive, got {args.num_devices}.')
  if args.seed < 0:
    cli.fail(f'--seed: must be >= 0, got {args.seed}.')
  problem = cli.output_dir_problem(args.output_dir)
  if problem:
    cli.fail(f'--output_dir: {problem}')
  try:
    devices, device_source, trace, trace_source = load(
        args.device_trace, args.availability_trace, args.num_devices, args.seed)
  except TraceError as e:
    flag = 'availability_trace' if e.path == args.availability_trace else 'device_trace'
    cli.fail(f'--{flag}: {e}')
  print(device_summary(devices, device_source))
  print()
  print(availability_summary(trace, trace_source))
  try:
    paths = write_plots(devices, trace, args.output_dir)
  except OSError as e:
    cli.fail(f'--output_dir: cannot write {e.filename or args.output_dir} '
             f'({e.strerror or e}).')
  print()
  print('plots: ' + ', '.join(paths))


if __name__ == '__main__':
  define_flags()
  cli.run(main)
