#!/usr/bin/env bash
# One accelerator run of the benchmarks, each with float32 and with bf16 matrix products
# (JAX_DEFAULT_MATMUL_PRECISION=bfloat16: convolutions and dots take one bf16 pass; the
# parameters, activations and optimiser state stay float32). Sized to finish in about 8 minutes
# on one H100; every report lands as JSON (with its command, commit and processor) under --out.
#
#   bash benchmarks/gpu.sh [--tiny] [--out DIR] [--precisions float32,bfloat16]
#
# Rows:
#   train_step_<p>.json  one model, batch 32 x 2 s, the best config's network (no PyTorch)
#   members_<p>.json     1, 8, 32 and 64 members vmapped in one compiled step vs one model
#   frontend_<p>.json    the jit log-mel's real-time factor (audio seconds per second)
#   loso_<p>/            a best-config LOSO, folds as members of one step (cv_summary.json;
#                        wall.json: its wall seconds); on Emo-DB when SER_EMODB_DIR is set,
#                        otherwise on a synthetic corpus of Emo-DB's shape (8 speakers, 7
#                        classes, 49 clips each), which the output says
#
# --tiny: smoke sizes on whatever device there is (the test suite runs it on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
out=runs/bench_gpu
precisions=float32,bfloat16
tiny=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=(--tiny); precisions=float32; shift ;;
    --out) out="$2"; shift 2 ;;
    --precisions) precisions="$2"; shift 2 ;;
    *) echo "gpu.sh: unknown argument $1 (use --tiny, --out DIR, --precisions LIST)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
"$PY" -c "import jax; d = jax.devices()[0]; print(f'device: {d.platform} {d.device_kind} x {jax.device_count()}')"

if [ ${#tiny[@]} -gt 0 ]; then
  members=(--members 2 --steps 1 --warmup 0)
  loso=(--config.model.filters='(4,4,8,8)' --config.model.lstm_hidden=8 --config.train.epochs=1
        --config.data.demo.speakers=2 --config.data.demo.utterances_per_class=2
        --config.data.demo.seconds='(0.8,1.2)' --config.train.batch_size=4)
else
  members=(--members 1,8,32,64 --steps 5 --warmup 2)
  loso=(--config.data.demo.speakers=8 --config.data.demo.utterances_per_class=7)
fi
if [ -n "${SER_EMODB_DIR:-}" ] && [ ${#tiny[@]} -eq 0 ]; then
  corpus=(--config.data.root="$SER_EMODB_DIR")
  echo "LOSO corpus: Emo-DB at $SER_EMODB_DIR"
else
  corpus=(--config.data.corpus=demo --config.data.root= "${loso[@]}")
  echo "LOSO corpus: synthetic (SER_EMODB_DIR unset or --tiny): wall time only, no accuracy"
fi

IFS=, read -r -a precs <<< "$precisions"
for p in "${precs[@]}"; do
  export JAX_DEFAULT_MATMUL_PRECISION="$p"
  echo "== matrix products: $p"
  "$PY" benchmarks/train_step.py --network best --no-torch --devices 1 "${tiny[@]}" \
    --json "$out/train_step_$p.json"
  "$PY" benchmarks/members.py --network best --loop vmap --no-torch --no-devices \
    "${tiny[@]}" "${members[@]}" --json "$out/members_$p.json"
  "$PY" benchmarks/frontend.py "${tiny[@]}" --json "$out/frontend_$p.json"
  rm -rf "$out/loso_$p"
  start=$(date +%s.%N)
  "$PY" -m ser_jax cv --config experiments/configs/best.py --seeds 1 --config.train.members=8 \
    --config.train.progress=False "${corpus[@]}" --workdir "$out/loso_$p" > "$out/loso_$p.log"
  end=$(date +%s.%N)
  "$PY" - "$out/loso_$p" "$start" "$end" <<'EOF'
import json, sys
from pathlib import Path
run, start, end = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
summary = json.loads((run / "cv_summary.json").read_text())
(run / "wall.json").write_text(json.dumps({"wall_seconds": end - start}) + "\n")
print(f"LOSO, folds as members: {end - start:.0f} s wall; {len(summary['speakers'])} folds; pooled UAR {summary['pooled']['test_uar']['mean']:.3f}")
EOF
done
echo "reports in $out"
