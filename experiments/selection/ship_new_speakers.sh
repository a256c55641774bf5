#!/usr/bin/env bash
# After new_speakers.sh has kept the two-seed nested choice in results/select/new_speakers: ship
# its winner (the choice made on all 8 speakers, plain protocol) as the default
# `emodb-committee`, its members kept in its folder, trained on all 8 speakers; the all-JAX
# committee it replaces stays shipped as `emodb-committee-jax` (the one ONNX can export: the
# openSMILE member runs outside JAX).
#   SER_EMODB_DIR=... bash experiments/selection/ship_new_speakers.sh
set -euo pipefail
P=ser_jax/pretrained
nested=results/select/new_speakers
wav="$SER_EMODB_DIR/wav"; [ -d "$wav" ] || wav="$SER_EMODB_DIR"
refs=(--reference "$wav/03a01Fa.wav" --reference "$wav/08a01Wa.wav" --reference "$wav/13a05Tc.wav")
# the winner's members (as shipped names) and weights, from the candidates file
read -r members weights < <(python - "$nested" <<'PY'
import json, runpy, sys
s = json.load(open(f"{sys.argv[1]}/nested_summary.json"))
cands = runpy.run_path("experiments/selection/new_speakers.py")["CANDIDATES"]
chosen = cands[s["winner"]["candidate"]]
names = {"cnn_lstm": "emodb-cnn-lstm", "opensmile_compare": "emodb-opensmile"}
shipped = [names.get(k, "emodb-" + k.replace("_", "-")) for k in chosen]
print(",".join(shipped), ",".join(str(w) for w in chosen.values()))
PY
)
echo "winner: members $members, weights $weights"
# the all-JAX committee keeps its name apart (once)
[ -d "$P/emodb-committee-jax" ] || git mv "$P/emodb-committee" "$P/emodb-committee-jax"
mkdir -p "$P/emodb-committee"
for m in ${members//,/ }; do
  [ "$m" = emodb-cnn-lstm ] && continue
  [ -d "$P/emodb-committee/$m" ] && continue
  if [ "$m" = emodb-opensmile ]; then
    [ -f runs/release_opensmile/results.json ] || ser-jax train \
      --config experiments/configs/opensmile_compare.py --config.data.split=all \
      --config.seed=0 --config.train.progress=False --workdir runs/release_opensmile
    ser-jax package --run runs/release_opensmile --name emodb-opensmile \
      --loso results/loso/opensmile_compare "${refs[@]}"
    mv "$P/emodb-opensmile" "$P/emodb-committee/emodb-opensmile"
  else
    git mv "$P/emodb-committee-jax/$m" "$P/emodb-committee/$m"  # one copy, shared below
  fi
done
ser-jax package --name emodb-committee --nested "$nested" --weights "$weights" \
  --members "$members"
# the all-JAX committee's own card and committee.json under its new name; the members both
# committees share stay in the default's folder (COMMITTEE/MEMBER names them), one copy each
ser-jax package --name emodb-committee-jax --nested results/select/default --weights 1,2,1,2 \
  --members emodb-cnn-lstm,emodb-committee/emodb-bilstm-attention,emodb-functionals-pitch,emodb-committee/emodb-cepstral-mlp
