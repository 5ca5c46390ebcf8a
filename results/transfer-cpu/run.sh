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

source results/sweeps.sh  # run_sweeps, build_tables

if [ "${1:-}" != "--tables-only" ]; then
    bash "$OUT/teachers.sh"
    run_sweeps sst2-transfer-l2 sst2-transfer-l6 sst2-all-labels glue
fi
build_tables
