"""Sweep config: a YAML file, validated completely before Ray starts, expanded into one grid per task.

Every error names the YAML field (`scheduler.grace_period: ...`) so `makd sweep` can print one line and exit 2.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from makd.errors import UsageError
from makd.losses import LOSSES, loss_names
from makd.tasks import get_task


@dataclass(frozen=True)
class SearchConfig:
    kind: str = "grid"  # grid | optuna
    n_trials: int = 0  # optuna: trials per task (at least one per categorical cell)
    seed: int = 0
    lam: tuple[float, float] = (0.0, 1.0)
    lr: tuple[float, float] | None = None  # optuna: log-uniform range; None keeps cfg.lr fixed
    tau: tuple[float, float] | None = None  # optuna: uniform range; None searches the taus list as a category


@dataclass(frozen=True)
class SchedulerConfig:
    kind: str = "none"  # none | asha
    grace_period: int = 1
    reduction_factor: int = 2
    max_epochs: int | None = None  # defaults to epochs


@dataclass(frozen=True)
class SweepConfig:
    name: str
    tasks: tuple[str, ...]
    students: tuple[str, ...]
    teacher: str | None = None
    fine_tuned: bool = False
    head_seed: int = 0
    student_tokenizer: str | None = None
    losses: tuple[str, ...] = ("ce", "vanilla", "taylor")
    lams: tuple[float, ...] = (0.5,)
    taus: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    micro_batch_size: int | None = None
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    glue_dir: str | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    cpu: float = 1.0
    gpu: float = 0.0  # with gpu_auto, 0 until the driver measured a training step (tune.gpu_sizing)
    gpu_auto: bool = False
    pad_to_multiple_of: int | None = None
    warm_up: bool | None = None
    max_concurrent_trials: int | None = None
    max_failures: int = 1
    storage: str = "runs"
    address: str | None = None

    @property
    def max_epochs(self) -> int:
        return self.scheduler.max_epochs or self.epochs

    @property
    def uses_teacher(self) -> bool:
        reads = any(LOSSES[loss].needs_teacher_logits for loss in self.losses)
        return reads and (any(lam < 1 for lam in self.lams) or self.search.kind == "optuna")

    def as_dict(self) -> dict:
        return asdict(self)


def _fail(path: str, problem: str) -> UsageError:
    return UsageError(path, problem)


def _as_list(raw: dict, key: str, default: Any) -> list:
    value = raw.get(key, default)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _number(value: Any, path: str, *, kind=float, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise _fail(path, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    value = kind(value)
    if low is not None and (value <= low if low_open else value < low):
        raise _fail(path, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise _fail(path, f"must be <= {high}, got {value}")
    return value


def _range(raw: Any, path: str, *, low: float, high: float | None = None, low_open: bool = False) -> tuple[float, float]:
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise _fail(path, f"expected [low, high], got {raw!r}")
    lo = _number(raw[0], f"{path}[0]", low=low, high=high, low_open=low_open)
    hi = _number(raw[1], f"{path}[1]", low=low, high=high, low_open=low_open)
    if hi <= lo:
        raise _fail(path, f"high must exceed low, got {raw!r}")
    return (lo, hi)


KNOWN_KEYS = {"name", "tasks", "teacher", "fine_tuned", "head_seed", "students", "student_tokenizer", "losses", "lams",
              "taus", "seeds", "epochs", "lr", "batch_size", "micro_batch_size", "max_length", "max_train_samples",
              "max_eval_samples", "data", "search", "scheduler", "resources_per_trial", "max_concurrent_trials",
              "max_failures", "storage", "address", "pad_to_multiple_of", "warm_up"}


def parse_config(raw: Any, *, source: str = "config") -> SweepConfig:
    """Validate a loaded YAML mapping into a SweepConfig; UsageError names the first bad field."""
    from makd.models import describe_student

    if not isinstance(raw, dict):
        raise _fail(source, "expected a YAML mapping at the top level")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise _fail(unknown[0], f"unknown field (known: {', '.join(sorted(KNOWN_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise _fail("name", f"expected a plain experiment name (no '/'), got {name!r}")

    tasks = _as_list(raw, "tasks", None)
    if not tasks:
        raise _fail("tasks", "list at least one GLUE task")
    for i, task in enumerate(tasks):
        try:
            tasks[i] = get_task(str(task)).name
        except UsageError as err:
            raise _fail(f"tasks[{i}]", err.problem) from None
    if len(set(tasks)) != len(tasks):
        raise _fail("tasks", "a task is listed twice")

    students = [str(s) for s in _as_list(raw, "students", None)]
    if not students:
        raise _fail("students", "list at least one student")
    for i, spec in enumerate(students):
        try:
            describe_student(spec)
        except UsageError as err:
            raise _fail(f"students[{i}]", err.problem) from None

    losses = [str(loss) for loss in _as_list(raw, "losses", ["ce", "vanilla", "taylor"])]
    for i, loss in enumerate(losses):
        if loss not in LOSSES:
            raise _fail(f"losses[{i}]", f"unknown loss {loss!r}; choose from {', '.join(loss_names())}")
    if "ce" not in losses:
        losses.insert(0, "ce")  # the CE-only baseline is always part of a sweep: see the README's method section
    lams = [_number(v, f"lams[{i}]", low=0.0, high=1.0) for i, v in enumerate(_as_list(raw, "lams", [0.5]))]
    taus = [_number(v, f"taus[{i}]", low=0.0, low_open=True) for i, v in enumerate(_as_list(raw, "taus", [1.0]))]
    seeds = [_number(v, f"seeds[{i}]", kind=int, low=0) for i, v in enumerate(_as_list(raw, "seeds", [0]))]
    for key, values in (("lams", lams), ("taus", taus), ("seeds", seeds)):
        if not values:
            raise _fail(key, "must not be empty")

    teacher = raw.get("teacher")
    if teacher is not None and not isinstance(teacher, str):
        raise _fail("teacher", f"expected a model id, path or zoo name, got {teacher!r}")

    data = raw.get("data") or {}
    if not isinstance(data, dict) or set(data) - {"glue_dir"}:
        raise _fail("data", "expected a mapping with glue_dir (or omit it: $MAKD_GLUE_DIR, then the hub)")
    glue_dir = data.get("glue_dir")

    search = _parse_search(raw.get("search") or {})
    scheduler = _parse_scheduler(raw.get("scheduler") or {})

    res = raw.get("resources_per_trial") or {}
    if not isinstance(res, dict) or set(res) - {"cpu", "gpu"}:
        raise _fail("resources_per_trial", "expected a mapping with cpu and/or gpu")
    cpu = _number(res.get("cpu", 1), "resources_per_trial.cpu", low=0.0, low_open=True)
    gpu_auto = res.get("gpu") == "auto"
    if isinstance(res.get("gpu"), str) and not gpu_auto:
        raise _fail("resources_per_trial.gpu", f"expected a number or auto, got {res['gpu']!r}")
    gpu = 0.0 if gpu_auto else _number(res.get("gpu", 0), "resources_per_trial.gpu", low=0.0)
    if gpu > 1 and not float(gpu).is_integer():
        raise _fail("resources_per_trial.gpu", f"a fraction must be <= 1 (whole GPUs above 1), got {gpu}")

    epochs = _number(raw.get("epochs", 3), "epochs", kind=int, low=1)
    if scheduler.max_epochs is not None and scheduler.max_epochs != epochs:
        raise _fail("scheduler.max_epochs", f"must equal epochs ({epochs}) or be omitted")
    if scheduler.kind == "asha" and scheduler.grace_period > epochs:
        raise _fail("scheduler.grace_period", f"{scheduler.grace_period} exceeds epochs ({epochs})")

    def optional_int(key: str) -> int | None:
        return None if raw.get(key) is None else _number(raw[key], key, kind=int, low=1)

    max_concurrent = optional_int("max_concurrent_trials")
    storage = raw.get("storage", "runs")
    if not isinstance(storage, str) or not storage:
        raise _fail("storage", f"expected a local path or a URI (s3://, gs://), got {storage!r}")
    address = raw.get("address")
    if address is not None and not isinstance(address, str):
        raise _fail("address", f"expected a Ray address string, got {address!r}")

    cfg = SweepConfig(
        name=name.strip(), tasks=tuple(tasks), students=tuple(students), teacher=teacher,
        fine_tuned=bool(raw.get("fine_tuned", False)),
        head_seed=_number(raw.get("head_seed", 0), "head_seed", kind=int, low=0),
        student_tokenizer=raw.get("student_tokenizer"), losses=tuple(dict.fromkeys(losses)),
        lams=tuple(dict.fromkeys(lams)), taus=tuple(dict.fromkeys(taus)), seeds=tuple(dict.fromkeys(seeds)),
        epochs=epochs, lr=_number(raw.get("lr", 5e-5), "lr", low=0.0, low_open=True),
        batch_size=_number(raw.get("batch_size", 32), "batch_size", kind=int, low=1),
        micro_batch_size=optional_int("micro_batch_size"),
        max_length=_number(raw.get("max_length", 128), "max_length", kind=int, low=8),
        max_train_samples=optional_int("max_train_samples"), max_eval_samples=optional_int("max_eval_samples"),
        glue_dir=str(glue_dir) if glue_dir else None, search=search, scheduler=scheduler, cpu=cpu, gpu=gpu,
        gpu_auto=gpu_auto, pad_to_multiple_of=optional_int("pad_to_multiple_of"), warm_up=_optional_bool(raw, "warm_up"),
        max_concurrent_trials=max_concurrent,
        max_failures=_number(raw.get("max_failures", 1), "max_failures", kind=int, low=0),
        storage=storage, address=address)
    if cfg.micro_batch_size is not None and cfg.micro_batch_size > cfg.batch_size:
        raise _fail("micro_batch_size", f"must not exceed batch_size ({cfg.batch_size}), got {cfg.micro_batch_size}")
    if cfg.uses_teacher and not cfg.teacher:
        raise _fail("teacher", "the KD losses with lam < 1 need a teacher")
    if search.kind == "optuna" and search.n_trials < len(categorical_cells(cfg)):
        raise _fail("search.n_trials", f"{search.n_trials} is fewer than the {len(categorical_cells(cfg))} "
                                       "categorical cells (student x loss x seed): each must be tried once")
    return cfg


def _optional_bool(raw: dict, key: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise _fail(key, f"expected true, false or null (null: on GPUs only), got {value!r}")
    return value


def _parse_search(raw: Any) -> SearchConfig:
    if not isinstance(raw, dict):
        raise _fail("search", "expected a mapping like {kind: grid} or {kind: optuna, n_trials: 20}")
    unknown = sorted(set(raw) - {"kind", "n_trials", "seed", "lam", "lr", "tau"})
    if unknown:
        raise _fail(f"search.{unknown[0]}", "unknown field")
    kind = raw.get("kind", "grid")
    if kind not in ("grid", "optuna"):
        raise _fail("search.kind", f"expected grid or optuna, got {kind!r}")
    if kind == "grid":
        if set(raw) - {"kind"}:
            raise _fail("search", "grid search takes no other fields (list values in lams/taus/seeds)")
        return SearchConfig()
    n_trials = _number(raw.get("n_trials", 0), "search.n_trials", kind=int, low=1)
    return SearchConfig(kind="optuna", n_trials=n_trials, seed=_number(raw.get("seed", 0), "search.seed", kind=int),
                        lam=_range(raw.get("lam", [0.0, 1.0]), "search.lam", low=0.0, high=1.0),
                        lr=_range(raw["lr"], "search.lr", low=0.0, low_open=True) if "lr" in raw else None,
                        tau=_range(raw["tau"], "search.tau", low=0.0, low_open=True) if "tau" in raw else None)


def _parse_scheduler(raw: Any) -> SchedulerConfig:
    if not isinstance(raw, dict):
        raise _fail("scheduler", "expected a mapping like {kind: asha, grace_period: 1, reduction_factor: 2}")
    unknown = sorted(set(raw) - {"kind", "grace_period", "reduction_factor", "max_epochs"})
    if unknown:
        raise _fail(f"scheduler.{unknown[0]}", "unknown field")
    kind = raw.get("kind", "none")
    if kind not in ("none", "asha"):
        raise _fail("scheduler.kind", f"expected none or asha, got {kind!r}")
    return SchedulerConfig(
        kind=kind, grace_period=_number(raw.get("grace_period", 1), "scheduler.grace_period", kind=int, low=1),
        reduction_factor=_number(raw.get("reduction_factor", 2), "scheduler.reduction_factor", kind=int, low=2),
        max_epochs=None if raw.get("max_epochs") is None else _number(raw["max_epochs"], "scheduler.max_epochs",
                                                                       kind=int, low=1))


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and validate a YAML sweep config; overrides (from CLI flags) replace top-level fields first."""
    path = Path(path)
    if not path.is_file():
        raise _fail(str(path), "config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise _fail(f"{path}{where}", f"not valid YAML ({getattr(err, 'problem', err)})") from None
    raw = dict(raw) if isinstance(raw, dict) else raw
    if isinstance(raw, dict):
        for key, value in (overrides or {}).items():
            if value is not None:
                if key == "glue_dir":
                    raw["data"] = {**(raw.get("data") or {}), "glue_dir": value}
                else:
                    raw[key] = value
    return parse_config(raw, source=str(path))


def categorical_cells(cfg: SweepConfig) -> list[dict]:
    """(student, loss, seed) cells: what Optuna must cover once each while it searches lam/lr/tau."""
    return [{"student": s, "loss": loss, "seed": seed}
            for s, loss, seed in itertools.product(cfg.students, cfg.losses, cfg.seeds)]


def grid_cells(cfg: SweepConfig) -> list[dict]:
    """The full grid for one task, without duplicates that would train the identical student twice.

    `ce` runs once per (student, seed) at lam=1; a KD loss at lam=1 is exactly `ce`, so it is not run again;
    losses whose value ignores tau (ce, mse, ortho) run at tau=1 only.
    """
    cells, seen = [], set()
    for student, loss, lam, tau, seed in itertools.product(cfg.students, cfg.losses, cfg.lams, cfg.taus, cfg.seeds):
        if loss == "ce":
            lam, tau = 1.0, 1.0
        elif lam >= 1.0:
            continue
        if not LOSSES[loss].uses_tau:  # one tau is enough
            tau = 1.0
        key = (student, loss, lam, tau, seed)
        if key not in seen:
            seen.add(key)
            cells.append({"student": student, "loss": loss, "lam": float(lam), "tau": float(tau), "seed": int(seed),
                          "lr": float(cfg.lr)})
    return cells


def is_remote_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def experiment_root(cfg: SweepConfig) -> str:
    """Absolute local path or URI of the sweep's experiment dir (Ray requires absolute storage paths)."""
    if is_remote_uri(cfg.storage):
        return cfg.storage.rstrip("/") + "/" + cfg.name
    base = cfg.storage[len("file://"):] if cfg.storage.startswith("file://") else cfg.storage
    return str((Path(os.path.expanduser(base)).resolve()) / cfg.name)


def trial_budget(cfg: SweepConfig) -> int:
    per_task = cfg.search.n_trials if cfg.search.kind == "optuna" else len(grid_cells(cfg))
    return per_task * len(cfg.tasks)
