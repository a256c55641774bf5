#!/usr/bin/env bash
# After every member's LOSO run is kept in results/loso/ (loso_members.sh, keep_run.py): the
# nested choice among the candidates of default_model.py, its record, and the shipped default
# `emodb-committee` (the winner on all speakers, committee_mlp, with its members inside its
# folder; its test-time warps come from the nested record).
#   bash experiments/selection/ship_default.sh
set -euo pipefail
ser-jax select --candidates experiments/selection/default_model.py --runs results/loso \
  --out runs/select/default
python experiments/keep_run.py runs/select/default results/select/default
python - <<'PY'
import json, sys
s = json.load(open("results/select/default/nested_summary.json"))
w = s["winner"]
print("winner:", w["candidate"], w["view"], "members:", s["candidates"][w["candidate"]])
if w["candidate"] != "committee_mlp":
    sys.exit("the winner is not committee_mlp: ship it with its own members and weights")
PY
ser-jax package --name emodb-committee --nested results/select/default --weights 1,2,1,2 \
  --members emodb-cnn-lstm,emodb-bilstm-attention,emodb-functionals-pitch,emodb-cepstral-mlp
