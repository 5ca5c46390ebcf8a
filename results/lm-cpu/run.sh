#!/usr/bin/env bash
# Regenerate results/lm-cpu (issue 27): run each piece of configs/ (one sweep per student; an interrupted one is
# resumed), copy its trials CSV, sweep.json and log here, then rebuild the leaderboard, the paper-style table and the
# report from the CSVs.
#   bash results/lm-cpu/run.sh                          # both pieces (about 2 hours each on 2 CPU cores)
#   PIECES="4-layers" bash results/lm-cpu/run.sh        # one of them (a session's worth)
#   bash results/lm-cpu/run.sh --tables-only            # only rebuild the tables from the committed CSVs
# Tables are built only from finished pieces (a piece's CSV is copied when its `makd sweep` returns).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/lm-cpu
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
if [ "${1:-}" != "--tables-only" ]; then
    mkdir -p "$OUT/logs"
    for name in ${PIECES-4-layers 6-layers}; do
        config="$OUT/configs/$name.yaml"
        exp="runs/$(sed -n 's/^name: *//p' "$config")"
        resume=""; if [ -d "$exp" ]; then resume="--resume"; fi
        echo "== piece $name ($(date -u +%H:%M:%S))"
        echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC: makd sweep $config $resume" >> "$OUT/logs/$name.txt"
        "$MAKD" sweep "$config" --glue-dir "$GLUE_DIR" $resume >> "$OUT/logs/$name.txt" 2>&1
        cp "$exp/trials.csv" "$OUT/trials-$name.csv"
        cp "$exp/sweep.json" "$OUT/sweep-$name.json"
    done
fi
if compgen -G "$OUT/trials-*.csv" > /dev/null; then
    mkdir -p "$OUT/tables"
    "$MAKD" leaderboard "$OUT"/trials-*.csv --csv "$OUT/tables/leaderboard.csv" --markdown "$OUT/table.md"
    "$MAKD" leaderboard "$OUT"/trials-*.csv --stage search --markdown "$OUT/tables/search-stage.md"
    "$MAKD" report "$OUT"/trials-*.csv -o "$OUT/report.html"
fi
