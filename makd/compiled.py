"""`compile:` — torch.compile for a trial's student, with one compile cache per node.

A small student's GPU step is bound by kernel launches (results/bench-gpu: 9.6 of 21.8 ms in autograd's CPU side):
Inductor fuses kernels (`default`) and `reduce-overhead` replays the step as CUDA graphs. The price is the compile
(~45 s for 6x384 on an H100, paid by every new process) — too much for trials of seconds unless it is paid once:
Inductor's FX-graph and AOTAutograd caches key compiled code by graph, shapes and device, so makd points them at
one directory, $MAKD_HOME/compile, that every trial process on a node shares, and only the first trial of a shape
compiles; the others load (bench/gpu.py, section `compile`, measures both). Off by default (`compile: null`).

The student is compiled in place (`nn.Module.compile`, dynamic shapes: one graph for every batch width, whatever
order the widths come in), state_dict keys, checkpoints and fingerprints as the eager model's; a compiled trial
turns on torch's deterministic algorithms in its process. A compiled run is a function of its config (tested) but
not bit-identical to an eager one (fused kernels round differently, dropout draws its masks in the kernel), so
compare methods with `compile` set alike; ce and taylor at tau 1 still train identical students.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from makd.config import COMPILE_MODES  # `compile: null` (the default): eager
from makd.paths import makd_home

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir() -> Path:
    """Where compiled graphs live: $TORCHINDUCTOR_CACHE_DIR when the user set it, else $MAKD_HOME/compile. (torch
    writes its own default, /tmp/torchinductor_USER, into the variable the first time it looks, e.g. while
    transformers builds a model: that value is not the user's.)"""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    given = os.environ.get(CACHE_ENV)
    if given and os.path.abspath(given) != os.path.abspath(default_cache_dir()):
        return Path(given)
    return makd_home() / "compile"


def _prepare() -> None:
    """The node's cache: Inductor reads the variable at every cache lookup, so setting it in this (trial) process
    before the first compile is enough, and Ray's workers on a node see the same $MAKD_HOME. Deterministic kernels:
    without them a compiled CPU run that had first compiled its eval graphs (the inference-cost measurement) ended
    with weights a few 1e-9 apart from run to run; makd's `=` (taylor at tau 1 is ce's student, bit for bit) needs
    a run to be a function of its config. warn_only: an op with no deterministic kernel warns instead of failing."""
    os.environ[CACHE_ENV] = str(compile_cache_dir())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS asks for
    torch.use_deterministic_algorithms(True, warn_only=True)


def _mode(mode: str) -> str | None:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}: choose from {', '.join(COMPILE_MODES)}")
    return None if mode == "default" else mode


def compile_student(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """`model`, compiled in place for `mode` (a COMPILE_MODES entry)."""
    _prepare()
    model.compile(mode=_mode(mode), dynamic=True)
    return model


def compile_function(fn: Callable, mode: str) -> Callable:
    """A fused pack's vmapped forward, compiled for `mode`. Shapes are made dynamic only once they change (torch's
    default): with every dimension symbolic from the start, vmap's batched linear fails to trace (torch 2.13)."""
    _prepare()
    return torch.compile(fn, mode=_mode(mode))
