r"""Fits the default generator's parameters to real measurements in ../shared.

  python -m tf_fedscale.traces.calibrate                 # rewrite traces/calibrated.py
  python -m tf_fedscale.traces.calibrate --check         # exit 1 if it would change

Reads (never copies) the FLASH files under ../shared/datasets (see their
SOURCE.md) and writes the fitted numbers, the data quantiles they are checked
against and the source of each into `traces/calibrated.py`, which
`traces/default.py` imports. What comes from where:

- compute (flash_device_profiles/raw_ai_benchmark_list.json): AI-Benchmark
  phones with more than 2 GB RAM (FedScale's filter), one entry per listed phone.
  Speed is taken as proportional to the AI Score (the score FLASH itself maps
  phones to, benchmark2score.json), so ms/sample is proportional to 1 / score.
  The scores form two clusters (phones with a 2019-class NPU score above
  10,000, the rest below), so compute is a mixture of two lognormals, each
  fitted to its cluster (median = geometric mean, sigma = std of the log),
  weighted by the cluster's share and truncated to the phones' range. The
  absolute scale comes from FLASH's on-device training-time grids
  (regression/<device>/*.json): one training step of a reference next-word
  model (vocabulary 10,000, embedding and LSTM width 250, sequence 10, batch 20)
  on the Redmi Note 8 and the Galaxy Note10, divided by the batch and by 3
  (FedScale's training / inference cost); ms x score, averaged (geometric mean)
  over the two devices, converts scores.
- network (flash_device_profiles/speed_distri.json): 19 real users' mean and
  std of download and upload speed (KB/s, as FLASH reads them; x8 for kbps).
  Lognormal median = geometric mean of the users' means; sigma combines the
  spread between users and each user's own variation (log(1 + cv^2)); the
  up/down correlation is that of the users' log means. Sigma is raised, where
  needed, to the smallest value that gives the order-of-magnitude spread
  FedScale reports for MobiPerf (95th / 5th percentile = 10): 19 users cannot
  show the tails of 100k+.
- availability (flash_trace_aggregates_and_aibenchmark_soc/aggregated_durations.json):
  per-device charging time of 1,000 real devices over about a week, taken as a
  week (clipped at 168 h). night_logit, day_logit, habit_sigma and
  night_median_h are fitted (a coarse grid, then Nelder-Mead, on 20,000
  generated devices with a fixed seed) so that the generator's weekly online
  hours match the devices' 10/25/50/75/90th percentiles and mean; the slot
  shape (bedtime, daytime top-ups) is assumed (traces/default.py, ASSUMED).
- compute cost of a model (COMPUTE_COST, for --compute_model=flops;
  flash_device_profiles/regression and the AI-Benchmark SoC table): the
  coefficients of `tf_fedscale.model_cost` fitted to all 60,000 points of the
  three phones' grids (traces/flash_grids.py; `python -m
  tf_fedscale.traces.validate_compute` measures how well they predict a phone
  left out).
"""

import dataclasses
import json
import os
import pprint
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
import numpy as np

from tf_fedscale.traces import flash_grids

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SHARED_DIR = os.path.join(REPO_ROOT, '..', 'shared')
OUTPUT = os.path.join(REPO_ROOT, 'traces', 'calibrated.py')
FLASH = os.path.join('datasets', 'flash_device_profiles')
AGGREGATES = os.path.join('datasets', 'flash_trace_aggregates_and_aibenchmark_soc')

MIN_RAM_GB = 2.0  # FedScale keeps devices with more than 2 GB of RAM
NPU_SPLIT_SCORE = 10_000.0  # the gap between the two clusters of AI Scores
BACKWARD_FACTOR = 3.0  # FedScale's training / inference cost per sample
ANCHORS = {'redmi_note8': 'Xiaomi Redmi Note 8', 'sumsung_note10': 'Samsung Galaxy Note10'}
KBYTE_PER_S_TO_KBPS = 8.0
Z95 = 1.6448536269514722  # standard normal 95th percentile
ORDER_OF_MAGNITUDE_SIGMA = float(np.log(10.0) / (2 * Z95))  # p95 / p5 = 10
WEEK_H = 168.0
FIT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
FIT_DEVICES = 20_000
FIT_SEED = 12345



def _read_json(shared_dir: str, *parts: str):
  with open(os.path.join(shared_dir, *parts)) as f:
    return json.load(f)


def ai_benchmark_phones(shared_dir: str) -> list[dict]:
  """AI-Benchmark rows: {'model', 'ram_gb', 'ai_score'}."""
  rows = _read_json(shared_dir, FLASH, 'raw_ai_benchmark_list.json')
  return [{'model': r['Model'], 'ram_gb': float(r['RAM'].removesuffix('GB')),
           'ai_score': float(r['AI_Score'].split()[0])} for r in rows]


def reference_training_s(shared_dir: str, device: str) -> float:
  """Seconds of one training step of the reference model on a FLASH device."""
  total = 0.0
  for layer, point in flash_grids.REFERENCE_LAYERS.items():
    grid = _read_json(shared_dir, FLASH, 'regression', device, f'{layer}.json')
    x = np.asarray(grid['X'], np.float64)
    hit = np.flatnonzero(np.all(np.isclose(x, point), axis=1))
    if hit.size != 1:
      raise ValueError(f'{device}/{layer}.json: grid point {point} found {hit.size} times.')
    total += float(np.asarray(grid['Y'], np.float64).ravel()[hit[0]])
  return total


def fit_compute(shared_dir: str) -> tuple[dict, dict]:
  """(fitted params, diagnostics) of compute ms per sample."""
  phones = ai_benchmark_phones(shared_dir)
  scores = np.array([p['ai_score'] for p in phones if p['ram_gb'] > MIN_RAM_GB])
  anchors_ms, anchor_scores = {}, {}
  for device, model in ANCHORS.items():
    entries = [p['ai_score'] for p in phones if p['model'] == model]
    anchor_scores[device] = float(np.exp(np.mean(np.log(entries))))
    anchors_ms[device] = (1000.0 * reference_training_s(shared_dir, device)
                          / flash_grids.REFERENCE_BATCH / BACKWARD_FACTOR)
  # ms/sample = scale / AI Score, the scale from the two measured phones.
  scale = float(np.exp(np.mean([np.log(anchors_ms[d] * anchor_scores[d])
                                for d in ANCHORS])))
  npu = scores >= NPU_SPLIT_SCORE
  fitted = {}
  for prefix, cluster in (('compute', scores[~npu]), ('compute_npu', scores[npu])):
    log_scores = np.log(cluster)
    fitted[f'{prefix}_median_ms'] = float(scale / np.exp(log_scores.mean()))
    fitted[f'{prefix}_sigma'] = float(log_scores.std(ddof=1))
  fitted.update(compute_npu_fraction=float(npu.mean()),
                compute_min_ms=float(scale / scores.max()),
                compute_max_ms=float(scale / scores.min()))
  first, second = ANCHORS
  diagnostics = dict(
      phones=len(scores), scale_ms_times_score=scale,
      anchor_inference_ms=anchors_ms, anchor_ai_score=anchor_scores,
      anchor_speed_ratio_measured=anchors_ms[first] / anchors_ms[second],
      anchor_speed_ratio_from_scores=anchor_scores[second] / anchor_scores[first],
      phone_ms_quantiles=_rounded(dict(zip(FIT_QUANTILES, np.quantile(
          scale / scores, FIT_QUANTILES).tolist()))))
  return fitted, diagnostics


def fit_network(shared_dir: str) -> tuple[dict, dict]:
  """(fitted params, diagnostics) of download and upload kbps."""
  users = _read_json(shared_dir, FLASH, 'speed_distri.json').values()
  fitted, diagnostics = {}, {'users': len(users)}
  logs = {}
  for direction in ('down', 'up'):
    mean = np.array([u[f'{direction}_u'] for u in users]) * KBYTE_PER_S_TO_KBPS
    std = np.array([u[f'{direction}_sigma'] for u in users]) * KBYTE_PER_S_TO_KBPS
    logs[direction] = np.log(mean)
    between = float(logs[direction].var(ddof=1))
    within = float(np.mean(np.log1p((std / mean) ** 2)))
    sigma = float(np.sqrt(between + within))
    name = 'download' if direction == 'down' else 'upload'
    fitted[f'{name}_median_kbps'] = float(np.exp(logs[direction].mean()))
    fitted[f'{name}_sigma'] = max(sigma, ORDER_OF_MAGNITUDE_SIGMA)
    diagnostics[f'{name}_sigma_flash'] = sigma
    diagnostics[f'{name}_user_mean_kbps_quantiles'] = _rounded(dict(zip(
        FIT_QUANTILES, np.quantile(mean, FIT_QUANTILES).tolist())))
  fitted['up_down_correlation'] = float(np.corrcoef(logs['down'], logs['up'])[0, 1])
  diagnostics['order_of_magnitude_sigma'] = ORDER_OF_MAGNITUDE_SIGMA
  return fitted, diagnostics


def fit_compute_cost(shared_dir: str) -> tuple[dict, dict]:
  """(StepCoefficients as a dict, diagnostics): fitted on every measured phone."""
  speeds = flash_grids.phone_speeds(shared_dir)
  grids = [flash_grids.read_grid(shared_dir, phone) for phone in speeds]
  coefficients = dataclasses.asdict(flash_grids.fit(grids, speeds))
  return coefficients, dict(phone_cpu_f_score=speeds)


def weekly_charging_hours(shared_dir: str) -> np.ndarray:
  """Charging hours of each real device over its (about a week) trace, <= 168."""
  rows = _read_json(shared_dir, AGGREGATES, 'aggregated_durations.json')
  seconds = np.array([r['battery_charged_on_duration'] for r in rows], np.float64)
  return np.minimum(seconds / 3600.0, WEEK_H)


def availability_targets(hours: np.ndarray) -> dict:
  return dict(weekly_online_hours_quantiles=_rounded(dict(zip(
      FIT_QUANTILES, np.quantile(hours, FIT_QUANTILES).tolist()))),
              mean_online_fraction=round(float(hours.mean() / WEEK_H), 4),
              devices=len(hours))


def generated_weekly_hours(params, num_devices: int = FIT_DEVICES,
                           seed: int = FIT_SEED) -> np.ndarray:
  from tf_fedscale.traces import default  # pylint: disable=g-import-not-at-top
  from tf_fedscale.traces import stats  # pylint: disable=g-import-not-at-top
  trace = default.generate_availability(num_devices, seed, params)
  return stats.online_fraction_per_device(trace) * WEEK_H


def _availability_loss(hours: np.ndarray, target: dict) -> float:
  qs = np.quantile(hours, FIT_QUANTILES)
  want = np.array(list(target['weekly_online_hours_quantiles'].values()))
  quantile_err = np.log1p(qs) - np.log1p(want)
  mean_err = hours.mean() / WEEK_H / target['mean_online_fraction'] - 1.0
  return float(np.sum(quantile_err ** 2) + mean_err ** 2)


def fit_availability(shared_dir: str, fitted: dict) -> tuple[dict, dict]:
  """(fitted params, diagnostics): a coarse grid, then Nelder-Mead from its three
  best points, on generated weekly online hours (fixed seed: deterministic)."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  from tf_fedscale.traces import default  # pylint: disable=g-import-not-at-top
  target = availability_targets(weekly_charging_hours(shared_dir))

  def params_of(x):
    return default.params_from(dict(
        fitted, night_logit=float(x[0]), day_logit=float(x[1]),
        habit_sigma=float(np.exp(x[2])), night_median_h=float(np.exp(x[3]))))

  def loss(x, num_devices=FIT_DEVICES):
    return _availability_loss(generated_weekly_hours(params_of(x), num_devices), target)

  grid = [np.array([nl, dl, np.log(hs), np.log(nm)])
          for nl in (-2.0, -1.0, 0.0, 1.0) for dl in (-3.0, -1.5, 0.0, 1.5)
          for hs in (1.0, 1.5, 2.0) for nm in (4.0, 6.0, 8.0, 10.0)]
  grid.sort(key=lambda x: loss(x, FIT_DEVICES // 5))
  best = None
  for start in grid[:3]:
    simplex = np.vstack([start, start + 0.25 * np.eye(len(start))])
    result = optimize.minimize(loss, start, method='Nelder-Mead', options=dict(
        initial_simplex=simplex, xatol=1e-3, fatol=1e-5, maxiter=400))
    if best is None or result.fun < best.fun:
      best = result
  params = params_of(best.x)
  fitted = dict(habit_sigma=params.habit_sigma, night_logit=params.night_logit,
                night_median_h=params.night_median_h, day_logit=params.day_logit)
  diagnostics = dict(loss=float(best.fun),
                     generated=availability_targets(generated_weekly_hours(params)))
  return fitted, dict(target=target, **diagnostics)


def _rounded(values, digits: int = 4):
  """Floats to `digits` significant digits, recursively."""
  if isinstance(values, dict):
    return {k: _rounded(v, digits) for k, v in values.items()}
  if isinstance(values, float):
    return float(f'{values:.{digits}g}')
  return values


SOURCES = {
    'compute_median_ms': 'AI-Benchmark phones > 2 GB RAM with AI Score < 10,000: '
                         'scale / geometric-mean score; scale = ms x score of FLASH\'s '
                         'on-device training time of a reference LSTM step (Redmi Note 8, '
                         'Galaxy Note10) / batch / 3',
    'compute_sigma': 'std of log AI Score of those phones',
    'compute_npu_median_ms': 'the same for phones with AI Score >= 10,000 (NPU)',
    'compute_npu_sigma': 'std of log AI Score of those phones',
    'compute_npu_fraction': 'share of AI-Benchmark phones > 2 GB RAM scoring >= 10,000',
    'compute_min_ms': 'fastest AI-Benchmark phone > 2 GB RAM, same scale',
    'compute_max_ms': 'slowest AI-Benchmark phone > 2 GB RAM, same scale',
    'download_median_kbps': 'geometric mean of 19 FLASH users\' mean download speed',
    'download_sigma': 'FLASH users (between + within), floored at the published '
                      'order-of-magnitude spread (p95/p5 = 10)',
    'upload_median_kbps': 'geometric mean of 19 FLASH users\' mean upload speed',
    'upload_sigma': 'FLASH users (between + within), floored at the published '
                    'order-of-magnitude spread (p95/p5 = 10)',
    'up_down_correlation': 'correlation of FLASH users\' log mean down and up speeds',
    'habit_sigma': 'fitted to weekly charging hours of 1,000 FLASH devices',
    'night_logit': 'fitted to weekly charging hours of 1,000 FLASH devices',
    'night_median_h': 'fitted to weekly charging hours of 1,000 FLASH devices',
    'day_logit': 'fitted to weekly charging hours of 1,000 FLASH devices',
}


def calibrate(shared_dir: str) -> dict:
  """Everything `traces/calibrated.py` holds: FITTED, COMPUTE_COST, TARGETS, DIAGNOSTICS."""
  compute, compute_diag = fit_compute(shared_dir)
  network, network_diag = fit_network(shared_dir)
  availability, availability_diag = fit_availability(shared_dir, {**compute, **network})
  compute_cost, compute_cost_diag = fit_compute_cost(shared_dir)
  fitted = _rounded({**compute, **network, **availability})
  targets = dict(compute_ms_quantiles=compute_diag['phone_ms_quantiles'],
                 **availability_diag['target'])
  diagnostics = _rounded(dict(compute=compute_diag, compute_cost=compute_cost_diag,
                              network=network_diag,
                              availability={k: v for k, v in availability_diag.items()
                                            if k != 'target'}))
  return dict(FITTED=fitted, COMPUTE_COST=_rounded(compute_cost), TARGETS=targets,
              DIAGNOSTICS=diagnostics)


def render(result: dict) -> str:
  """The text of traces/calibrated.py."""
  lines = ['"""Fitted parameters of the default trace generator: generated by',
           '`python -m tf_fedscale.traces.calibrate` from ../shared (FLASH files); do not edit.',
           '',
           'FITTED feeds traces/default.py; SOURCES says where each number comes from;',
           'COMPUTE_COST (tf_fedscale.model_cost.StepCoefficients) feeds',
           'traces/compute_model.py;',
           'TARGETS are the data quantiles tests/traces_default_test.py checks the',
           'generator against; DIAGNOSTICS are for the record.',
           '"""', '']
  for name, value in (('FITTED', result['FITTED']), ('SOURCES', SOURCES),
                      ('COMPUTE_COST', result['COMPUTE_COST']),
                      ('TARGETS', result['TARGETS']),
                      ('DIAGNOSTICS', result['DIAGNOSTICS'])):
    lines.append(f'{name} = {pprint.pformat(value, width=88, sort_dicts=False)}')
    lines.append('')
  return '\n'.join(lines)


def define_flags() -> None:
  """The CLI's flags (defined only when run, so importing this module is free)."""
  flags.DEFINE_string('shared_dir', DEFAULT_SHARED_DIR,
                      'Directory holding datasets/flash_*.')
  flags.DEFINE_string('output', OUTPUT, 'Python module to write.')
  flags.DEFINE_bool('check', False,
                    'Only compare with the committed module; exit 1 if it differs.')


def main(argv: Sequence[str]) -> None:
  del argv
  args = flags.FLAGS
  if not os.path.isdir(os.path.join(args.shared_dir, FLASH)):
    print(f'error: --shared_dir: {args.shared_dir!r} holds no {FLASH}.', file=sys.stderr)
    sys.exit(2)
  text = render(calibrate(args.shared_dir))
  if args.check:
    with open(args.output) as f:
      same = f.read() == text
    print('calibrated parameters are up to date' if same else
          f'{args.output} differs from a fresh fit; run python -m tf_fedscale.traces.calibrate')
    sys.exit(0 if same else 1)
  with open(args.output, 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  define_flags()
  app.run(main)
