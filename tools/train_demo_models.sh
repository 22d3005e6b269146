#!/usr/bin/env bash
# Reproduce the bundled demo models (models/demo*.pt, models/MODEL_CARD.md) from scratch on the offline data:
# data set -> teacher -> Ladon at each beta (stages a1, a2, b, c) -> rate-accuracy evaluation -> copy into models/.
# About 80 min on 2 CPU cores; `make demo-models` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
LADON=${LADON:-.venv/bin/ladon}
DATA=data/ladon-shapes

if [[ ! -f $DATA/meta.json ]]; then
    "$LADON" synth --out "$DATA" --n 2000 --seed 0 --size 160
fi
if [[ ! -f runs/offline/teacher/teacher.pt ]]; then
    "$LADON" train configs/offline/teacher.yaml
fi
for beta in 1.28 10.24; do
    if [[ ! -f runs/offline/ladon_beta$beta/model.pt ]]; then
        "$LADON" train "configs/offline/ladon_beta$beta.yaml"
    fi
done
"$LADON" eval configs/offline/eval.yaml

# Bundle: beta 1.28 is the demo default, beta 10.24 the low-rate model; the evaluation and the card go with them.
PY=$(dirname "$LADON")/python
mkdir -p models/demo_eval
cp runs/offline/ladon_beta1.28/model.pt models/demo.pt
cp runs/offline/ladon_beta10.24/model.pt models/demo_beta10.24.pt
cp runs/offline/eval/eval.json runs/offline/eval/eval.md runs/offline/eval/rate_accuracy.png models/demo_eval/
"$PY" tools/write_model_card.py --out models/MODEL_CARD.md
