"""Sweep config: a YAML file, validated completely before Ray starts; each task then runs its search stage (and a
final stage when the search stops trials early or samples settings).

Every error names the YAML field (`scheduler.grace_period: ...`) so `makd sweep` can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from makd.config import (
    OPTION_NAMES,
    TrainOptions,
    check_loss_for_task,
    field_help,
    parse_field,
    parse_option,
    parse_section,
    type_text,
)
from makd.errors import UsageError
from makd.file_tasks import EXAMPLE as FILE_TASK_EXAMPLE
from makd.file_tasks import FIELDS as FILE_TASK_FIELDS
from makd.file_tasks import parse_file_task
from makd.losses import LOSSES, loss_names
from makd.tasks import BUILTIN_TASK_NAMES, CAUSAL_LM, get_task
from makd.teacher_finetune import FinetuneOptions
from makd_sweep.fields import as_list
from makd_sweep.pack import PackConfig, parse_pack
from makd_sweep.search import SearchConfig, get_search_kind, parse_search, uses_teacher
from makd_sweep.search.pbt import check_pbt
from makd_sweep.search_space import FIXED_BY, check_not_fixed, parse_space
from makd_sweep.storage import is_remote_uri
from makd_sweep.sweep_config import (
    AdaptiveSeeds,
    DataSection,
    FinalConfig,
    Resources,
    SchedulerConfig,
    Selection,
    SweepConfig,
    Transfer,
    WaitFor,
)
from makd_sweep.tracking import TrackingConfig, parse_tracking

REQUIRED = "required"


@dataclass(frozen=True)
class SweepKey:
    """One top-level sweep key: its YAML type, default and meaning (what docs/sweep-config.md lists; `default` is
    the parsed value where it is one, else text), and for a section the dataclass that declares its keys."""

    type: str
    default: Any
    meaning: str
    section: type | None = None


def _declared(name: str) -> SweepKey:
    """A top-level key declared as a SweepConfig field."""
    f = next(f for f in fields(SweepConfig) if f.name == name)
    return SweepKey(type_text(SweepConfig, name), REQUIRED if f.default is MISSING else f.default, field_help(f))


_ALL_DEFAULTS = object()


def _section(cls: type, meaning: str, default: Any = _ALL_DEFAULTS, *, nullable: bool = False) -> SweepKey:
    """A section key: a mapping whose keys are the fields of `cls` (default: every key's, i.e. cls())."""
    keys = "{" + ", ".join(f.name for f in fields(cls) if "help" in f.metadata) + "}" + (" or null" if nullable else "")
    return SweepKey(keys, cls() if default is _ALL_DEFAULTS else default, meaning, cls)


SWEEP_FIELDS: dict[str, SweepKey] = {
    **{name: _declared(name) for name in ("name", "tasks", "students", "losses", "lams", "taus", "seeds")},
    "final": _section(FinalConfig, "the final stage: each method's top_k search settings rerun for every final seed, "
                      "full budget, no early stopping; null turns it off",
                      "on with a scheduler, random or Optuna: {seeds: the sweep's seeds, top_k: 1}", nullable=True),
    "selection": _section(Selection, "what chooses epochs and settings: a seeded hold-out of train (dev reported "
                          "untouched), or dev (optimistic; every table says so)", "{split: train_holdout, fraction: "
                          "0.1}"),
    "data": _section(DataSection, "where the GLUE files come from", "$MAKD_GLUE_DIR, else the hub's nyu-mll/glue"),
    "transfer": _section(Transfer, "transfer data: examples the student learns from through the KD term only "
                         "(labels dropped from the training split, or a file of texts); losses that need a label "
                         "(ce, taylor, ortho) train on the labeled examples only, as many steps per epoch",
                         "null: every training example keeps its label", nullable=True),
    "search": _section(SearchConfig, "the search kind (makd_sweep/search/): the full grid, random settings from search_space, "
                       "or Optuna's TPE over ranges and search_space; "
                       "objectives: [score, params | latency | device_hours] searches score and a cost with NSGA-II "
                       "(scheduler none)"),
    "search_space": SweepKey("{KEY: {DISTRIBUTION: ARGS}}", "null: nothing searched", "searched keys (lam, tau, lr, weight_decay, "
                             "warmup_ratio, max_grad_norm, batch_size), each with a Ray Tune distribution: "
                             "uniform/loguniform/randint/lograndint [low, high], their q forms [low, high, q], "
                             "choice/grid [values]; searched by search.kind random or optuna (grid: grid values "
                             "only); a key searched here must not also be fixed (lr:, lams:, taus:)"),
    "scheduler": _section(SchedulerConfig, "early stopping of weak trials by ASHA or HyperBand"),
    "teacher_finetune": _section(FinetuneOptions, "fine-tune the teacher per task first, cached "
                                 "(makd/teacher_finetune.py); null: the paper's teacher, not fine-tuned", None,
                                 nullable=True),
    "resources_per_trial": _section(Resources, "per trial: CPUs, and a GPU fraction, whole GPUs or auto",
                                    "{cpu: 1, gpu: 0}"),
    **{name: _declared(name) for name in ("max_concurrent_trials", "max_failures", "storage", "address")},
    "wait_for": _section(WaitFor, "before the first trial, wait until the Ray cluster holds this many GPUs / CPUs in "
                         "all (autoscaled workers still joining), else fail in one line; null: start with what is "
                         "there", None, nullable=True),
    "pack": _section(PackConfig, "train K trial configs of one student in one Ray trial (makd_sweep/pack.py): the final "
                     "stage, and a grid search without a scheduler; sequential: one after another, each member's "
                     "result as alone; fused (for GPUs): members of one seed and lr as one vmapped model "
                     "(makd/fused.py); each member still one row of trials.csv", nullable=True),
    "tracking": _section(TrackingConfig, "experiment trackers fed by Ray Tune callbacks (makd_sweep/tracking.py)", None,
                         nullable=True),
}
SWEEP_KEYS = set(SWEEP_FIELDS)
KNOWN_KEYS = SWEEP_KEYS | set(OPTION_NAMES)  # + every TrainOptions field (makd/config.py), e.g. epochs, lr


def _top(raw: dict, name: str) -> Any:
    """A top-level key declared on SweepConfig, typed and bounded by its declaration (missing: its default)."""
    f = next(f for f in fields(SweepConfig) if f.name == name)
    if name not in raw:
        if f.default is MISSING:
            raise UsageError(name, f"required: {f.metadata['help']}")
        return f.default
    return parse_field(SweepConfig, name, raw[name], name)


def parse_config(raw: Any, *, source: str = "config") -> SweepConfig:
    """Validate a loaded YAML mapping into a SweepConfig; UsageError names the first bad field."""
    from makd.models import describe_student

    if not isinstance(raw, dict):
        raise UsageError(source, "expected a YAML mapping at the top level")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise UsageError(unknown[0], f"unknown field (known: {', '.join(sorted(KNOWN_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise UsageError("name", f"expected a plain experiment name (no '/'), got {name!r}")

    tasks = as_list(raw, "tasks", None)
    if not tasks:
        raise UsageError("tasks", "list at least one GLUE task, or your own: " + FILE_TASK_EXAMPLE)
    file_tasks = []
    for i, task in enumerate(tasks):
        if isinstance(task, dict):  # a task defined by the user's files (makd/file_tasks.py)
            file_tasks.append(parse_file_task(task, f"tasks[{i}]", reserved=BUILTIN_TASK_NAMES))
            tasks[i] = file_tasks[-1].name
            continue
        try:
            tasks[i] = get_task(str(task)).name
        except UsageError as err:
            raise UsageError(f"tasks[{i}]", err.problem) from None
    if len(set(tasks)) != len(tasks):
        raise UsageError("tasks", "a task is listed twice")

    students = [str(s) for s in as_list(raw, "students", None)]
    if not students:
        raise UsageError("students", "list at least one student")
    for i, spec in enumerate(students):
        try:
            describe_student(spec)
        except UsageError as err:
            raise UsageError(f"students[{i}]", err.problem) from None

    losses = list(_top(raw, "losses"))
    for i, loss in enumerate(losses):
        if loss not in LOSSES:
            raise UsageError(f"losses[{i}]", f"unknown loss {loss!r}; choose from {', '.join(loss_names())}")
    if "ce" not in losses:
        losses.insert(0, "ce")  # the CE-only baseline is always part of a sweep: see docs/method.md
    lams, taus, seeds = (_top(raw, key) for key in ("lams", "taus", "seeds"))
    for key, values in (("lams", lams), ("taus", taus), ("seeds", seeds)):
        if not values:
            raise UsageError(key, "must not be empty")

    train = parse_train_options(_with_transfer(_with_selection(raw)))
    teacher_finetune = _parse_teacher_finetune(raw, train)
    glue_dir = parse_section(DataSection, raw.get("data"), "data", "{glue_dir: ../glue}").glue_dir
    search = parse_search(raw.get("search"))
    search_space = parse_space(raw.get("search_space"))
    check_not_fixed(search_space, raw)
    scheduler = parse_section(SchedulerConfig, raw.get("scheduler"), "scheduler",
                              "{kind: asha, grace_period: 1, reduction_factor: 2}")
    cpu, gpu, gpu_auto = _parse_resources(raw.get("resources_per_trial"))

    epochs = train.epochs
    if scheduler.max_epochs is not None and scheduler.max_epochs != epochs:
        raise UsageError("scheduler.max_epochs", f"must equal epochs ({epochs}) or be omitted")
    if scheduler.kind == "asha" and scheduler.grace_period > epochs:
        raise UsageError("scheduler.grace_period", f"{scheduler.grace_period} exceeds epochs ({epochs})")

    cfg = SweepConfig(
        teacher_finetune=teacher_finetune,
        name=name.strip(), tasks=tuple(tasks), file_tasks=tuple(file_tasks), students=tuple(students),
        losses=tuple(dict.fromkeys(losses)), lams=tuple(dict.fromkeys(lams)), taus=tuple(dict.fromkeys(taus)),
        seeds=tuple(dict.fromkeys(seeds)), train=train, final=_parse_final(raw, search, scheduler, seeds),
        glue_dir=glue_dir, search=search, scheduler=scheduler, cpu=cpu, gpu=gpu, gpu_auto=gpu_auto,
        max_concurrent_trials=_top(raw, "max_concurrent_trials"), max_failures=_top(raw, "max_failures"),
        storage=_top(raw, "storage"), address=_top(raw, "address"), tracking=parse_tracking(raw.get("tracking")),
        wait_for=_parse_wait_for(raw.get("wait_for")), pack=parse_pack(raw.get("pack")), search_space=search_space)
    if cfg.scheduler.kind == "hyperband" and cfg.max_concurrent_trials is not None:
        raise UsageError("max_concurrent_trials", "HyperBand pauses a bracket's trials until all of them reach its "
                                                  "rung: a limit on trials at once leaves a bracket unfilled (Ray "
                                                  "counts paused trials); limit resources_per_trial instead")
    check_causal_lm(cfg)
    check_transfer(cfg)
    for task in tasks:
        own = cfg.file_task(task)
        for i, loss in enumerate(cfg.losses):
            check_loss_for_task(loss, task, own.type == "regression" if own else get_task(task).is_regression,
                                f"losses[{i}]")
    if uses_teacher(cfg) and not cfg.train.teacher:
        raise UsageError("teacher", "the KD losses with lam < 1 need a teacher")
    get_search_kind(search.kind).check(cfg)
    check_pbt(cfg)
    return cfg


def check_causal_lm(cfg: SweepConfig) -> None:
    """A sweep of causal-LM tasks (makd/lm/train.py): all its tasks are, it has a causal-LM teacher (whose responses
    are every loss's targets, ce's too), and asks only for what an LM trial does; one line before Ray starts."""
    from makd.lm.train import check_lm_loss, check_lm_tau

    lm = [t for t in cfg.tasks if (cfg.file_task(t).type == CAUSAL_LM if cfg.file_task(t) else get_task(t).is_causal_lm)]
    if not lm:
        return
    if len(lm) != len(cfg.tasks):
        other = next(t for t in cfg.tasks if t not in lm)
        raise UsageError("tasks", f"{lm[0]} is a causal-LM task and {other} is not: a sweep's students are of one "
                                  "kind, so run them in two sweeps")
    if not cfg.train.teacher:
        raise UsageError("teacher", f"{lm[0]} is a causal-LM task: its targets are the teacher's responses, so it "
                                    "needs a causal-LM teacher (e.g. zoo:smollm2-135m)")
    if cfg.scheduler.kind == "pbt":
        raise UsageError("scheduler.kind", f"{lm[0]} is a causal-LM task: pbt changes an encoder student's setting "
                                           "between epochs; a causal-LM trial (makd/lm/train.py) cannot go on with "
                                           "another one yet")
    for i, loss in enumerate(cfg.losses):
        try:
            check_lm_loss(loss)
        except UsageError as err:
            raise UsageError(f"losses[{i}]", err.problem) from None
    for tau in cfg.taus:
        check_lm_tau(tau)
    if cfg.teacher_finetune is not None:
        raise UsageError("teacher_finetune", "fine-tunes an encoder teacher's head; a causal-LM task's teacher is "
                                             "used as it is")
    if cfg.pack.on and cfg.pack.mode == "fused":
        raise UsageError("pack.mode", "fused stacks encoder classifiers; pack causal-LM trials sequentially (mode: sequential)")
    if cfg.gpu_auto:
        raise UsageError("resources_per_trial.gpu", "auto measures an encoder classifier's step; give causal-LM "
                                                    "trials a number (e.g. 0.5)")


def _parse_resources(raw: Any) -> tuple[float, float, bool]:
    """`resources_per_trial` -> (cpu, gpu, gpu_auto): gpu is a number, or auto (0 until the driver measured)."""
    raw = {} if raw is None else raw
    gpu_auto = isinstance(raw, dict) and raw.get("gpu") == "auto"
    if isinstance(raw, dict) and isinstance(raw.get("gpu"), str) and not gpu_auto:
        raise UsageError("resources_per_trial.gpu", f"expected a number or auto, got {raw['gpu']!r}")
    res = parse_section(Resources, {k: v for k, v in raw.items() if not (k == "gpu" and gpu_auto)}
                        if isinstance(raw, dict) else raw, "resources_per_trial", "{cpu: 1, gpu: 0.25}")
    if res.gpu > 1 and not float(res.gpu).is_integer():
        raise UsageError("resources_per_trial.gpu", f"a fraction must be <= 1 (whole GPUs above 1), got {res.gpu}")
    return res.cpu, res.gpu, gpu_auto


def _parse_wait_for(section: Any) -> WaitFor | None:
    if section is None:
        return None
    wait = parse_section(WaitFor, section, "wait_for", "{gpus: 4, timeout_s: 900}")
    if not (wait.gpus or wait.cpus):
        raise UsageError("wait_for", "name the gpus and/or cpus to wait for, e.g. {gpus: 4, timeout_s: 900}")
    return wait


def _parse_final(raw: dict, search: SearchConfig, scheduler: SchedulerConfig, seeds: tuple[int, ...]
                 ) -> FinalConfig | None:
    """`final:` -> FinalConfig. Missing: on (over the sweep's seeds, top 1) whenever the search stops trials early
    or samples settings (ASHA, HyperBand, random, Optuna), so that methods are compared at one budget; `final: null` turns it off."""
    if "final" not in raw:
        early = scheduler.kind != "none" or search.kind != "grid"
        return FinalConfig(tuple(dict.fromkeys(seeds))) if early else None
    if raw["final"] is None or raw["final"] is False:
        return None
    example = "{seeds: [0, 1, 2], top_k: 1} or {seeds: {min: 3, max: 10}, tolerance: 1.0}"
    section = raw["final"]
    adaptive = None
    if isinstance(section, dict) and isinstance(section.get("seeds"), dict):
        adaptive = parse_section(AdaptiveSeeds, section["seeds"], "final.seeds", "{min: 3, max: 10, step: 1}")
        if adaptive.max < adaptive.min:
            raise UsageError("final.seeds.max", f"must be >= min ({adaptive.min}), got {adaptive.max}")
        section = {**section, "seeds": list(range(adaptive.max))}
    final = parse_section(FinalConfig, {"seeds": list(seeds), **section} if isinstance(section, dict) else section,
                          "final", example)  # final.seeds missing: the sweep's seeds
    if not final.seeds:
        raise UsageError("final.seeds", "must not be empty")
    if adaptive is not None and final.top_k != 1:
        raise UsageError("final.top_k", "adaptive seeds compare one setting per method: use top_k: 1")
    if adaptive is None and "tolerance" in section:
        raise UsageError("final.tolerance", "only with adaptive seeds (final.seeds: {min, max})")
    return dataclasses.replace(final, seeds=tuple(dict.fromkeys(final.seeds)), adaptive=adaptive)


def _parse_teacher_finetune(raw: dict, train: TrainOptions) -> FinetuneOptions | None:
    """`teacher_finetune: {epochs, lr, batch_size, max_train_samples}`: fine-tune the pretrained teacher on each
    task's training split first (makd/teacher_finetune.py); null or absent: the paper's teacher, not fine-tuned."""
    if raw.get("teacher_finetune") is None:
        return None
    options = parse_section(FinetuneOptions, raw["teacher_finetune"], "teacher_finetune",
                            "{epochs: 3, lr: 2e-5, batch_size: 32}")
    if train.fine_tuned:
        raise UsageError("teacher_finetune", "fine_tuned: true says the teacher is fine-tuned already; drop one")
    if not train.teacher:
        raise UsageError("teacher_finetune", "needs a teacher to fine-tune")
    return options


def _with_selection(raw: dict) -> dict:
    """`selection: {split: train_holdout, fraction: 0.1}` is the sweep's spelling of the training option
    `holdout_fraction` (choose epochs and settings on a seeded hold-out of train; report dev untouched)."""
    if raw.get("selection") is None:
        return raw
    selection = parse_section(Selection, raw["selection"], "selection", "{split: train_holdout, fraction: 0.1}")
    if selection.split == "dev" and "fraction" in raw["selection"]:
        raise UsageError("selection.fraction", "only with split: train_holdout")
    fraction = 0.0 if selection.split == "dev" else selection.fraction
    if raw.get("holdout_fraction") not in (None, fraction):
        raise UsageError("selection", f"fraction {fraction} conflicts with holdout_fraction {raw['holdout_fraction']}")
    return {**raw, "holdout_fraction": fraction}


def _with_transfer(raw: dict) -> dict:
    """`transfer: {labeled: N, file: PATH}` is the sweep's spelling of the training options `transfer_labeled` and
    `transfer_file` (makd/transfer.py)."""
    if raw.get("transfer") is None:
        return raw
    transfer = parse_section(Transfer, raw["transfer"], "transfer", "{labeled: 1000}")
    if transfer.labeled is None and transfer.file is None:
        raise UsageError("transfer", "give labeled: N (labels kept on N training examples), file: PATH, or both")
    out = dict(raw)
    for key, value in (("transfer_labeled", transfer.labeled), ("transfer_file", transfer.file)):
        if value is None:
            continue
        if raw.get(key) not in (None, value):
            raise UsageError("transfer", f"conflicts with {key} {raw[key]}")
        out[key] = str(Path(value).expanduser().resolve()) if key == "transfer_file" else value
    return out


def check_transfer(cfg: SweepConfig) -> None:
    """Transfer data needs a loss that can learn from an example without a label, and a task with a head."""
    if cfg.train.transfer_labeled is None and cfg.train.transfer_file is None:
        return
    if not any(LOSSES[loss].needs_teacher_logits and not LOSSES[loss].needs_label for loss in cfg.losses):
        raise UsageError("transfer", f"every loss ({', '.join(cfg.losses)}) needs a label on every example, so none "
                                     "would learn from a transfer example: add vanilla or pseudo_label")
    if all(lam >= 1.0 for lam in cfg.lams):  # a sweep runs no KD loss at λ = 1 (makd_sweep/search/grid.py)
        raise UsageError("transfer", "every λ is 1, where a sweep runs ce alone: list a λ below 1")
    if cfg.pack.on and cfg.pack.mode == "fused":
        raise UsageError("pack.mode", "a fused pack's members share every batch, and with transfer data a loss that "
                                      "needs labels trains on other batches (the labeled rows): use sequential")
    for task in cfg.tasks:
        if cfg.file_task(task).type == CAUSAL_LM if cfg.file_task(task) else get_task(task).is_causal_lm:
            raise UsageError("transfer", f"{task} is a causal-LM task: its students learn the teacher's responses")


def parse_train_options(raw: dict) -> TrainOptions:
    """The top-level training keys (every TrainOptions field), typed and bounded by makd/config.py's schema."""
    given = {name: parse_option(name, raw[name]) for name in OPTION_NAMES if name in raw}
    options = TrainOptions(**given)
    try:
        options.validate()
    except UsageError as err:  # validate names fields as flags (micro-batch-size): here they are YAML keys
        raise UsageError(err.field.replace("-", "_"), err.problem) from None
    return options


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and validate a YAML sweep config; overrides (from CLI flags) replace top-level fields first."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(str(path), "config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}", f"not valid YAML ({getattr(err, 'problem', err)})") from None
    raw = dict(raw) if isinstance(raw, dict) else raw
    if isinstance(raw, dict):
        raw = with_overrides(raw, overrides)
    return parse_config(raw, source=str(path))


def with_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A raw config with top-level keys replaced (None: keep the config's); `glue_dir` is data.glue_dir."""
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            if key == "glue_dir":
                raw["data"] = {**(raw.get("data") or {}), "glue_dir": value}
            else:
                raw[key] = value
    return raw


def only_tasks(cfg: SweepConfig, tasks: str, *, rename: bool) -> SweepConfig:
    """The sweep restricted to some of its tasks (`makd sweep --tasks`): a long sweep run in pieces that each fit
    a session. Trials are per task (each task has its own search, ASHA and final stage), so a piece's trials are
    the whole sweep's trials for those tasks. `rename` gives the piece its own experiment, NAME-TASK1-TASK2... (as listed), so
    pieces never overwrite each other's trials.csv."""
    wanted = [t.strip() for t in tasks.split(",") if t.strip()]
    if not wanted:
        raise UsageError("tasks", "list at least one of the config's tasks: " + ", ".join(cfg.tasks))
    unknown = [t for t in wanted if t not in cfg.tasks]
    if unknown:
        raise UsageError("tasks", f"{', '.join(unknown)} not in the config's tasks ({', '.join(cfg.tasks)})")
    if len(set(wanted)) != len(wanted):
        raise UsageError("tasks", f"a task is listed twice: {tasks}")
    kept = tuple(t for t in cfg.tasks if t in wanted)  # the config's order
    return dataclasses.replace(cfg, tasks=kept, file_tasks=tuple(t for t in cfg.file_tasks if t.name in kept),
                               name="-".join((cfg.name, *wanted)) if rename else cfg.name)


def experiment_root(cfg: SweepConfig) -> str:
    """Absolute local path or URI of the sweep's experiment dir (Ray requires absolute storage paths)."""
    if is_remote_uri(cfg.storage):
        return cfg.storage.rstrip("/") + "/" + cfg.name
    base = cfg.storage[len("file://"):] if cfg.storage.startswith("file://") else cfg.storage
    return str((Path(os.path.expanduser(base)).resolve()) / cfg.name)


def sweep_yaml(config: dict) -> str:
    """A validated config (`SweepConfig.as_dict()`, as sweep.json keeps it) as the sweep YAML that reruns it: the
    training options at the top level, data, resources_per_trial, the search kind's own fields, an explicit
    `final`. What the report shows under the sweep's facts (`parse_config` reads it back to the same config)."""
    raw: dict = {k: config[k] for k in ("name", "tasks", "students", "losses", "lams", "taus", "seeds")}
    defined = {t["name"]: {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in t.items()
                           if v is not None and k in FILE_TASK_FIELDS} for t in config.get("file_tasks") or []}
    raw["tasks"] = [defined.get(task, task) for task in raw["tasks"]]
    train = config.get("train") or {k: config[k] for k in OPTION_NAMES if k in config}  # older sweep.json: top level
    raw.update({k: v for k, v in train.items() if v is not None})
    if config.get("glue_dir"):
        raw["data"] = {"glue_dir": config["glue_dir"]}
    search = config.get("search") or {"kind": "grid"}
    fields = get_search_kind(search.get("kind", "grid")).fields
    raw["search"] = {k: v for k, v in search.items() if k in fields and v is not None}
    if config.get("search_space"):  # asdict's [{key, distribution, args}] back to {key: {distribution: args}}
        raw["search_space"] = {d["key"]: {d["distribution"]: list(d["args"])} for d in config["search_space"]}
        for key in raw["search_space"]:  # searched, so not fixed (check_not_fixed)
            raw.pop(FIXED_BY[key], None)
    raw["scheduler"] = {k: v for k, v in (config.get("scheduler") or {}).items() if v is not None}
    final = config.get("final")  # null: no final stage (missing would turn one on for ASHA or Optuna)
    if final is not None:  # adaptive seeds are written as YAML spells them: seeds: {min, max, step}
        adaptive = final.get("adaptive")
        final = {**{k: v for k, v in final.items() if k not in ("adaptive", "tolerance")},
                 **({"seeds": adaptive, "tolerance": final["tolerance"]} if adaptive else {})}
    raw["final"] = final
    raw["resources_per_trial"] = {"cpu": config.get("cpu", 1.0),
                                  "gpu": "auto" if config.get("gpu_auto") else config.get("gpu", 0.0)}
    raw.update({k: config[k] for k in ("max_concurrent_trials", "max_failures", "storage", "address", "tracking",
                                       "teacher_finetune", "wait_for") if config.get(k) is not None})
    pack = config.get("pack") or {}
    if pack.get("auto") or pack.get("size", 1) > 1:  # as written: auto, not the size the driver resolved it to
        raw["pack"] = {"size": "auto" if pack.get("auto") else pack["size"], "mode": pack.get("mode", "sequential")}
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
