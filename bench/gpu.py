"""GPU benchmark: is every trial fast from its first step, how many trials does one GPU hold, how does makd's loop
compare with the paper notebook's HF Trainer. One command, one device, results/bench-gpu/{summary.md,*.csv}:

  syncs     host-device synchronisations per training step, with the attention mask built by the model's forward
            (transformers reads `padding_mask.all()` there) and expanded by makd before it (makd.masks)
  teacher   the teacher pass (the driver's cache fill) in examples/s
  epochs    epoch 1 vs epoch 2 of a 2-epoch run, each in a fresh process (cold CUDA), with and without the two
            fixes (length buckets, warm-up of every batch shape)
  packing   the same N-config sweep (one seed: ce + vanilla at τ 2 and N-1 values of λ) at 1, 2, 4, 8 trials per GPU (Ray
            trials, each its own process) and as a fused pack (`pack: {size: N, mode: fused}`: one Ray trial), plus
            a fused pack of 16 on a 16-config sweep: sweep wall, trials/hour, aggregate examples/s, peak GPU memory
            per trial, and every process trial's epoch 1 vs epoch 2
  fused     a fused pack (makd/fused.py: K students of one shape, one vmapped model) vs one trial: aggregate
            examples/s of one warm epoch at K = 1, 4, 16 members, peak GPU memory per member
  loop      makd's training loop vs the HF Trainer, both bf16 from cached logits, and the Trainer with the teacher
            in the loop: warm, `--repeats` times; with --before-masks makd also with the mask left to the model
            (the loop before makd.masks; measured once in results/bench-gpu/loop.csv, left out to fit 6 minutes)

    python -m bench.gpu                          # on a GPU box: SST-2, BERT-base-sized teacher, 6x384 student
    python -m bench.gpu --device cpu             # toy size on CPU (fake GPU fractions, no compile): what CI runs
    python -m bench.gpu --summarize DIR          # rebuild DIR/summary.md from its CSVs and run.json

Each section's CSV is written as soon as it ends (with the device name), with run.json (machine, settings, seconds
per section) and summary.md, so a run cut short keeps what it measured.

On the offline GPU box (../shared/device): `source .device/env.sh && python3 -m bench.gpu --out $OUT/bench-gpu`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd

from bench import common
from bench.common import markdown, progress

SIZES = {  # per device: examples per sweep trial, per loop run, through the teacher; sweep trials; repeats
    "cuda": {"train_examples": 3000, "loop_examples": 4000, "teacher_examples": 20000, "trials": 8, "repeats": 3,
             "packings": "1,8,2,4", "pack_sizes": "8,16", "student": "6x384", "fused_members": "4,16"},
    "cpu": {"train_examples": 48, "loop_examples": 48, "teacher_examples": 48, "trials": 2, "repeats": 1,
            "packings": "2", "pack_sizes": "2", "student": "2x128", "fused_members": "2"},
}
# the open targets first: a run cut short keeps them; compile (an optional lever, ~4 min on a GPU) last
SECTIONS = ("fused", "packing", "syncs", "teacher", "epochs", "loop", "compile")
# --device cpu runs every section but compile by default: its cold compiles took 80 of the toy run's 150 s, and
# tests/test_compiled.py already compiles on CPU, cold then warm from the cache, each in a fresh process
# (`--sections compile` runs it on CPU too)
DEFAULT_SECTIONS = {"cuda": SECTIONS, "cpu": tuple(s for s in SECTIONS if s != "compile")}
PACKING_GRID = "ce + vanilla at tau 2 and N-1 values of lambda, seed 0"  # the packing sweeps' configs (older runs: ce + vanilla)
VARIANTS = {  # (pad_to_multiple_of, warm_up) of the epochs section: the old behaviour, each fix, both
    "exact padding, no warm-up (before)": (1, False),
    "length buckets of 32, no warm-up": (32, False),
    "length buckets of 32 + warm-up (default on GPU)": (32, True),
}


COMPILE_WAYS = {  # the compile section: way -> (compile mode, students, compile cache); each its own process. A warm
    # way is a second trial on the node: it reads the cache its cold way (same mode and students) just filled
    "eager": (None, 1, None),
    "compiled, cold cache": ("default", 1, "cold"),
    "compiled, warm cache": ("default", 1, "warm"),
    "reduce-overhead, cold cache": ("reduce-overhead", 1, "cold"),
    "reduce-overhead, warm cache": ("reduce-overhead", 1, "warm"),
    "fused pack, eager": (None, "pack", None),
    "fused pack, compiled, cold cache": ("default", "pack", "cold"),
    "fused pack, compiled, warm cache": ("default", "pack", "warm"),
}
CPU_COMPILE_WAYS = ("eager", "compiled, cold cache", "compiled, warm cache")  # CUDA graphs need CUDA


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--task", default="sst2")
    p.add_argument("--glue-dir", default=common.GLUE_DIR)
    p.add_argument("--teacher", default=os.environ.get("MAKD_DEVICE_TEACHER", common.TEACHER))
    p.add_argument("--student")
    p.add_argument("--student-tokenizer", default=os.environ.get("MAKD_DEVICE_TOK"))
    p.add_argument("--train-examples", type=int, help="per sweep trial and epochs-section run")
    p.add_argument("--loop-examples", type=int)
    p.add_argument("--teacher-examples", type=int)
    p.add_argument("--trials", type=int, help="configs per packing sweep (one seed: ce + vanilla at τ 2 and N-1 values of λ)")
    p.add_argument("--packings", help="trials per GPU, comma-separated, in the order run (1 first: the baseline)")
    p.add_argument("--pack-sizes", help="members per fused pack in the packing section, comma-separated (a pack of "
                   "--trials members runs the same sweep; any other size, a sweep of that many configs)")
    p.add_argument("--fused-members", help="members per fused pack, comma-separated (1 trial alone is always run)")
    p.add_argument("--repeats", type=int)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--before-masks", action="store_true", help="the loop section also times makd's loop as it was "
                                                                "before makd.masks")
    p.add_argument("--sections", help=f"comma-separated, of {', '.join(SECTIONS)} (default: all; on CPU all but compile)")
    p.add_argument("--out", default=None, help="default: results/bench-gpu on CUDA; a temp dir with --device cpu, "
                   "so that a toy run never overwrites the committed GPU results")
    p.add_argument("--summarize", metavar="DIR", help="only rebuild DIR/summary.md from DIR's CSVs and run.json")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one epochs-section run in a fresh process
    p.add_argument("--compile-child", help=argparse.SUPPRESS)  # internal: one compile-section run, ditto
    args = p.parse_args(argv)
    for key, value in SIZES[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.packings = [int(k) for k in str(args.packings).split(",")]
    args.fused_members = [int(k) for k in str(args.fused_members).split(",")]
    args.pack_sizes = [int(k) for k in str(args.pack_sizes).split(",")]
    args.packing_grid = PACKING_GRID
    args.sections = args.sections.split(",") if args.sections else list(DEFAULT_SECTIONS[args.device])
    return args


def train_config(args, **overrides):
    from makd.train import TrainConfig

    base = dict(task=args.task, student=args.student, teacher=args.teacher, student_tokenizer=args.student_tokenizer,
                loss="vanilla", lam=0.5, epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, seed=0)
    return TrainConfig(**{**base, **overrides})


def load(args, n_train: int, n_eval: int | None = None):
    common.GLUE_DIR = args.glue_dir
    return common.load_task(args.task, n_train, n_eval)


def cached_logits(args, train, cache_dir: str | None = None, device: str | None = None):
    from makd.paths import default_cache_dir
    from makd.pipeline import fetch_teacher_logits

    return fetch_teacher_logits(train_config(args).teacher_spec, train, cache_dir or default_cache_dir(), progress=False,
                                device=device or args.device)


# ------------------------------------------------------------------------------------------------ teacher pass

def teacher_section(args) -> pd.DataFrame:
    train, _ = load(args, args.teacher_examples, 1)
    with tempfile.TemporaryDirectory(prefix="makd-bench-cache-") as cold:
        start = time.perf_counter()
        _, report = cached_logits(args, train, cold)
        wall = time.perf_counter() - start
    row = {"examples": len(train), "teacher_pass_s": report.teacher_seconds,
           "examples_per_s": len(train) / report.teacher_seconds, "with_teacher_load_s": wall}
    progress(row)
    return pd.DataFrame([row])


# ------------------------------------------------------------------------------------- epoch 1 vs 2, cold process

def child_run(args) -> dict:
    """One 2-epoch run in this (fresh) process: per-epoch examples/s and eval seconds."""
    from makd.train import train

    pad, warm = VARIANTS[args.child]
    data, dev = load(args, args.train_examples, None)
    logits, _ = cached_logits(args, data)
    result = train(train_config(args, pad_to_multiple_of=pad, warm_up=warm), data, {"": dev}, logits,
                   device=args.device, progress=False)
    h = result.history
    return {"variant": args.child, "warmup_s": h[0].warmup_seconds,
            "epoch1_examples_per_s": h[0].train_examples_per_s, "epoch2_examples_per_s": h[1].train_examples_per_s,
            "eval1_s": h[0].eval_seconds, "eval2_s": h[1].eval_seconds, "peak_gpu_mb": h[-1].peak_gpu_mb}


def child_result(argv: list[str], flag: str, name: str, env: dict | None = None) -> dict:
    """This benchmark rerun in a fresh process as `flag name` (one run of a section): the JSON line it prints last."""
    out = subprocess.run([sys.executable, "-m", "bench.gpu", *argv, flag, name], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def compile_child_run(args) -> dict:
    """One 2-epoch trial (or fused pack of the largest --fused-members) in this fresh process with `compile` as the
    way says, buckets of 32 and the warm-up on (so the compile lands in warmup_s, not in an epoch): its
    seconds before training, examples/s per epoch and Inductor's cache hits and misses."""
    from torch._dynamo.utils import counters

    from makd.fused import train_fused
    from makd.train import train

    mode, students, _ = COMPILE_WAYS[args.compile_child]
    data, dev = load(args, args.loop_examples, 64)
    logits, _ = cached_logits(args, data)
    start = time.perf_counter()
    if students == "pack":
        members = max(args.fused_members)
        cfgs = fused_member_configs(args, members, compile=mode, pad_to_multiple_of=32, warm_up=True)
        history = train_fused(cfgs, data, {"": dev}, logits, device=args.device)[0].history
    else:
        members = 1
        history = train(train_config(args, compile=mode, pad_to_multiple_of=32, warm_up=True), data, {"": dev}, logits,
                        device=args.device, progress=False).history
    inductor, aot = counters["inductor"], counters["aot_autograd"]
    return {"way": args.compile_child, "compile": mode, "members": members,
            "first_epoch_s": history[0].warmup_seconds + history[0].train_seconds,
            "warmup_s": history[0].warmup_seconds, "run_s": time.perf_counter() - start,
            "epoch1_examples_per_s": members * history[0].train_examples_per_s,
            "epoch2_examples_per_s": members * history[-1].train_examples_per_s,
            "fxgraph_cache_hits": inductor["fxgraph_cache_hit"], "fxgraph_cache_misses": inductor["fxgraph_cache_miss"],
            "autograd_cache_hits": aot["autograd_cache_hit"], "autograd_cache_misses": aot["autograd_cache_miss"]}


def compile_section(args, argv: list[str]) -> pd.DataFrame:
    """Issue 23's optional lever: eager vs torch.compile of one trial and of a fused pack, each way in a fresh
    process (as a new Ray trial is), the compiled ways first with an empty compile cache (the node's first trial of
    the shape) and then with the cache that run filled (every later trial): the compile is paid once per node and
    shape only if the warm runs load instead of compiling. Repeats interleave the ways; the cache is fresh in each."""
    cached_logits(args, load(args, args.loop_examples, None)[0])  # the cache the children read
    ways = list(COMPILE_WAYS) if args.device == "cuda" else list(CPU_COMPILE_WAYS)
    rows = []
    for repeat in range(args.repeats):
        caches: dict[tuple, str] = {}  # (mode, students) -> the cache dir its cold way filled
        for way in ways:
            mode, students, cache = COMPILE_WAYS[way]
            env = None
            if cache is not None:
                if cache == "cold":
                    caches[mode, students] = tempfile.mkdtemp(prefix="makd-bench-compile-")
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": caches[mode, students]}
            rows.append({"repeat": repeat, **child_result(argv, "--compile-child", way, env)})
            progress(rows[-1])
    return pd.DataFrame(rows)


def compile_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per way: medians of the seconds before training and of the epoch-2 examples/s, and that rate over eager's
    (one trial or the fused pack alike) within each repeat."""
    out = []
    for way in dict.fromkeys(frame["way"]):
        part = frame[frame["way"] == way].set_index("repeat")
        base = frame[frame["way"] == ("fused pack, eager" if way.startswith("fused") else "eager")].set_index("repeat")
        ratio = common.stats(part["epoch2_examples_per_s"] / base["epoch2_examples_per_s"])
        out.append({"way": way, "members": int(part["members"].iloc[0]), "warmup_s_median": part["warmup_s"].median(),
                    "epoch2_examples_per_s_median": part["epoch2_examples_per_s"].median(),
                    "x_eager_median": ratio["median"], "x_min": ratio["min"], "x_max": ratio["max"],
                    "fxgraph_cache_hits": int(part["fxgraph_cache_hits"].median()),
                    "fxgraph_cache_misses": int(part["fxgraph_cache_misses"].median()), "repeats": ratio["n"]})
    return pd.DataFrame(out)


def epochs_section(args, argv: list[str]) -> pd.DataFrame:
    cached_logits(args, load(args, args.train_examples, None)[0])  # the cache the children read
    rows = []
    for variant in VARIANTS:
        rows.append(child_result(argv, "--child", variant))
        progress(rows[-1])
    frame = pd.DataFrame(rows)
    frame["epoch1_over_epoch2"] = frame["epoch1_examples_per_s"] / frame["epoch2_examples_per_s"]
    frame["eval1_over_eval2"] = frame["eval1_s"] / frame["eval2_s"]
    return frame


# ------------------------------------------------------------------------------------------------ packing sweeps

def packing_configs(configs: int) -> dict:
    """A sweep of `configs` trials of one seed and lr, so that one fused pack may hold them all: the CE-only baseline
    every sweep has (makd_sweep.config) and vanilla (τ 2) at configs - 1 values of λ in [0, 1)."""
    if configs < 2:
        raise SystemExit(f"bench.gpu: --trials and --pack-sizes must be >= 2 (got {configs})")
    return {"losses": ["ce", "vanilla"], "taus": [2.0], "lams": [i / (configs - 1) for i in range(configs - 1)],
            "seeds": [0]}


def packing_runs(args) -> list[tuple[str, int, int, int]]:
    """(way, configs in the sweep, members per Ray trial, students training on the GPU at once) in the order run:
    one trial per GPU first (the baseline), then the fused packs, then more trials per GPU."""
    process = [(f"{k} per GPU", args.trials, 1, k) for k in args.packings]
    fused = [(f"fused pack of {m}", m, m, m) for m in args.pack_sizes]
    return process[:1] + fused + process[1:] if args.packings[0] == 1 else fused + process


def packing_section(args, save) -> None:
    """The same sweep at k trials per GPU (Ray trials, each its own process and GPU fraction) and as fused packs
    (one Ray trial with the whole GPU); after each, save(one row per way, one row per process trial with its
    epochs)."""
    cores = os.cpu_count() or 1
    cpu_per_trial = max(cores // max(args.packings), 1)  # the same for every way: only the packing changes
    sweeps, trials = [], []
    for n, (way, configs, members, k) in enumerate(packing_runs(args)):
        fraction = 1.0 if members > 1 else 1 / k
        pack = {"pack": {"size": members, "mode": "fused"}} if members > 1 else {}
        sweep = dict(tasks=[args.task], teacher=args.teacher, students=[args.student],
                     student_tokenizer=args.student_tokenizer, **packing_configs(configs), **pack, epochs=args.epochs,
                     batch_size=args.batch_size, max_train_samples=args.train_examples, max_eval_samples=None,
                     data={"glue_dir": args.glue_dir}, max_concurrent_trials=k if members == 1 else 1,
                     resources_per_trial={"cpu": cpu_per_trial, "gpu": fraction})
        if n == 0:
            # no measured sweep runs the teacher: the first one (the baseline) pays no more than the others
            common.warm_bench_sweep(device=args.device, **sweep)
        start, started_at = time.perf_counter(), time.time()
        with common.bench_sweep(f"bench-gpu-{way.replace(' ', '-')}", num_cpus=cores, num_gpus=1,
                                **sweep) as (outcome, wall, exp):
            ended_at = time.time()
            frame = outcome.trials
            epochs = _trial_epochs(exp / args.task) if members == 1 else []
            first_start, last_end = _trial_span(exp) or (None, None)
        span = last_end - first_start if first_start else None
        finished = frame[frame["status"] == "TERMINATED"]
        examples = float(len(finished) * args.epochs * args.train_examples)
        row = {"way": way, "trials_per_gpu": k, "pack_size": members, "gpu_fraction": fraction,
               "cpu_per_trial": cpu_per_trial, "trials": len(frame),
               "finished": len(finished), "sweep_wall_s": wall, "trials_span_s": span,
               # the sweep's fixed cost: Ray, data, Tune and the first actor before; reports and shutdown after
               "before_first_trial_s": first_start - started_at if first_start else None,
               "after_last_trial_s": ended_at - last_end if last_end else None,
               "trials_per_hour": len(finished) / wall * 3600,
               "aggregate_examples_per_s_sweep": examples / wall,
               "aggregate_examples_per_s_trials": examples / span if span else None,
               # a fused pack's rows all carry the pack's peak: per member, divide by its size
               "peak_gpu_mb_median": pd.to_numeric(frame["peak_gpu_mb"], errors="coerce").median() / members,
               "peak_gpu_mb_max": pd.to_numeric(frame["peak_gpu_mb"], errors="coerce").max(),
               "peak_rss_mb_max": pd.to_numeric(frame["peak_rss_mb"], errors="coerce").max(),
               "devices": ",".join(sorted(set(map(str, frame["device"].dropna())))),
               "bench_wall_s": time.perf_counter() - start}
        sweeps.append(row)
        progress(row)
        trials += [{"trials_per_gpu": k, **e} for e in epochs]
        save(pd.DataFrame(sweeps), pd.DataFrame(trials))


def _trial_epochs(task_dir: Path) -> list[dict]:
    """Per trial: epoch 1 and 2 examples/s and eval seconds, the warm-up, the checkpoint writes and the first
    epoch's report (Ray copying the checkpoint to storage + Tune taking the result), from Ray's result.json files."""
    rows = []
    from makd_sweep.experiment_dir import trial_folders

    for folder in trial_folders(task_dir):
        history = folder.history()
        by_epoch = {h["epoch"]: h for h in history if "epoch" in h}
        if 1 not in by_epoch:
            continue
        first, second = by_epoch[1], by_epoch.get(2, {})
        rows.append({"trial_id": first.get("trial_id"), "pid": first.get("pid"), "warmup_s": first.get("warmup_seconds"),
                     "epoch1_examples_per_s": first.get("train_examples_per_s"),
                     "epoch2_examples_per_s": second.get("train_examples_per_s"),
                     "eval1_s": first.get("eval_seconds"), "eval2_s": second.get("eval_seconds"),
                     "ckpt1_s": first.get("checkpoint_seconds"), "ckpt2_s": second.get("checkpoint_seconds"),
                     "report1_s": second.get("previous_report_seconds"), "trial_s": history[-1].get("trial_seconds"),
                     "peak_gpu_mb": (second or first).get("peak_gpu_mb"),
                     "gpu_cap_mb": first.get("gpu_cap_mb")})
    return rows


def _trial_span(experiment: Path) -> tuple[float, float] | None:
    """The first trial's start and the last trial's end (events.jsonl, epoch seconds): when trials actually ran."""
    from makd_sweep.experiment_dir import events

    lines = events(experiment)
    starts = [e["time"] for e in lines if e.get("event") == "start"]
    ends = [e["time"] for e in lines if e.get("event") in ("done", "already-done")]
    return (min(starts), max(ends)) if starts and ends else None


# ------------------------------------------------------------------------------- host-device syncs per step

def syncs_section(args, steps: int = 8) -> pd.DataFrame:
    """Synchronising CUDA calls (torch.cuda.set_sync_debug_mode warnings) in `steps` training steps, after two
    unmonitored ones, with the mask built inside the forward and with makd.masks; on CPU there is nothing to count."""
    import warnings

    import numpy as np
    import torch

    from makd import masks
    from makd.batching import encode, length_grouped_batches
    from makd.models import build_student
    from makd.runtime import autocast_dtype
    from makd.tasks import get_task
    from makd.train import make_optimizer, pad_multiple, train_step, training_targets

    device = torch.device(args.device)
    cfg = train_config(args, loss="taylor")
    data, _ = load(args, args.batch_size * (steps + 2), 1)
    logits, _ = cached_logits(args, data)
    task = get_task(cfg.task)
    rows = []
    for way, on in (("mask built inside the forward (before)", False), ("mask expanded by makd.masks", True)):
        model, tokenizer = build_student(cfg.student, task.num_labels, seed=0, tokenizer=cfg.student_tokenizer)
        model.to(device).train()
        encoded = encode(tokenizer, data, cfg.max_length)
        optimizer = make_optimizer(model, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        targets, teacher = training_targets(task, data.labels), torch.tensor(np.asarray(logits))
        batches = length_grouped_batches(encoded.lengths, cfg.batch_size, np.random.default_rng(0))
        masks.ON_CUDA = on
        counted = 0
        try:
            for i, idx in enumerate(batches):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if device.type == "cuda" and i >= 2:
                        torch.cuda.set_sync_debug_mode("warn")
                    train_step(model, encoded, idx, targets[idx], teacher[idx], cfg, optimizer, scaler,
                               device=device, amp=autocast_dtype(cfg.precision, device),
                               pad_to_multiple_of=pad_multiple(cfg, device))
                    if device.type == "cuda":
                        torch.cuda.set_sync_debug_mode("default")
                if i >= 2:
                    counted += 1
                    syncs = [w for w in caught if "synchroniz" in str(w.message)]
                    rows.append({"way": way, "step": counted, "syncs": len(syncs),
                                 "where": "; ".join(sorted({str(w.message)[:80] for w in syncs}))})
        finally:
            masks.ON_CUDA = True
    frame = pd.DataFrame(rows)
    progress(frame.groupby("way")["syncs"].mean().to_dict())
    return frame


def syncs_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return (frame.groupby("way", sort=False)
            .agg(steps=("step", "count"), syncs_per_step=("syncs", "mean"), example=("where", "max")).reset_index())


# ------------------------------------------------------------------------------------------ loop vs HF Trainer

BEFORE_MASKS = "makd loop, mask left to the model (before makd.masks)"
LOOP_WAYS = ("makd loop", BEFORE_MASKS, "HF Trainer, cached logits", "HF Trainer, teacher in the loop")


def loop_section(args) -> pd.DataFrame:
    """One epoch each, interleaved; the first round warms every way up and is not reported."""
    import torch

    from bench.hf_baseline import run_baseline
    from makd import masks
    from makd.train import train

    data, dev = load(args, args.loop_examples, 64)
    logits, _ = cached_logits(args, data)
    bf16 = args.device == "cuda" and torch.cuda.is_bf16_supported()
    rows = []
    ways = [way for way in LOOP_WAYS if args.before_masks or way != BEFORE_MASKS]
    for repeat in range(args.repeats + 1):
        for way in ways:
            if way.startswith("makd loop"):
                masks.ON_CUDA = way != BEFORE_MASKS
                try:
                    epoch = train(train_config(args, epochs=1, lam=0.5, loss="taylor"), data, {"": dev}, logits,
                                  device=args.device, progress=False).history[0]
                finally:
                    masks.ON_CUDA = True
                per_s = epoch.train_examples_per_s
            else:
                run = run_baseline(data, None, student=args.student, teacher=args.teacher,
                                   teacher_mode="cache" if "cached" in way else "loop", lam=0.5, kd="taylor",
                                   epochs=1, batch_size=args.batch_size, max_length=128, lr=1e-4, seed=0,
                                   teacher_logits=logits, bf16=bf16, student_tokenizer=args.student_tokenizer)
                per_s = run.examples_per_s
            if repeat > 0:
                rows.append({"repeat": repeat, "way": way, "examples_per_s": per_s, "bf16": bf16})
                progress(rows[-1])
    return pd.DataFrame(rows)


FUSED_LOSSES = (("ce", 1.0, 1.0), ("vanilla", 0.5, 1.0), ("vanilla", 0.5, 2.0), ("taylor", 0.5, 2.0))


def fused_member_configs(args, members: int, **overrides) -> list:
    """A fused pack's member configs: one seed, cycling through FUSED_LOSSES' loss, lam and tau settings."""
    return [train_config(args, loss=loss, lam=lam, tau=tau, **overrides)
            for loss, lam, tau in (FUSED_LOSSES[m % len(FUSED_LOSSES)] for m in range(members))]


def fused_section(args) -> pd.DataFrame:
    """One epoch of one trial (makd.train.train) and of fused packs of K members (makd.fused.train_fused, members
    cycling through ce / vanilla / taylor settings at one seed), interleaved; the first round is a warm-up."""
    import torch

    from makd.fused import train_fused
    from makd.train import train

    data, dev = load(args, args.loop_examples, 64)
    logits, _ = cached_logits(args, data)
    precision = "bf16" if args.device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    rows = []
    for repeat in range(args.repeats + 1):
        for members in [1, *args.fused_members]:
            cfgs = fused_member_configs(args, members, epochs=1, precision=precision)
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if members == 1:
                epoch = train(cfgs[0], data, {"": dev}, logits, device=args.device, progress=False).history[0]
                way, per_s = "one trial (makd.train)", epoch.train_examples_per_s
            else:
                epoch = train_fused(cfgs, data, {"": dev}, logits, device=args.device)[0].history[0]
                way, per_s = f"fused pack of {members}", members * epoch.train_examples_per_s
            if repeat > 0:
                rows.append({"repeat": repeat, "way": way, "members": members, "examples_per_s": per_s,
                             "peak_gpu_mb_per_member": (epoch.peak_gpu_mb or 0) / members or None,
                             "precision": precision})
                progress(rows[-1])
    return pd.DataFrame(rows)


def fused_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Aggregate examples/s per way and its ratio to one trial within each repeat (medians, min-max)."""
    wide = frame.pivot(index="repeat", columns="members", values="examples_per_s")
    out = []
    for members in sorted(frame["members"].unique()):
        s, r = common.stats(wide[members]), common.stats(wide[members] / wide[1])
        part = frame[frame["members"] == members]
        out.append({"way": part["way"].iloc[0], "examples_per_s_median": s["median"], "min": s["min"],
                    "max": s["max"], "x_one_trial_median": r["median"], "x_min": r["min"], "x_max": r["max"],
                    "peak_gpu_mb_per_member": part["peak_gpu_mb_per_member"].median(), "repeats": s["n"]})
    return pd.DataFrame(out)


def loop_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return common.speed_summary(frame, [way for way in LOOP_WAYS if way in set(frame["way"])])  # older runs: 3


# ------------------------------------------------------------------------------------------------------- summary

def packing_ways(frame: pd.DataFrame) -> pd.DataFrame:
    """The packing table with its `way` column (runs before fused packs had only k trials per GPU)."""
    return frame if "way" in frame else frame.assign(way=[f"{k} per GPU" for k in frame["trials_per_gpu"]])


def targets(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The issue's targets against what this run measured (medians over trials; whole-GPU trial = k=1)."""
    rows = []
    if "packing_trials" in tables and len(tables["packing_trials"]):
        t = tables["packing_trials"].dropna(subset=["epoch2_examples_per_s"])
        ratio = (t["epoch1_examples_per_s"] / t["epoch2_examples_per_s"]).median()
        evals = (t["eval1_s"] / t["eval2_s"]).median()
        rows += [{"target": "epoch-1 throughput >= 90% of epoch 2 (sweep trials, median)", "measured": ratio,
                  "met": ratio >= 0.9},
                 {"target": "first evaluation <= 2x a later one (sweep trials, median)", "measured": evals,
                  "met": evals <= 2}]
    if "epochs" in tables and len(tables["epochs"]):  # the same two targets for one run in a fresh process
        e = tables["epochs"].iloc[-1]  # the last variant: the default on GPU
        rows += [{"target": "epoch-1 throughput >= 90% of epoch 2 (fresh process, default settings)",
                  "measured": e["epoch1_over_epoch2"], "met": e["epoch1_over_epoch2"] >= 0.9},
                 {"target": "first evaluation <= 2x a later one (fresh process, default settings)",
                  "measured": e["eval1_over_eval2"], "met": e["eval1_over_eval2"] <= 2}]
    if "fused" in tables and len(tables["fused"]):
        f = fused_summary(tables["fused"]).set_index("way")
        if "fused pack of 16" in f.index:
            x = f.loc["fused pack of 16", "x_one_trial_median"]
            rows.append({"target": "a 16-member fused pack >= 8x the aggregate examples/s of one warm trial",
                         "measured": x, "met": x >= 8})
    if "packing" in tables and len(tables["packing"]):
        p = packing_ways(tables["packing"]).set_index("way")
        one = p.loc["1 per GPU"] if "1 per GPU" in p.index else None
        for way in [w for w in p.index if w.startswith("fused pack of")] if one is not None else []:
            # trials per hour, not sweep walls: the pack of 16 runs a 16-config sweep, the baseline its 8 configs
            for col, what in (("sweep_wall_s", "over the whole sweep wall"), ("trials_span_s", "while trials run")):
                x = (p.loc[way, "finished"] / p.loc[way, col]) / (one["finished"] / one[col])
                rows.append({"target": f"a {way.removeprefix('fused ')} >= 6x the trials/hour of 1 trial per GPU "
                             f"({what})", "measured": x, "met": x >= 6})
        if one is not None and "8 per GPU" in p.index:
            x = p.loc["8 per GPU", "trials_per_hour"] / one["trials_per_hour"]
            rows.append({"target": "8 trials per GPU >= 6x the trials/hour of 1 (over the whole sweep wall)",
                         "measured": x, "met": x >= 6})
            x = one["trials_span_s"] / p.loc["8 per GPU", "trials_span_s"]  # the same number of trials in both
            rows.append({"target": "8 trials per GPU >= 6x the trials/hour of 1 (while trials run)", "measured": x,
                         "met": x >= 6})
            t = tables["packing_trials"]
            warm = t[t["trials_per_gpu"] == 1]["epoch2_examples_per_s"].median()
            for col, what in (("aggregate_examples_per_s_trials", "while trials run"),
                              ("aggregate_examples_per_s_sweep", "over the whole sweep wall")):
                x = p.loc["8 per GPU", col] / warm
                rows.append({"target": f"aggregate examples/s at 8 per GPU >= 3x one warm whole-GPU trial ({what})",
                             "measured": x, "met": x >= 3})
    if "loop" in tables and len(tables["loop"]):
        s = loop_summary(tables["loop"]).set_index("way")
        x = s.loc["HF Trainer, cached logits", "makd_x_median"]
        rows.append({"target": "makd loop >= 1.5x the HF Trainer (cached logits)", "measured": x, "met": x >= 1.5})
    return pd.DataFrame(rows)


SECTION_TABLES = {"fused": ["fused"], "syncs": ["syncs"], "teacher": ["teacher"], "epochs": ["epochs"], "packing": ["packing", "packing_trials"],
                  "compile": ["compile"], "loop": ["loop"]}
SETTINGS = ("task", "teacher", "student", "student_tokenizer", "train_examples", "loop_examples", "teacher_examples",
            "trials", "packings", "pack_sizes", "packing_grid", "fused_members", "repeats", "epochs", "batch_size")


def write_summary(args, out: Path, tables: dict[str, pd.DataFrame], run: dict) -> None:
    captions = {
        "teacher": f"Teacher pass ({args.teacher_examples} {args.task} train examples, cold cache, makd's default "
                   f"batch on {args.device})",
        "epochs": f"Epoch 1 vs epoch 2, each variant in a fresh process ({args.student}, {args.train_examples} "
                  f"{args.task} examples, batch {args.batch_size}, full dev set)",
        "syncs": f"Host-device synchronisations per training step ({args.student}, batch {args.batch_size}, taylor; "
                 "torch.cuda.set_sync_debug_mode warnings)",
        "packing": f"Packing: the same {args.trials}-trial sweep ({args.student}, {args.train_examples} {args.task} "
                   f"examples x {args.epochs} epochs, {getattr(args, 'packing_grid', 'ce + vanilla')}) at k trials "
                   "per GPU" + (" and as fused packs (one Ray trial with the whole GPU; a fused pack of N runs a sweep of "
                                "N such trials; peak GPU memory per member)"
                                if getattr(args, "pack_sizes", None) else ""),
        "packing_trials": "Every sweep trial's epoch 1 vs epoch 2 (examples/s, eval seconds) and GPU memory"
                          + (" (the trials of k per GPU; fused packs' members train in one process)"
                             if getattr(args, "pack_sizes", None) else ""),
        "fused": f"Fused packs vs one trial ({args.student}, {args.loop_examples} {args.task} examples, 1 epoch, "
                 f"batch {args.batch_size}; aggregate examples/s, medians over {args.repeats} warm repeats)",
        "compile": f"torch.compile (`compile:`) vs eager, each way in a fresh process, the compiled ways with an empty "
                   f"compile cache and then with the cache that run filled ({args.student}, {args.loop_examples} "
                   f"{args.task} examples x {args.epochs} epochs, batch {args.batch_size}, buckets of 32, warm-up on: "
                   "the compile is in warmup_s" + (f"; a fused pack of {max(args.fused_members)}"
                                                   if args.device == "cuda" and getattr(args, "fused_members", None)
                                                   else "")
                   + f"; medians over {args.repeats} repeats)",
        "loop": f"makd loop vs HF Trainer ({args.student}, {args.loop_examples} {args.task} examples, 1 epoch, "
                f"taylor lam 0.5; medians over {args.repeats} warm repeats)",
    }
    machine, seconds = run["machine"], run["section_seconds"]
    timing = ", ".join(f"{name} {sec:.0f} s" for name, sec in seconds.items())
    parts = [f"# GPU benchmark (`python -m bench.gpu --device {args.device}`)\n",
             f"Run {run['started']} on **{machine['gpu']}** ({machine['cores']} cores): {timing} "
             f"({sum(seconds.values()) / 60:.1f} min in all, set-up of the box not included). Teacher "
             f"`{Path(args.teacher).name}`, student `{args.student}`, task {args.task}.\n\nMachine: "
             f"{json.dumps(machine)}\n"]
    goals = targets(tables)
    if len(goals):
        parts.append(f"## Targets\n\n{markdown(goals)}\n")
    for name, caption in captions.items():
        if name in tables and len(tables[name]):
            frame = {"loop": loop_summary, "syncs": syncs_summary, "fused": fused_summary,
                     "compile": compile_summary}.get(name, lambda f: f)(
                tables[name])
            parts.append(f"## {caption}\n\n{markdown(frame)}\n")
    common.atomic_write_bytes(out / "summary.md", "\n".join(parts).encode())


def summarize(out: Path) -> None:
    """Rebuild out/summary.md from the CSVs there and run.json (e.g. sections measured in separate runs)."""
    run = json.loads((out / "run.json").read_text())
    args = argparse.Namespace(device=run["device"], **run["settings"])
    tables = {name: pd.read_csv(out / f"{name}.csv").drop(columns=["device"])
              for names in SECTION_TABLES.values() for name in names if (out / f"{name}.csv").is_file()}
    write_summary(args, out, tables, run)
    print((out / "summary.md").read_text())


def machine_info(device: str) -> dict:
    import platform

    import torch
    import transformers

    return {"gpu": torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU, fake GPU fractions)",
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def default_out(device: str) -> Path:
    """results/bench-gpu only for a CUDA run: a CPU toy run without --out goes to a new temp dir, so it never
    overwrites the committed GPU measurements."""
    return Path("results/bench-gpu") if device == "cuda" else Path(tempfile.mkdtemp(prefix="makd-bench-gpu-cpu-"))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.summarize:
        summarize(Path(args.summarize))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench.gpu: no CUDA device here; run with --device cpu for the toy-size check")
    if args.child:
        print(json.dumps(child_run(args)), flush=True)
        return
    if args.compile_child:
        print(json.dumps(compile_child_run(args)), flush=True)
        return
    os.environ.setdefault("MAKD_HOME", tempfile.mkdtemp(prefix="makd-bench-gpu-"))
    out = Path(args.out) if args.out else default_out(args.device)
    common.RESULTS_DIR = out
    run = {"started": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
           "device": args.device, "machine": machine_info(args.device),
           "settings": {k: getattr(args, k) for k in SETTINGS}, "section_seconds": {}}
    tables: dict[str, pd.DataFrame] = {}
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"bench.gpu: unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})")
    failed = []
    for section in args.sections:
        start = time.perf_counter()
        try:
            if section == "fused":
                tables["fused"] = fused_section(args)
            elif section == "syncs":
                tables["syncs"] = syncs_section(args)
            elif section == "teacher":
                tables["teacher"] = teacher_section(args)
            elif section == "epochs":
                tables["epochs"] = epochs_section(args, argv)
            elif section == "compile":
                tables["compile"] = compile_section(args, argv)
            elif section == "packing":
                def save(sweeps, trials):  # after every packing: a run cut short keeps the packings it measured
                    tables["packing"], tables["packing_trials"] = sweeps, trials
                    for name in ("packing", "packing_trials"):
                        common.write_csv(tables[name].assign(device=run["machine"]["gpu"]), f"{name}.csv")
                    write_summary(args, out, tables, run)

                packing_section(args, save)
            else:
                tables["loop"] = loop_section(args)
        except Exception as err:  # one failed section must not lose the others' measurements
            failed.append(section)
            progress(f"section {section} FAILED: {type(err).__name__}: {err}")
            traceback.print_exc()
        run["section_seconds"][section] = round(time.perf_counter() - start, 1)
        for name in SECTION_TABLES[section]:
            if name in tables:
                common.write_csv(tables[name].assign(device=run["machine"]["gpu"]), f"{name}.csv")
        common.atomic_write_bytes(out / "run.json", json.dumps(run, indent=1).encode())
        write_summary(args, out, tables, run)  # after every section: a run cut short keeps what it measured
        progress(f"section {section} took {run['section_seconds'][section]:.0f} s")
    print((out / "summary.md").read_text())
    print(f"bench.gpu: wrote {out}", file=sys.stderr)
    if failed:
        raise SystemExit(f"bench.gpu: section(s) {', '.join(failed)} failed (see the log above)")


if __name__ == "__main__":
    main()
