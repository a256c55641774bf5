#!/usr/bin/env bash
# ser_jax launcher: the same script runs locally and as a SLURM batch script.
#
#   ./launch.sh install                 pip install -e ".[dev]" (add EXTRAS="dev,cuda" for GPUs)
#   ./launch.sh demo                    train + evaluate on the synthetic demo corpus
#   ./launch.sh train  [flags]          ser-jax train --config ... --config.x=y --seeds N
#   ./launch.sh cv     [flags]          leave-one-speaker-out cross-validation
#   ./launch.sh eval   --run DIR [...]  ser-jax evaluate
#   ./launch.sh predict --run DIR FILE...
#   ./launch.sh sweep  SWEEP_FILE [--dry_run] [--emit_slurm]
#   ./launch.sh explore --data DIR
#   ./launch.sh test   [pytest args]    the test suite
#   ./launch.sh bench  [--tiny]         benchmarks/*.py (--tiny: each at a smoke-run size)
#
# On a cluster:  sbatch --nodes=2 --gres=gpu:8 launch.sh train --config experiments/configs/best.py
# Under sbatch the script re-launches itself with srun, one task per node; each task drives all
# GPUs of its node and jax.distributed.initialize() reads the SLURM environment.
#SBATCH --job-name=ser_jax
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" 2>/dev/null || true
[ -f pyproject.toml ] || cd "${SLURM_SUBMIT_DIR:-.}"

verb="${1:-help}"
shift || true
PY="${PYTHON:-python}"

in_batch_step() { [ -n "${SLURM_JOB_ID:-}" ] && [ -z "${SLURM_STEP_ID:-}" ]; }

run_ser() {
  if in_batch_step && [ "${SLURM_NNODES:-1}" -gt 1 ]; then
    exec srun --ntasks-per-node=1 "$PY" -m ser_jax "$@"
  fi
  exec "$PY" -m ser_jax "$@"
}

case "$verb" in
  install) exec "$PY" -m pip install -e ".[${EXTRAS:-dev}]" ;;
  demo)    run_ser train --workdir "${WORKDIR:-runs/demo}" "$@" ;;
  train)   run_ser train "$@" ;;
  cv)      run_ser cv "$@" ;;
  eval|evaluate) run_ser evaluate "$@" ;;
  predict) run_ser predict "$@" ;;
  explore) run_ser explore "$@" ;;
  sweep)   exec "$PY" -m ser_jax.sweep "$@" ;;
  test)    exec "$PY" -m pytest -q "$@" ;;
  bench)
    for b in benchmarks/*.py; do echo "== $b"; "$PY" "$b" "$@"; done ;;
  help|-h|--help) sed -n '2,20p' "$0" ;;
  *) echo "launch.sh: unknown verb '$verb' (try ./launch.sh help)" >&2; exit 2 ;;
esac
