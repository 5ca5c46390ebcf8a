#!/usr/bin/env bash
# Regenerate results/adaptive-seeds (issue 26): run the fixed 10-seed sweep of config.yaml (an interrupted one is
# resumed), copy its trials CSV, sweep.json and log here, then the leaderboard of all 10 seeds and the replay of the
# adaptive-seed rule on it (min 3, max 10 seeds, tolerance 1 point): trials it would have spent, same decisions.
#   bash results/adaptive-seeds/run.sh                 # the sweep (about an hour on 2 CPU cores), then the tables
#   bash results/adaptive-seeds/run.sh --tables-only   # only rebuild the tables from the committed CSV
#   bash results/adaptive-seeds/run.sh --costs   # re-measure the students' inference cost here, then the tables
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/adaptive-seeds
MAKD=${MAKD:-.venv/bin/makd}
PYTHON=${PYTHON:-.venv/bin/python}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
EXP=runs/adaptive-seeds-fixed10
source results/sweeps.sh  # measure_costs, costs_option
if [ "${1:-}" = "--costs" ]; then
    measure_costs "$OUT/config.yaml"
elif [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    resume=""; if [ -d "$EXP" ]; then resume="--resume"; fi
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: makd sweep $OUT/config.yaml $resume" >> "$OUT/logs/sweep.txt"
    "$MAKD" sweep "$OUT/config.yaml" --glue-dir "$GLUE_DIR" $resume >> "$OUT/logs/sweep.txt" 2>&1
    cp "$EXP/trials.csv" "$OUT/trials.csv"
    cp "$EXP/sweep.json" "$OUT/sweep.json"
fi
if [ -f "$OUT/trials.csv" ]; then
    mkdir -p "$OUT/tables"
    # shellcheck disable=SC2046  # costs_option is empty or two words without spaces
    "$MAKD" leaderboard "$OUT/trials.csv" $(costs_option) --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md"
    "$PYTHON" -m bench.adaptive_seeds "$OUT/trials.csv" --min 3 --max 10 --tolerance 1.0 > "$OUT/replay.md.tmp"
    mv "$OUT/replay.md.tmp" "$OUT/replay.md"
fi
