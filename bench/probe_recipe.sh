#!/bin/bash
# Recipe probes side by side on one GPU (equal steps; their train_s is not a speed), after the old/new speed runs.
# Usage: PROBES="a: b:lod_bias=3" STEPS=4000 BUDGET=0.5 DATA=.data/lego bash bench/probe_recipe.sh OUTDIR
out=${1:-/tmp/probes}; mkdir -p "$out"
for v in $PROBES; do
  name=${v%%:*}; set_=${v#*:}
  timeout ${T_PROBE:-420} python3 bench/rate_distortion.py "${DATA:-.data/lego}" --split val --eval-images 25 \
    --budgets "${BUDGET:-0.5}" --steps "${STEPS:-4000}" --set "$set_" --tag "_$name" --json "$out/probe_$name.json" \
    --plot "" > "$out/log_$name.txt" 2>&1 &
done
wait
for v in $PROBES; do echo "== ${v}"; grep -E "MB:|recipe:|Error|error" "$out/log_${v%%:*}.txt" | tail -4; done
