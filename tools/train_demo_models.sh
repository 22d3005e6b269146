#!/usr/bin/env bash
# Reproduce the bundled demo models (models/demo*.pt, models/MODEL_CARD.md) from scratch on the offline data:
# data set -> teacher -> Ladon at each beta (stages a1, a2, b, c) -> rate-accuracy evaluation -> copy into models/.
# About 80 min on 2 CPU cores; `make demo-models` runs it. BETAS overrides the trained betas (default "1.28 10.24").
set -euo pipefail
cd "$(dirname "$0")/.."
LADON=${LADON:-.venv/bin/ladon}
BETAS=${BETAS:-"1.28 10.24"}
DATA=data/ladon-shapes

if [[ ! -f $DATA/meta.json ]]; then
    "$LADON" synth --out "$DATA" --n 2000 --seed 0 --size 160
fi
if [[ ! -f runs/offline/teacher/teacher.pt ]]; then
    "$LADON" train configs/offline/teacher.yaml
fi
for beta in $BETAS; do
    if [[ ! -f runs/offline/ladon_beta$beta/model.pt ]]; then
        "$LADON" train "configs/offline/ladon_beta$beta.yaml"
    fi
done
"$LADON" eval configs/offline/eval.yaml
