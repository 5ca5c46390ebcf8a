"""Profiles behind the benchmark tables: where a short trial's time goes, and what sets a trial's peak memory.

    python -m bench.profile_trial

A. Time: the benchmark-4 sweep (1 node, 1 CPU, 8 trials) with every trial run under cProfile; the merged profile's
   top entries and makd's own steps (student build, checkpoint, Ray report, optimizer, tokenisation) are printed.
B. Memory: peak RSS of one forward/backward of the longest RTE batch (32 x 128 tokens) through the 6x384 student,
   each variant in a fresh process: the whole batch, micro-batches of 16 and 8, and attention dropout off (the
   probe that found where the memory goes: on CPU, attention dropout sends SDPA to its math path).
Both go to results/bench/profile_trial.md.
"""

from __future__ import annotations

import cProfile
import functools
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROFILE_DIR_ENV = "MAKD_BENCH_PROFILE_DIR"
MEMORY_VARIANTS = ["batch 32", "micro-batches of 16", "micro-batches of 8", "batch 32, attention dropout off"]


def profiled_trial(config: dict, **kwargs) -> None:
    """makd_sweep.trial.distill_trial under cProfile; the profile is dumped even when ASHA or an error ends the trial."""
    from makd_sweep.trial import distill_trial

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        distill_trial(config, **kwargs)
    finally:
        profiler.disable()
        profiler.dump_stats(str(Path(os.environ[PROFILE_DIR_ENV]) / f"trial-{os.getpid()}-{time.time_ns()}.prof"))


def time_profile() -> str:
    from bench import common, scaling
    from makd_sweep import driver

    common.warm_bench_sweep(epochs=scaling.EPOCHS, max_train_samples=scaling.TRAIN_EXAMPLES)
    prof_dir = Path(tempfile.mkdtemp(prefix="makd-prof-"))
    os.environ[PROFILE_DIR_ENV] = str(prof_dir)  # inherited by the local Ray cluster's workers
    original = driver.distill_trial
    driver.distill_trial = functools.update_wrapper(profiled_trial, original)
    try:
        with common.bench_sweep("bench-profile", num_cpus=1, epochs=scaling.EPOCHS,
                                max_train_samples=scaling.TRAIN_EXAMPLES) as (outcome, wall, _):
            trials = len(outcome.trials)
        files = sorted(prof_dir.glob("*.prof"))
        merged = pstats.Stats(str(files[0]), stream=io.StringIO())
        for extra in files[1:]:
            merged.add(str(extra))
    finally:
        driver.distill_trial = original
        shutil.rmtree(prof_dir, ignore_errors=True)
    buffer = io.StringIO()
    merged.stream = buffer
    merged.strip_dirs().sort_stats("cumulative").print_stats(30)
    # makd's steps around the model's own forward/backward: what the student build, checkpoints, Ray's report,
    # the optimizer and tokenisation cost.
    merged.print_stats(r"build_student|\(encode\)|\(evaluate\)|save_checkpoint|trial.py.*\(report\)|"
                       r"_fused_adamw|_single_tensor_adamw|clip_grad_norm_|\(collate\)|distillation_loss")
    return (f"## A. Time: {trials} trials, 1 node x 1 CPU, sweep wall {wall:.1f} s, {len(files)} trial profiles "
            f"merged (seconds summed over trials)\n\n```\n{buffer.getvalue().strip()}\n```\n")


def memory_probe(variant: str, student: str, glue_dir: str) -> dict:
    """In this (fresh) process: peak RSS before and after one forward/backward of the longest 32 RTE examples."""
    import numpy as np
    import torch

    from bench import common
    from bench.common import BATCH_SIZE, MAX_LENGTH, load_task
    from makd.batching import encode
    from makd.models import build_student
    from makd.train import TrainConfig, make_optimizer, train_step

    torch.set_num_threads(1)
    common.GLUE_DIR = glue_dir
    train, _ = load_task("rte", 256, 1)
    model, tok = build_student(student, 2)
    if variant.endswith("attention dropout off"):
        for layer in model.base_model.encoder.layer:
            layer.attention.self.dropout.p = 0.0
    micro = int(variant.split()[-1]) if variant.startswith("micro") else None
    cfg = TrainConfig(task="rte", student=student, loss="ce", lam=1.0, micro_batch_size=micro)
    encoded = encode(tok, train, MAX_LENGTH)
    idx = np.argsort(-np.asarray(encoded.lengths), kind="stable")[:BATCH_SIZE]
    optimizer = make_optimizer(model, cfg)
    model.train()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    train_step(model, encoded, idx, torch.tensor(np.array(train.labels))[idx], None, cfg, optimizer,
               torch.amp.GradScaler("cuda", enabled=False), device=torch.device("cpu"), amp=None)
    return {"variant": variant, "tokens": int(max(encoded.lengths[i] for i in idx)),
            "rss_before_step_mb": round(before), "peak_rss_mb": round(resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024), "step_s": round(time.perf_counter() - start, 2)}


def memory_profile() -> str:
    import pandas as pd

    from bench import common

    rows = []
    for variant in MEMORY_VARIANTS:
        out = subprocess.run([sys.executable, "-m", "bench.profile_trial", "--memory", variant, common.STUDENT_6L,
                              common.GLUE_DIR], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        common.progress(rows[-1])
    return ("## B. Memory: one training step of the 6x384 student on the longest 32 RTE examples, 1 thread\n\n"
            + common.markdown(pd.DataFrame(rows)) + "\n")


def main() -> None:
    from bench import common

    text = time_profile() + "\n" + memory_profile()
    print(text, flush=True)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    common.atomic_write_bytes(common.RESULTS_DIR / "profile_trial.md", text.encode())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        print(json.dumps(memory_probe(*sys.argv[2:5])))
    else:
        main()
