#!/usr/bin/env bash
# Regenerate results/glue-cpu: run each sweep (configs/: search with ASHA, then the final stage, selection on a
# train hold-out), copy its trials CSV, sweep.json and log here, then rebuild the leaderboard, the paper-style table
# and the lambda plot from the committed CSVs.
#   bash results/glue-cpu/run.sh                  # both sweeps (an interrupted sweep is resumed)
#   SWEEPS="2x128" bash results/glue-cpu/run.sh   # one of them
#   bash results/glue-cpu/run.sh --tables-only    # only rebuild the tables from the CSVs
#   bash results/glue-cpu/run.sh --costs          # re-measure each student's inference cost here, then the tables
# The earlier, one-stage results and their script are in earlier/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/glue-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
source results/sweeps.sh  # measure_costs, costs_option

if [ "${1:-}" = "--costs" ]; then
    measure_costs "$OUT"/configs/*.yaml
elif [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    for name in ${SWEEPS-2x384 2x128}; do
        config="$OUT/configs/$name.yaml"
        exp="runs/$(sed -n 's/^name: *//p' "$config")"
        resume=""; if [ -d "$exp" ]; then resume="--resume"; fi
        echo "== sweep $name ($(date -u +%H:%M:%S))"
        "$MAKD" sweep "$config" --glue-dir "$GLUE_DIR" --quiet $resume > "$OUT/logs/$name.txt"
        cp "$exp/trials.csv" "$OUT/trials-$name.csv"
        cp "$exp/sweep.json" "$OUT/sweep-$name.json"
    done
fi
# The leaderboard CSV lives in tables/ so that `makd leaderboard results/glue-cpu/*.csv` sees only trials CSVs.
mkdir -p "$OUT/tables"
# shellcheck disable=SC2046  # costs_option is empty or two words without spaces
"$MAKD" leaderboard "$OUT"/trials-*.csv $(costs_option) --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md" \
    --plot "$OUT/lambda.png"
# The search stage alone (ASHA-stopped trials included), for comparison with the final stage's table.
"$MAKD" leaderboard "$OUT"/trials-*.csv --stage search --markdown "$OUT/tables/search-stage.md"
# The HTML report of the final stage, and the screenshot the README shows (headless Chromium, when installed).
"$MAKD" report "$OUT"/trials-*.csv $(costs_option) -o "$OUT/report.html"
if command -v chromium >/dev/null; then
    .venv/bin/python -m tests.browser "$OUT/report.html" "$OUT/report.png" > /dev/null
fi
