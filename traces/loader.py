"""Opens a trace file by what it is: native CSV/NPZ by extension, anything else
as FedScale's pickle (only ever a path the user named; see traces/fedscale.py)."""

import os

from tf_fedscale import availability as availability_lib
from tf_fedscale import population as population_lib
from tf_fedscale.traces import fedscale
from tf_fedscale.traces import formats
from tf_fedscale.traces.formats import TraceError


def _check_file(path: str) -> None:
  if not os.path.exists(path):
    raise TraceError(path, 'no such file.')
  if not os.path.isfile(path):
    raise TraceError(path, 'not a regular file.')


def load_devices(path: str) -> population_lib.DeviceProfiles:
  """Device speeds from a native device trace or FedScale's client_device_capacity."""
  _check_file(path)
  if formats.extension(path) in formats.EXTENSIONS:
    return formats.read_devices(path)
  return fedscale.load_device_capacity(path)


def load_availability(path: str) -> availability_lib.AvailabilityTrace:
  """Availability from a native trace or FedScale's client_behave_trace."""
  _check_file(path)
  if formats.extension(path) in formats.EXTENSIONS:
    return formats.read_availability(path)
  return fedscale.load_behave_trace(path)
