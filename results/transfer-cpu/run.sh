#!/usr/bin/env bash
# Regenerate results/transfer-cpu (issue 42): first the teachers (teachers.sh: MPNet fine-tuned per task, cached),
# then each sweep of configs/ (search with ASHA, then the final stage; an interrupted sweep is resumed), copying each
# finished sweep's trials CSV, sweep.json and log here, then the tables, the λ figure and the report from the CSVs.
#   bash results/transfer-cpu/run.sh                                # every sweep, in order
#   SWEEPS="sst2-transfer-l2" bash results/transfer-cpu/run.sh       # one of them (a piece of about two hours)
#   SWEEPS="glue" TASKS="rte" bash results/transfer-cpu/run.sh       # one task of a sweep: its own experiment
#   bash results/transfer-cpu/run.sh --tables-only                  # only rebuild the tables from the CSVs
# Tables are committed only from finished sweeps (a sweep's CSV is copied when its `makd sweep` returns).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/transfer-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}

if [ "${1:-}" != "--tables-only" ]; then
    bash "$OUT/teachers.sh"
    mkdir -p "$OUT/logs"
    for name in ${SWEEPS-sst2-transfer-l2 sst2-transfer-l6 sst2-all-labels glue}; do
        config="$OUT/configs/$name.yaml"
        exp="runs/$(sed -n 's/^name: *//p' "$config")"
        piece=(); if [ -n "${TASKS:-}" ]; then piece=(--tasks "$TASKS"); exp="$exp-${TASKS//,/-}"; name="$name-${TASKS//,/-}"; fi
        resume=""; if [ -d "$exp" ]; then resume="--resume"; fi
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
