#!/usr/bin/env bash
# Regenerate results/glue-teachers (issue 22): for each sweep (configs/: search with ASHA, then the final stage,
# selection on a 10% train hold-out), run it (an interrupted sweep is resumed), copy its trials CSV, sweep.json and
# log here, then rebuild the leaderboard, the paper-style table, the lambda plot and the report from the CSVs.
#   bash results/glue-teachers/run.sh                            # every sweep, in order
#   SWEEPS="finetuned-2x128" bash results/glue-teachers/run.sh   # one of them
#   SWEEPS="paper-minilm" TASKS="rte" bash results/glue-teachers/run.sh   # one piece: that sweep's RTE trials
#   bash results/glue-teachers/run.sh --tables-only              # only rebuild the tables from the CSVs
# A piece (`makd sweep --tasks`) is its own experiment, runs/NAME-TASK, and its files are named SWEEP-TASK here:
# a sweep longer than a session runs in pieces that each finish within one.
# Tables are committed only from finished sweeps (a sweep's CSV is copied when its `makd sweep` returns).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/glue-teachers
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}

if [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    for name in ${SWEEPS-finetuned-2x128 paper-2x128 finetuned-minilm paper-minilm}; do
        config="$OUT/configs/$name.yaml"
        exp="runs/$(sed -n 's/^name: *//p' "$config")"
        piece=(); if [ -n "${TASKS:-}" ]; then piece=(--tasks "$TASKS"); exp="$exp-${TASKS//,/-}"; name="$name-${TASKS//,/-}"; fi
        resume=""; if [ -d "$exp" ]; then resume="--resume"; fi   # makd sweep --resume also starts a sweep stopped early
        echo "== sweep $name ($(date -u +%H:%M:%S))"
        # a resumed sweep appends to its log, so the log keeps every piece the sweep ran in
        echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: makd sweep $config $resume ${piece[*]}" >> "$OUT/logs/$name.txt"
        "$MAKD" sweep "$config" --glue-dir "$GLUE_DIR" $resume "${piece[@]}" >> "$OUT/logs/$name.txt" 2>&1
        cp "$exp/trials.csv" "$OUT/trials-$name.csv"
        cp "$exp/sweep.json" "$OUT/sweep-$name.json"
    done
fi
if compgen -G "$OUT/trials-*.csv" > /dev/null; then
    mkdir -p "$OUT/tables"
    "$MAKD" leaderboard "$OUT"/trials-*.csv --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md" \
        --plot "$OUT/lambda.png"
    "$MAKD" leaderboard "$OUT"/trials-*.csv --stage search --markdown "$OUT/tables/search-stage.md"
    "$MAKD" report "$OUT"/trials-*.csv -o "$OUT/report.html"
fi
