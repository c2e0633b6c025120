"""FLASH's measured on-device training times, as the cost model sees them.

FLASH (flash_device_profiles/regression/<phone>/<layer>.json, see its SOURCE.md)
timed one training step of an embedding, an LSTM and an output layer over a grid
of sizes on three phones: 20,000 points per layer and phone. Each point becomes
the four features of `tf_fedscale.model_cost` (training FLOPs of the batch,
trainable parameters, sequential steps, 1 for the step) counted by the same
per-layer rules the simulator applies to Keras models. The embedding and LSTM
grids include a 2-unit output layer (FLASH's `get_layer_train_time` subtracts
one), counted here as well.

A phone's relative speed is its SoC's CPU-F score in the AI-Benchmark SoC table
(flash_trace_aggregates_and_aibenchmark_soc/ai_benchmark_data.csv; FP32
inference on the CPU, where FLASH's DL4J app trains), the highest one listed for
the SoC; a phone sold with two SoCs takes the geometric mean of both.
"""

import csv
import dataclasses
import json
import os

import numpy as np
from scipy import optimize

from tf_fedscale import model_cost

FLASH = os.path.join('datasets', 'flash_device_profiles')
SOC_TABLE = os.path.join('datasets', 'flash_trace_aggregates_and_aibenchmark_soc',
                         'ai_benchmark_data.csv')
LAYERS = ('embedding', 'lstm', 'output')
# The phones FLASH measured (directory names as FLASH spells them) and their SoCs.
PHONE_SOCS = {'nexus6': ('Snapdragon 805',),
              'redmi_note8': ('Snapdragon 665',),
              'sumsung_note10': ('Snapdragon 855', 'Exynos 9825')}
# FLASH's normalisation of (in, out) per layer (device_util.py), then batch, seq.
SCALES = {'embedding': (10_000, 1_000), 'lstm': (1_000, 1_000), 'output': (1_000, 10_000)}
BATCH_SCALE, SEQ_SCALE = 50, 10
REDUNDANT_OUTPUT_UNITS = 2
# The reference workload the default trace's compute speeds are calibrated on
# (traces/calibrate.py): one step of a next-word model, vocabulary 10,000,
# embedding and LSTM width 250, sequence 10, batch 20, as normalised grid points.
REFERENCE_LAYERS = {'embedding': (1.0, 0.25, 0.4, 1.0),  # 10,000 -> 250
                    'lstm': (0.25, 0.25, 0.4, 1.0),  # 250 -> 250
                    'output': (0.25, 1.0, 0.4, 1.0)}  # 250 -> 10,000
REFERENCE_BATCH = 20


@dataclasses.dataclass(frozen=True)
class Grid:
  """One phone's measurements: features [points, 4] (`step_features`),
  seconds [points], layer name and batch size per point."""

  phone: str
  features: np.ndarray
  seconds: np.ndarray
  layer: np.ndarray
  batch_size: np.ndarray


def layer_cost(layer: str, inputs, outputs, seq_len) -> model_cost.Cost:
  """Per-example cost of a FLASH grid point (arrays allowed)."""
  if layer == 'embedding':
    return (model_cost.embedding(inputs, outputs, seq_len)
            + model_cost.dense(outputs, REDUNDANT_OUTPUT_UNITS, seq_len))
  if layer == 'lstm':
    return (model_cost.recurrent(inputs, outputs, seq_len, model_cost.LSTM_GATES)
            + model_cost.dense(outputs, REDUNDANT_OUTPUT_UNITS, seq_len))
  if layer == 'output':
    return model_cost.dense(inputs, outputs, seq_len)
  raise ValueError(f'unknown FLASH layer {layer!r}; one of {LAYERS}.')


def sizes(layer: str, points: np.ndarray) -> tuple[np.ndarray, ...]:
  """(inputs, outputs, batch, seq_len) of normalised grid points [n, 4]."""
  points = np.asarray(points, np.float64).reshape(-1, 4)
  in_scale, out_scale = SCALES[layer]
  return tuple(np.round(points[:, i] * scale) for i, scale in
               enumerate((in_scale, out_scale, BATCH_SCALE, SEQ_SCALE)))


def reference_step_s(coefficients: model_cost.StepCoefficients) -> float:
  """Modelled seconds of the reference workload at relative speed 1: the sum of
  its three measured layer steps, as the calibration sums them."""
  total = 0.0
  for layer, point in REFERENCE_LAYERS.items():
    inputs, outputs, batch, seq_len = sizes(layer, point)
    total += float(coefficients.step_s(layer_cost(layer, inputs, outputs, seq_len),
                                       batch)[0])
  return total


def step_features(cost: model_cost.Cost, batch_size) -> np.ndarray:
  """[n, 4] features whose dot product with the coefficients (in
  `StepCoefficients` order) is `StepCoefficients.step_s`."""
  flops = np.asarray(cost.training_flops * batch_size, np.float64)
  shape = np.broadcast_shapes(flops.shape, np.shape(cost.params),
                              np.shape(cost.sequential_steps))
  return np.stack([np.broadcast_to(flops, shape),
                   np.broadcast_to(np.asarray(cost.params, np.float64), shape),
                   np.broadcast_to(np.asarray(cost.sequential_steps, np.float64), shape),
                   np.ones(shape)], axis=-1)


def read_grid(shared_dir: str, phone: str) -> Grid:
  """`phone`'s three layer grids under `shared_dir`, as one Grid."""
  features, seconds, layers, batches = [], [], [], []
  for layer in LAYERS:
    with open(os.path.join(shared_dir, FLASH, 'regression', phone, f'{layer}.json')) as f:
      grid = json.load(f)
    x = np.asarray(grid['X'], np.float64)
    inputs, outputs, batch, seq_len = sizes(layer, x)
    features.append(step_features(layer_cost(layer, inputs, outputs, seq_len), batch))
    seconds.append(np.asarray(grid['Y'], np.float64).ravel())
    layers.append(np.full(len(x), layer))
    batches.append(batch)
  return Grid(phone, np.concatenate(features), np.concatenate(seconds),
              np.concatenate(layers), np.concatenate(batches))


def soc_cpu_f_scores(shared_dir: str) -> dict[str, float]:
  """Highest CPU-F score listed for each SoC of the AI-Benchmark SoC table."""
  scores = {}
  with open(os.path.join(shared_dir, SOC_TABLE), newline='') as f:
    for row in csv.DictReader(f):
      if row['Processor'] and row['CPU-F Score']:
        score = float(row['CPU-F Score'])
        scores[row['Processor']] = max(score, scores.get(row['Processor'], 0.0))
  return scores


def phone_speeds(shared_dir: str) -> dict[str, float]:
  """Relative speed (CPU-F score) of each measured phone."""
  scores = soc_cpu_f_scores(shared_dir)
  return {phone: float(np.exp(np.mean([np.log(scores[s]) for s in socs])))
          for phone, socs in PHONE_SOCS.items()}


def fit(grids: list[Grid], speeds: dict[str, float]) -> model_cost.StepCoefficients:
  """Non-negative coefficients (at relative speed 1) minimising the squared
  relative error of predicted step times over every point of `grids`, a phone
  of speed k taking step_s / k."""
  rows = np.concatenate([g.features / (speeds[g.phone] * g.seconds[:, None])
                         for g in grids])
  scale = rows.max(axis=0)
  coefficients, _ = optimize.nnls(rows / scale, np.ones(len(rows)))
  return model_cost.StepCoefficients(*(coefficients / scale).tolist())


def predict_s(coefficients: model_cost.StepCoefficients, grid: Grid,
              speed: float) -> np.ndarray:
  """Predicted seconds of every point of `grid` on a phone of `speed`."""
  return grid.features @ np.array(dataclasses.astuple(coefficients)) / speed
