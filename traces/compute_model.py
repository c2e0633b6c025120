"""--compute_model: how a device trace's compute speed becomes a model's training time.

`fedscale` (FedScale's rule): compute_s = samples x inference ms per sample x
--backward_factor / 1000, the trace's milliseconds whatever the model.

`flops`: the trace's compute column is read as the device's speed on the
reference workload its default is calibrated on (traces/flash_grids.py,
REFERENCE_LAYERS: the FLASH next-word step), and a model costs its own
training time per example relative to that workload, both under the cost model
of `tf_fedscale.model_cost` fitted to FLASH's measured phones
(traces/calibrated.py, COMPUTE_COST). So every device's milliseconds per
sample are multiplied by one factor per run (the model and the batch size fix
it); the accountant's formula is unchanged.
"""

import dataclasses

from tf_fedscale import model_cost
from tf_fedscale import population as population_lib
from tf_fedscale.traces import calibrate
from tf_fedscale.traces import calibrated
from tf_fedscale.traces import flash_grids

COMPUTE_MODELS = ('fedscale', 'flops')
# Training / inference cost the default trace's milliseconds were divided by;
# the flops model counts the backward pass itself, so it must stay this.
CALIBRATED_BACKWARD_FACTOR = calibrate.BACKWARD_FACTOR
COEFFICIENTS = model_cost.StepCoefficients(**calibrated.COMPUTE_COST)


def flops_scale(cost: model_cost.Cost, batch_size: int,
                coefficients: model_cost.StepCoefficients = COEFFICIENTS) -> float:
  """Training time per example of a model of `cost` in steps of `batch_size`,
  over that of the reference workload (the factor on a trace's ms per sample)."""
  reference_s = (flash_grids.reference_step_s(coefficients)
                 / flash_grids.REFERENCE_BATCH)
  return coefficients.per_example_s(cost, batch_size) / reference_s


def scale_devices(devices: population_lib.DeviceProfiles,
                  factor: float) -> population_lib.DeviceProfiles:
  """`devices` with every compute ms per sample multiplied by `factor`."""
  if not factor > 0:
    raise ValueError(f'a compute scale must be positive, got {factor}.')
  return dataclasses.replace(
      devices, compute_ms_per_sample=(devices.compute_ms_per_sample * factor
                                      ).astype(devices.compute_ms_per_sample.dtype))
