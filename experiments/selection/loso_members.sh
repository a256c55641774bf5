#!/usr/bin/env bash
# LOSO runs (seed 0) of every member the default's candidates use (default_model.py), each
# test speaker also scored with warps of ±6 semitones and speaker-adaptive statistics beside.
#   SER_EMODB_DIR=... bash experiments/selection/loso_members.sh runs/loso
set -euo pipefail
out="${1:-runs/loso}"
common=(--config.train.progress=False --config.eval.speaker_bn=True
  '--config.eval.tta_semitones=(-6.0,6.0)' --seeds 1)
cv() { name=$1; shift; [ -f "$out/$name/cv_summary.json" ] || python -m ser_jax cv "$@" "${common[@]}" --workdir "$out/$name"; }
cv cepstral_mlp --config experiments/configs/cepstral_vtlp.py '--config.model.mlp_hidden=(256,)' --config.model.dropout=0.3
cv cepstral_vtlp --config experiments/configs/cepstral_vtlp.py
cv cepstral_shuffled --config experiments/configs/functionals_mfcc_shuffled.py
cv functionals_pitch --config experiments/configs/functionals_pitch.py
cv cnn_lstm --config experiments/configs/best.py
cv bilstm_attention --config experiments/configs/bilstm_attention.py
