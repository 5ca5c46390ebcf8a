"""Benchmark 2: training throughput of makd's loop vs the HF-Trainer baseline, both from cached teacher logits,
and the peak memory of one Ray trial of the 6x384 student.

A. Same student (2x384), data (256 RTE examples), loss (taylor, lam 0.5), batch 32, max length 128, lr, one thread:
   makd.train.train vs the notebook's Trainer (dynamic padding, and the notebook's padding="max_length").
   Target: makd >= 1.3x the Trainer.
B. Peak RSS of a 6x384 trial (what makd_sweep.trial reports as peak_rss_mb) in a 1-epoch sweep, the whole batch in one
   forward/backward (the default) and in micro-batches of 16 (micro_batch_size). Target: <= 2 GB.

    python -m bench.throughput
"""

from __future__ import annotations

import pandas as pd
import torch

from bench import common
from bench.common import (
    BATCH_SIZE,
    MAX_LENGTH,
    REPEATS,
    STUDENT_2L,
    STUDENT_6L,
    TEACHER,
    load_task,
    print_table,
    stats,
    write_csv,
)

N_TRAIN = 256
LR = 1e-4
WAYS = ("makd loop", "HF Trainer, dynamic padding", "HF Trainer, pad to max_length (notebook)")


def throughput() -> pd.DataFrame:
    from bench.hf_baseline import run_baseline
    from makd.train import TrainConfig
    from makd.train import train as makd_train

    torch.set_num_threads(1)
    train, dev = load_task("rte", N_TRAIN, 8)
    logits = common.train_teacher_logits("rte", N_TRAIN)  # once, outside the timing (every trial shares it)
    rows = []
    for repeat in range(REPEATS):
        for way in WAYS:
            if way == "makd loop":
                cfg = TrainConfig(task="rte", student=STUDENT_2L, teacher=TEACHER, loss="taylor", lam=0.5, epochs=1,
                                  batch_size=BATCH_SIZE, max_length=MAX_LENGTH, lr=LR, seed=0)
                epoch = makd_train(cfg, train, {"": dev}, logits, progress=False, device="cpu").history[0]
                seconds, per_s = epoch.train_seconds, epoch.train_examples_per_s
            else:
                padding = "dynamic" if "dynamic" in way else "max_length"
                run = run_baseline(train, None, student=STUDENT_2L, teacher=TEACHER, teacher_mode="cache", lam=0.5,
                                   kd="taylor", epochs=1, batch_size=BATCH_SIZE, max_length=MAX_LENGTH, lr=LR,
                                   seed=0, padding=padding, teacher_logits=logits)
                seconds, per_s = run.train_seconds, run.examples_per_s
            rows.append({"repeat": repeat, "way": way, "train_seconds": seconds, "examples_per_s": per_s})
            common.progress(rows[-1])
    return pd.DataFrame(rows)


def throughput_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return common.speed_summary(frame, WAYS)


MICRO_BATCHES = [None, 16]  # None: the whole batch of 32 in one forward/backward (the default)


def trial_memory() -> pd.DataFrame:
    """1-epoch sweeps of the 6x384 student (taylor + the ce baseline), with and without micro-batches, per repeat:
    each a fresh Ray, fresh workers."""
    rows = []
    for repeat in range(REPEATS):
        for micro in MICRO_BATCHES:
            with common.bench_sweep("bench-rss", num_cpus=2, students=[STUDENT_6L], losses=["taylor"], lams=[0.5],
                                    seeds=[0], micro_batch_size=micro, max_concurrent_trials=2) as (outcome, _, _):
                for row in outcome.trials.itertuples():
                    rows.append({"repeat": repeat, "student": row.student, "micro_batch_size": micro or BATCH_SIZE,
                                 "loss": row.loss, "peak_rss_mb": row.peak_rss_mb,
                                 "trial_wall_s": row.wall_seconds, "status": row.status})
            common.progress(rows[-2:])
    return pd.DataFrame(rows)


def memory_summary(frame: pd.DataFrame) -> pd.DataFrame:
    out = []
    for micro, part in frame.groupby("micro_batch_size", sort=False):
        s, wall = stats(part["peak_rss_mb"]), stats(part["trial_wall_s"])
        out.append({"student": STUDENT_6L, "batch_size": BATCH_SIZE, "micro_batch_size": micro,
                    "peak_rss_mb_median": s["median"], "min": s["min"], "max": s["max"],
                    "trial_wall_s_median": wall["median"], "trials": s["n"]})
    return pd.DataFrame(out)


def main() -> None:
    runs = throughput()
    write_csv(runs, "throughput.csv")
    print_table(f"Benchmark 2a: training examples/s ({N_TRAIN} RTE examples, 2x384 student, taylor lam 0.5, cached "
                "teacher logits, 1 thread)", throughput_summary(runs))
    memory = trial_memory()
    write_csv(memory, "trial_memory.csv")
    print_table("Benchmark 2b: peak RSS of one Ray trial, 6x384 student (128 RTE examples, 1 epoch)",
                memory_summary(memory))


if __name__ == "__main__":
    main()
