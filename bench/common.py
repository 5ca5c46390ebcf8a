"""What every benchmark shares: RTE data, repeat statistics, atomic CSV output, the machine description."""

from __future__ import annotations

import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from makd.data import TextDataset
from makd.files import atomic_write_bytes

RESULTS_DIR = Path(os.environ.get("MAKD_BENCH_OUT", "results/bench"))
GLUE_DIR = os.environ.get("MAKD_GLUE_DIR", "../shared/glue")
TEACHER = "zoo:mpnet-base"  # all-mpnet-base-v2: 12x768, BERT-base size, not fine-tuned (fresh seeded head)
STUDENT_2L = "zoo:minilm-l6@0,5"  # 2x384: layers 0 and 5 of all-MiniLM-L6-v2
STUDENT_6L = "zoo:minilm-l6"  # 6x384
BATCH_SIZE = 32
MAX_LENGTH = 128
REPEATS = int(os.environ.get("MAKD_BENCH_REPEATS", "3"))
GRID = {"losses": ["vanilla"], "lams": [0.0, 0.25, 0.5], "seeds": [0, 1]}  # + ce: 8 trials (the toy test: fewer)


def load_task(task: str, n_train: int | None, n_eval: int | None) -> tuple[TextDataset, TextDataset]:
    """The seeded train subset every makd trial of this size sees, and a seeded dev subset."""
    from makd.data import load_split
    from makd.tasks import get_task

    spec = get_task(task)
    train = load_split(spec, "train", glue_dir=GLUE_DIR, max_samples=n_train, seed=0)
    dev = load_split(spec, spec.eval_splits[0][0], glue_dir=GLUE_DIR, max_samples=n_eval, seed=0)
    return train, dev


def train_teacher_logits(task: str, n_train: int):
    """The teacher logits (computed once, then cached) on the train subset of this size, for a benchmark's own
    training loop."""
    from makd.paths import default_cache_dir
    from makd.pipeline import fetch_teacher_logits
    from makd.teacher_spec import TeacherSpec

    train, _ = load_task(task, n_train, 1)
    spec = TeacherSpec(TEACHER, task, max_length=MAX_LENGTH)
    logits, _ = fetch_teacher_logits(spec, train, default_cache_dir(), progress=False)
    return logits


def sweep_config(name: str, root: Path, **overrides) -> dict:
    """The benchmarks' `makd sweep` config: RTE, mpnet teacher, 2x384 student, vanilla at 3 lambdas x 2 seeds,
    grid search, no early stopping, 1 CPU per trial; each benchmark overrides what it measures."""
    base = {"name": name, "tasks": ["rte"], "teacher": TEACHER, "students": [STUDENT_2L], **GRID, "epochs": 1,
            "lr": 1e-4, "batch_size": BATCH_SIZE,
            "max_length": MAX_LENGTH, "max_train_samples": 128, "max_eval_samples": 64, "data": {"glue_dir": GLUE_DIR},
            "search": {"kind": "grid"}, "scheduler": {"kind": "none"}, "resources_per_trial": {"cpu": 1, "gpu": 0},
            "storage": str(root)}
    return {**base, **overrides}


def warm_teacher_cache(sweep: dict, device: str = "cpu") -> None:
    """Fill the teacher cache with all a sweep's driver reads (makd_sweep.task_prep.prepare_task: each task's train and dev
    signals, the fine-tuned teacher first when the config asks for one), computed on `device`: no timed sweep runs
    the teacher, and the first one pays no more than the others."""
    from makd.paths import default_cache_dir
    from makd_sweep.config import parse_config
    from makd_sweep.task_prep import check_file_tasks, prepare_task

    cfg = check_file_tasks(parse_config(sweep))
    for task in cfg.tasks:
        prepare_task(cfg, task, str(default_cache_dir()), progress=False, teacher_device=device)


def warm_bench_sweep(device: str = "cpu", **overrides) -> None:
    """warm_teacher_cache for the sweep `bench_sweep(**overrides)` runs."""
    warm_teacher_cache(sweep_config("warm-up", Path(tempfile.gettempdir()), **overrides), device=device)


@contextmanager
def bench_sweep(name: str, *, num_cpus: int | None = None, num_gpus: float | None = None, address: str | None = None,
                cold_cache: bool = False, **overrides) -> Iterator[tuple[object, float, Path]]:
    """Run `makd sweep` (makd_sweep.driver.run_sweep) in a temporary experiment dir: yields (outcome, wall seconds, dir);
    the dir is removed afterwards. cold_cache: a fresh teacher cache, so the teacher pass is in the wall time."""
    from makd_sweep.config import parse_config
    from makd_sweep.driver import run_sweep

    root = Path(tempfile.mkdtemp(prefix="makd-bench-"))
    try:
        cfg = parse_config(sweep_config(name, root, **overrides))
        start = time.perf_counter()
        outcome = run_sweep(cfg, quiet=True, num_cpus=num_cpus, num_gpus=num_gpus, address=address,
                            cache_dir=str(root / "cold-cache") if cold_cache else None)
        yield outcome, time.perf_counter() - start, root / name
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stats(values: Iterable[float]) -> dict[str, float]:
    """Median and spread (min, max) over repeats: the numbers every table reports."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def speed_summary(frame: pd.DataFrame, ways: Iterable[str], reference: str = "makd loop") -> pd.DataFrame:
    """Examples/s per way (median, min, max over repeats) and the reference's speed-up over each, the ratio taken
    within each repeat (both measured back to back), then summarised."""
    wide = frame.pivot(index="repeat", columns="way", values="examples_per_s")
    out = []
    for way in ways:
        s, r = stats(wide[way]), stats(wide[reference] / wide[way])
        out.append({"way": way, "examples_per_s_median": s["median"], "min": s["min"], "max": s["max"],
                    "makd_x_median": r["median"], "makd_x_min": r["min"], "makd_x_max": r["max"], "repeats": s["n"]})
    return pd.DataFrame(out)


def write_csv(frame: pd.DataFrame, name: str) -> Path:
    """results/bench/NAME.csv, written to a temp name and renamed (never half-written)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    path = RESULTS_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def machine() -> dict[str, str]:
    import ray
    import torch
    import transformers

    from makd.inference_cost import cpu_model

    cpu = cpu_model() or platform.processor() or "unknown"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else "none", "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "ray": ray.__version__}


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats to 3 significant digits."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def print_table(title: str, frame: pd.DataFrame) -> None:
    """A result table on stdout: what run_all keeps for summary.md."""
    print(f"\n## {title}\n\n{markdown(frame)}", flush=True)


def progress(value) -> None:
    """A progress line (one measurement as it lands) on stderr: the log, never summary.md."""
    print(value, file=sys.stderr, flush=True)
