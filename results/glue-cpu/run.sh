#!/usr/bin/env bash
# Regenerate results/glue-cpu: run each sweep (configs/), copy its trials CSV and sweep.json here, then rebuild the
# leaderboard, the paper-style table and the lambda plot from the committed CSVs.
#   bash results/glue-cpu/run.sh                 # all sweeps (an interrupted one is resumed)
#   SWEEPS="2x384 2x128" bash results/glue-cpu/run.sh
#   bash results/glue-cpu/run.sh --tables-only   # only rebuild the tables from the CSVs
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/glue-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
if [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    for name in ${SWEEPS:-2x384 2x384-tau2 2x128 6x384}; do
        exp="runs/glue-cpu-$name"
        resume=""
        if [ -d "$exp" ]; then resume="--resume"; fi
        echo "== sweep $name ($(date -u +%H:%M:%S))"
        "$MAKD" sweep "$OUT/configs/$name.yaml" --glue-dir "$GLUE_DIR" --quiet $resume > "$OUT/logs/$name.txt"
        cp "$exp/trials.csv" "$OUT/trials-$name.csv"
        cp "$exp/sweep.json" "$OUT/sweep-$name.json"
    done
fi
# The leaderboard CSV lives in tables/ so that `makd leaderboard results/glue-cpu/*.csv` sees only trials CSVs.
mkdir -p "$OUT/tables"
"$MAKD" leaderboard "$OUT"/trials-*.csv --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md" \
    --plot "$OUT/lambda.png"
# The three-seed tau-1 sweeps alone: their best-lambda means and seed spreads, without the one-seed tau-2 sweep.
"$MAKD" leaderboard "$OUT/trials-2x384.csv" "$OUT/trials-2x128.csv" --csv "$OUT/tables/leaderboard-tau1-3seeds.csv"
