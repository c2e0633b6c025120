#!/bin/sh
# Per-GPU throughput of the in-process engine: FEMNIST-CNN rounds on 1, 2, ... all
# GPUs TensorFlow sees (--execution=inprocess:N), one benchmark run each.
# Not measured by the project: the development machine has no GPU.
#   sh benchmarks/gpu_throughput.sh            # CLIENTS=400 ROUNDS=5 by default
# Prints one line per GPU count: clients/s of the whole round and per GPU, and the
# ratio to sgd_bound (plain TF on one device); the JSON lines go to $OUT.
set -eu
CLIENTS=${CLIENTS:-400}
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-gpu_throughput.jsonl}
PYTHON=${PYTHON:-python}
gpus=$($PYTHON -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null)
if [ "$gpus" -lt 1 ]; then
  echo "error: TensorFlow sees no GPU; this script measures GPUs (see README, Execution and scale)" >&2
  exit 2
fi
: > "$OUT"
n=1
while [ "$n" -le "$gpus" ]; do
  $PYTHON -m tf_fedscale.experiments.benchmark --workload=femnist_cnn --execution="inprocess:$n" \
      --what=sgd_bound,tf_fedscale --clients_per_round="$CLIENTS" --rounds="$ROUNDS" \
      | tail -n 1 >> "$OUT"
  n=$((n + 1))
done
$PYTHON - "$OUT" <<'PY'
import json, sys
for line in open(sys.argv[1]):
  s = json.loads(line)
  n = int(s['execution'].split(':')[1])
  rate = s['clients_per_round'] / s['tf_fedscale_seconds']
  print(f"inprocess:{n}: {rate:.1f} clients/s, {rate / n:.1f} per GPU, "
        f"{s['tf_fedscale_over_sgd_bound']}x sgd_bound")
PY
