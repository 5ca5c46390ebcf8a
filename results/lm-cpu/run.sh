#!/usr/bin/env bash
# Regenerate results/lm-cpu (issue 27): run the sweep of config.yaml (an interrupted one is resumed), copy its
# trials CSV, sweep.json and log here, then rebuild the leaderboard, the paper-style table and the report.
#   bash results/lm-cpu/run.sh                 # the sweep (hours on 2 CPU cores), then the tables
#   bash results/lm-cpu/run.sh --tables-only   # only rebuild the tables from the committed CSV
# Tables are committed only from a finished sweep (its CSV is copied when `makd sweep` returns).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/lm-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
if [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    resume=""; if [ -d runs/lm-cpu ]; then resume="--resume"; fi
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: makd sweep $OUT/config.yaml $resume" >> "$OUT/logs/sweep.txt"
    "$MAKD" sweep "$OUT/config.yaml" --glue-dir "$GLUE_DIR" $resume >> "$OUT/logs/sweep.txt" 2>&1
    cp runs/lm-cpu/trials.csv "$OUT/trials.csv"
    cp runs/lm-cpu/sweep.json "$OUT/sweep.json"
fi
if [ -f "$OUT/trials.csv" ]; then
    mkdir -p "$OUT/tables"
    "$MAKD" leaderboard "$OUT/trials.csv" --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md"
    "$MAKD" leaderboard "$OUT/trials.csv" --stage search --markdown "$OUT/tables/search-stage.md"
    "$MAKD" report "$OUT/trials.csv" -o "$OUT/report.html"
fi
