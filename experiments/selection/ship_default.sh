#!/usr/bin/env bash
# After every member's LOSO run is kept in results/loso/ (loso_members.sh, keep_run.py): the
# nested choice among the candidates of default_model.py, its record, and (for a committee)
# the shipped default `emodb-committee` with its members inside its folder.
#   bash experiments/selection/ship_default.sh
set -euo pipefail
ser-jax select --candidates experiments/selection/default_model.py --runs results/loso \
  --out runs/select/default
python experiments/keep_run.py runs/select/default results/select/default
python - <<'PY'
import json
s = json.load(open("results/select/default/nested_summary.json"))
w = s["winner"]
print("winner:", w["candidate"], w["view"], "members:", s["candidates"][w["candidate"]])
PY
