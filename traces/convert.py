r"""Converts trace files to the native format (traces/formats.py).

  python -m tf_fedscale.traces.convert \
      --device_trace=client_device_capacity --device_out=devices.npz \
      --availability_trace=client_behave_trace --availability_out=availability.npz

Inputs are FedScale's pickles (read only because you named them; see
traces/fedscale.py) or native files (CSV <-> NPZ); the output's extension picks
CSV or NPZ. Rows keep the order `--client_mapping=modulo` relies on, so a run on
the converted files matches a run on the pickles.
"""

from collections.abc import Sequence

from absl import flags

from tf_fedscale import cli
from tf_fedscale.traces import formats
from tf_fedscale.traces import loader



def define_flags() -> None:
  """The CLI's flags (defined only when run, so importing this module is free)."""
  flags.DEFINE_string('device_trace', '', 'Device trace to convert.')
  flags.DEFINE_string('device_out', '', 'Where to write it (.csv or .npz).')
  flags.DEFINE_string('availability_trace', '', 'Availability trace to convert.')
  flags.DEFINE_string('availability_out', '', 'Where to write it (.csv or .npz).')


class _Usage(Exception):
  pass


def _plan() -> list[tuple[str, str, str, str]]:
  """(kind, input flag, input, output) of each conversion asked for."""
  args = flags.FLAGS
  jobs = []
  for name_in, name_out, kind in (('device_trace', 'device_out', 'device'),
                                  ('availability_trace', 'availability_out', 'availability')):
    source, target = args[name_in].value, args[name_out].value
    if bool(source) != bool(target):
      raise _Usage(f'--{name_in} and --{name_out} go together.')
    if source:
      if formats.extension(target) not in formats.EXTENSIONS:
        raise _Usage(f'--{name_out}: {target!r} must end in .csv or .npz.')
      jobs.append((kind, name_in, source, target))
  if not jobs:
    raise _Usage('nothing to convert; pass --device_trace and --device_out and/or '
                 '--availability_trace and --availability_out.')
  return jobs


def main(argv: Sequence[str]) -> None:
  cli.start(argv)
  try:
    jobs = _plan()
  except _Usage as e:
    cli.fail(str(e))
  for kind, flag, source, target in jobs:
    try:
      if kind == 'device':
        trace = loader.load_devices(source)
        formats.write_devices(trace, target)
        print(f'{source} -> {target}: {trace.num_devices} devices')
      else:
        trace = loader.load_availability(source)
        formats.write_availability(trace, target)
        print(f'{source} -> {target}: {trace.num_devices} devices, '
              f'{len(trace.slot_start_s)} slots')
    except formats.TraceError as e:
      cli.fail(f'--{flag}: {e}')
    except OSError as e:
      cli.fail(f'cannot write {target}: {e}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
