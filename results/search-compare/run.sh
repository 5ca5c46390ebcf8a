#!/usr/bin/env bash
# Regenerate results/search-compare (issue 45, item 6): the same task, student, teacher, losses and final stage,
# searched three ways at the same trial budget per KD method (configs/: today's lambda grid, random search, Optuna's
# TPE), each sweep resumed when interrupted and its trials CSV copied here when it finishes; then one leaderboard per
# searcher (never pooled: each is its own search of the same methods). About 1.2 hours of 2 CPU cores (estimated).
#   bash results/search-compare/run.sh                    # every searcher, in order
#   SWEEPS="tpe" bash results/search-compare/run.sh       # one of them (about 25 minutes)
#   bash results/search-compare/run.sh --tables-only      # only rebuild the tables from the CSVs
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/search-compare
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}

source results/sweeps.sh  # run_sweeps

if [ "${1:-}" != "--tables-only" ]; then
    run_sweeps grid random tpe
fi
mkdir -p "$OUT/tables"
for searcher in grid random tpe; do
    if [ -f "$OUT/trials-$searcher.csv" ]; then
        "$MAKD" leaderboard "$OUT/trials-$searcher.csv" --csv "$OUT/tables/leaderboard-$searcher.csv" \
            --markdown "$OUT/tables/table-$searcher.md"
    fi
done
