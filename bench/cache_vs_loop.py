"""Benchmark 1: teacher-logit cache vs teacher in the loop (mpnet teacher, 2-layer student, RTE).

A. Training-step time of one trial in makd's loop (same batches, one CPU thread, as a 1-CPU trial): CE only,
   KD (vanilla) from cached logits, KD with the teacher forward inside the step. Target: KD step <= 1.10x CE step.
B. An 8-trial sweep both ways, 2 trials at a time on 1 CPU each: `makd sweep` (makd_sweep.driver.run_sweep) with a cold
   cache, so the one teacher pass is counted, vs the same 8 trials as HF-Trainer runs with the teacher in
   `compute_loss` (the paper's notebook) on Ray Tune. Target: >= 4x faster.

    python -m bench.cache_vs_loop            (MAKD_BENCH_REPEATS=3 by default)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench import common
from bench.common import (
    BATCH_SIZE,
    MAX_LENGTH,
    REPEATS,
    STUDENT_2L,
    TEACHER,
    load_task,
    print_table,
    stats,
    write_csv,
)
from makd_sweep.loopback import loopback_ray

STEPS = 6  # timed steps per mode and repeat (after one warm-up step)
SWEEP = dict(task="rte", n_train=256, n_eval=64, epochs=2, lams=[0.0, 0.25, 0.5], seeds=[0, 1], lr=1e-4)


# ------------------------------------------------------------------------------------------------- A: step times

def step_times() -> pd.DataFrame:
    from makd import models
    from makd.batching import collate, encode, length_grouped_batches
    from makd.train import TrainConfig, make_optimizer, train_step

    torch.set_num_threads(1)
    train, _ = load_task("rte", BATCH_SIZE * (STEPS + 1) * 2, None)
    student, student_tok = models.build_student(STUDENT_2L, 2, seed=0)
    teacher, teacher_tok = models.load_teacher(TEACHER, 2)
    s_enc, t_enc = encode(student_tok, train, MAX_LENGTH), encode(teacher_tok, train, MAX_LENGTH)
    batches = length_grouped_batches(s_enc.lengths, BATCH_SIZE, np.random.default_rng(0))[:STEPS + 1]
    with torch.no_grad():  # the cache: one teacher pass (makd.cache.compute_logits does the same, longest first)
        cached = {i: teacher(**collate(t_enc, idx)).logits for i, idx in enumerate(batches)}
    optimizer = make_optimizer(student, TrainConfig(task="rte", student=STUDENT_2L))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    labels = torch.tensor(np.array(train.labels), dtype=torch.long)
    kd = TrainConfig(task="rte", student=STUDENT_2L, loss="vanilla", lam=0.0)  # cached or in the loop: same loss
    configs = {"ce": TrainConfig(task="rte", student=STUDENT_2L, loss="ce", lam=1.0), "kd_cached": kd,
               "kd_teacher_in_loop": kd}

    def step(i: int, idx, mode: str) -> float:
        """makd's own training step (makd.train.train_step); in-loop mode runs the teacher forward first."""
        start = time.perf_counter()
        teacher_logits = None
        if mode == "kd_cached":
            teacher_logits = cached[i]
        elif mode == "kd_teacher_in_loop":
            with torch.no_grad():
                teacher_logits = teacher(**collate(t_enc, idx)).logits
        train_step(student, s_enc, idx, labels[idx], teacher_logits, configs[mode], optimizer, scaler,
                   device=torch.device("cpu"), amp=None)
        return time.perf_counter() - start

    student.train()
    rows = []
    for repeat in range(REPEATS):
        for mode in ("ce", "kd_cached", "kd_teacher_in_loop"):  # interleaved: drift hits every mode alike
            step(0, batches[0], mode)  # warm-up
            times = [step(i, idx, mode) for i, idx in enumerate(batches[1:], start=1)]
            rows.append({"repeat": repeat, "mode": mode, "median_step_s": float(np.median(times)),
                         "steps": len(times)})
    return pd.DataFrame(rows)


def step_summary(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot(index="repeat", columns="mode", values="median_step_s")
    out = []
    for mode in ("ce", "kd_cached", "kd_teacher_in_loop"):
        s, r = stats(wide[mode]), stats(wide[mode] / wide["ce"])
        out.append({"mode": mode, "step_s_median": s["median"], "step_s_min": s["min"], "step_s_max": s["max"],
                    "x_ce_median": r["median"], "x_ce_min": r["min"], "x_ce_max": r["max"], "repeats": s["n"]})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------- B: sweeps

def makd_sweep() -> dict:
    """`makd sweep` as a user runs it, cold cache: the teacher pass is inside the measured time."""
    with common.bench_sweep("bench-cache", num_cpus=2, cold_cache=True, lams=SWEEP["lams"], seeds=SWEEP["seeds"],
                            epochs=SWEEP["epochs"], lr=SWEEP["lr"], max_train_samples=SWEEP["n_train"],
                            max_eval_samples=SWEEP["n_eval"], max_concurrent_trials=2, max_failures=0) as (
            outcome, wall, _):
        frame = outcome.trials
        return {"wall_s": wall, "trials": len(frame), "finished": int((frame["status"] == "TERMINATED").sum()),
                "teacher_s": sum(c["teacher_seconds"] for c in outcome.cache.values()),
                "best_score": float(frame["best_score"].max())}


def _loop_trial(config: dict, *, train, dev, setup: dict) -> None:
    """One notebook-style run (HF Trainer, teacher forward in every step); reports dev accuracy at the end."""

    from ray import tune

    from bench.hf_baseline import run_baseline

    torch.set_num_threads(1)
    result = run_baseline(train, dev, teacher_mode="loop", lam=config["lam"], kd="vanilla", seed=config["seed"],
                          padding="dynamic", **setup)
    tune.report({"score": result.score, "train_seconds": result.train_seconds})


def loop_sweep() -> dict:
    """The same 8 trials (ce + vanilla at 3 lambdas, 2 seeds) the notebook's way, on Ray Tune, 2 at a time."""
    import ray
    from ray import tune

    train, dev = load_task(SWEEP["task"], SWEEP["n_train"], SWEEP["n_eval"])
    setup = {"student": STUDENT_2L, "teacher": TEACHER, "epochs": SWEEP["epochs"], "lr": SWEEP["lr"],
             "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH}
    root = Path(tempfile.mkdtemp(prefix="makd-bench-"))
    start = time.perf_counter()
    started = not ray.is_initialized()  # else: the Ray this process uses already (the toy test's), bench/ importable
    if started:
        with loopback_ray():  # a private Ray, loopback only (makd_sweep/loopback.py)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    try:
        space = {"lam": tune.grid_search([1.0, *SWEEP["lams"]]), "seed": tune.grid_search(SWEEP["seeds"])}
        trainable = tune.with_resources(tune.with_parameters(_loop_trial, train=train, dev=dev, setup=setup),
                                        {"cpu": 1})
        grid = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
                          run_config=tune.RunConfig(storage_path=str(root), name="loop", verbose=0)).fit()
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - start
    scores = [r.metrics.get("score") for r in grid if r.metrics]
    return {"wall_s": wall, "trials": len(grid), "finished": sum(r.error is None and bool(r.metrics) for r in grid),
            "teacher_s": float("nan"), "best_score": max((s for s in scores if s is not None), default=float("nan"))}


def sweeps() -> pd.DataFrame:
    rows = []
    for repeat in range(REPEATS):
        for way, run in (("makd sweep, cached teacher logits", makd_sweep),
                         ("HF Trainer, teacher in the loop", loop_sweep)):
            rows.append({"repeat": repeat, "way": way, **run()})
            common.progress(json.dumps(rows[-1]))
    return pd.DataFrame(rows)


def sweep_summary(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot(index="repeat", columns="way", values="wall_s")
    cached, loop = wide["makd sweep, cached teacher logits"], wide["HF Trainer, teacher in the loop"]
    speedup = stats(loop / cached)
    out = []
    for way, col in (("makd sweep, cached teacher logits", cached), ("HF Trainer, teacher in the loop", loop)):
        s = stats(col)
        out.append({"way": way, "wall_s_median": s["median"], "wall_s_min": s["min"], "wall_s_max": s["max"],
                    "trials": int(frame[frame["way"] == way]["trials"].iloc[0]), "repeats": s["n"]})
    out.append({"way": "speed-up (in-loop / cached)", "wall_s_median": speedup["median"],
                "wall_s_min": speedup["min"], "wall_s_max": speedup["max"], "trials": None, "repeats": speedup["n"]})
    return pd.DataFrame(out)


def main() -> None:
    steps = step_times()
    write_csv(steps, "cache_vs_loop_steps.csv")
    print_table("Benchmark 1a: training-step time, 2x384 student, mpnet teacher, RTE, 1 thread", step_summary(steps))
    runs = sweeps()
    write_csv(runs, "cache_vs_loop_sweeps.csv")
    print_table(f"Benchmark 1b: 8-trial sweep wall time ({SWEEP['n_train']} RTE examples, {SWEEP['epochs']} epochs, "
                "2 trials x 1 CPU at a time)", sweep_summary(runs))


if __name__ == "__main__":
    main()
