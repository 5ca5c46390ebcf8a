#!/usr/bin/env bash
# Regenerate results/glue-teachers (issue 22): for each sweep (configs/: search with ASHA, then the final stage,
# selection on a 10% train hold-out), run it (an interrupted sweep is resumed), copy its trials CSV, sweep.json and
# log here, then rebuild the leaderboard, the paper-style table, the lambda plot and the report from the CSVs.
#   bash results/glue-teachers/run.sh                            # every sweep, in order
#   SWEEPS="finetuned-2x128" bash results/glue-teachers/run.sh   # one of them
#   SWEEPS="paper-minilm" TASKS="rte" bash results/glue-teachers/run.sh   # one piece: that sweep's RTE trials
#   bash results/glue-teachers/run.sh --tables-only              # only rebuild the tables from the CSVs
#   bash results/glue-teachers/run.sh --costs    # re-measure each student's inference cost here, then the tables
# A piece (`makd sweep --tasks`) is its own experiment, runs/NAME-TASK, and its files are named SWEEP-TASK here:
# a sweep longer than a session runs in pieces that each finish within one.
# Tables are committed only from finished sweeps (a sweep's CSV is copied when its `makd sweep` returns).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/glue-teachers
MAKD=${MAKD:-.venv/bin/makd}
GLUE_DIR=${GLUE_DIR:-../shared/glue}

source results/sweeps.sh  # run_sweeps, build_tables

if [ "${1:-}" = "--costs" ]; then
    measure_costs "$OUT"/configs/*.yaml
elif [ "${1:-}" != "--tables-only" ]; then
    run_sweeps finetuned-2x128 paper-2x128 finetuned-minilm paper-minilm
fi
build_tables
