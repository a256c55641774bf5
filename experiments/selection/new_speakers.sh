#!/usr/bin/env bash
# The nested choice for new speakers (candidates: new_speakers.py), seed by seed.
#   SER_EMODB_DIR=... bash experiments/selection/new_speakers.sh
# Member runs: seed 0 in results/loso (loso_members.sh), seed 1 in results/loso_s1 (the same
# commands with --config.seed=1); the openSMILE member for both seeds (deterministic: the seeds
# differ only in the networks). Each cv directory is kept with experiments/keep_run.py.
set -euo pipefail
for seed in 0 1; do
  out=runs/loso; [ "$seed" = 1 ] && out=runs/loso_s1
  [ -f "$out/opensmile_compare/cv_summary.json" ] || ser-jax cv \
    --config experiments/configs/opensmile_compare.py --config.train.progress=False \
    --seeds 1 --config.seed="$seed" --workdir "$out/opensmile_compare"
  [ -d "results/${out#runs/}/opensmile_compare" ] || python experiments/keep_run.py \
    "$out/opensmile_compare" "results/${out#runs/}/opensmile_compare"
done
# One seed as soon as its runs are kept; both (mean ± std over seeds) when seed 1's are.
ser-jax select --candidates experiments/selection/new_speakers.py --runs results/loso \
  --out runs/select/new_speakers_s0
python experiments/keep_run.py runs/select/new_speakers_s0 results/select/new_speakers_s0
if [ -f results/loso_s1/cnn_lstm/cv_summary.json ] && [ -f results/loso_s1/bilstm_attention/cv_summary.json ]; then
  ser-jax select --candidates experiments/selection/new_speakers.py \
    --runs results/loso,results/loso_s1 --out runs/select/new_speakers
  python experiments/keep_run.py runs/select/new_speakers results/select/new_speakers
fi
