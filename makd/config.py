"""What determines one training run, declared once.

Each field of `TrainOptions` and `TrainConfig` carries its help text and its bounds; from them come the `makd
distill` flags (`add_option_flags`), the sweep YAML's top-level training keys and their validation
(`parse_option`), and the fields every trial of a sweep shares (a `TrainOptions`). A new training option is one
field here, with its `option(...)` metadata.

- `TrainOptions`: what a sweep sets once for all its trials (teacher, epochs, batch size, precision, ...).
- `TrainConfig`: the options plus what varies per run: task, student, loss, λ, τ, seed.
"""

from __future__ import annotations

import argparse
import functools
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from makd.errors import UsageError

GROUP_TITLES = {"data": None, "teacher": "teacher", "student": "student", "loss": "loss", "training": "training"}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes (makd/compiled.py)


def option(default: Any, help: str | Callable[[], str], *, group: str = "training", low: float | None = None,
           low_open: bool = False, high: float | None = None, high_open: bool = False,
           choices: tuple[str, ...] | None = None, required: bool = False, default_text: str | None = None) -> Any:
    """A config field with what the CLI and the sweep config need: help (text, or a function for registry-built
    help), flag group, bounds (>= low, or > low with low_open; <= high, or < high with high_open; for a tuple
    field, of each element) and choices. `required`: no default; `default_text`: the default in words where the
    parser supplies it from elsewhere (the reference page prints it)."""
    meta = {"help": help, "group": group, "low": low, "low_open": low_open, "high": high, "high_open": high_open,
            "choices": choices, "default_text": default_text}
    if required:
        return field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default: use a tuple")
    return field(default=default, metadata=meta)


# The settings a run may change between epochs and go on from its checkpoint (Population Based Training's explore
# step, and the replay of a PBT schedule): each is read afresh every step (λ, τ, the clipping norm) or set on the
# optimizer (lr, weight decay), so the weights, optimizer moments, schedule position and RNG carry over unchanged.
# Not batch_size, warmup_ratio or epochs: they reshape the learning-rate schedule the checkpoint is partway along.
CHANGEABLE_SETTINGS = frozenset({"lam", "tau", "lr", "weight_decay", "max_grad_norm"})


@dataclass
class TrainOptions:
    """The options a sweep shares across its trials (its YAML's top-level keys); `makd distill` flags too."""

    teacher: str | None = option(None, "AutoModelForSequenceClassification id or path, or zoo:minilm-l6 / "
                                 "zoo:mpnet-base", group="teacher")
    fine_tuned: bool = option(False, "the teacher checkpoint already has a trained head (default: a fresh seeded "
                              "head, as in the paper)", group="teacher")
    head_seed: int = option(0, "seed of the teacher's fresh classification head", group="teacher", low=0)
    student_tokenizer: str | None = option(None, "tokenizer for an LxH student (default zoo:minilm-l6, the "
                                           "bert-base-uncased vocab)", group="student")
    max_length: int = option(128, "tokens per example", group="data", low=8)
    max_train_samples: int | None = option(None, "deterministic subsample of the train split", group="data", low=1)
    max_eval_samples: int | None = option(None, "deterministic subsample of each dev split", group="data", low=1)
    data_seed: int = option(0, "subsampling seed: fixed across training seeds so the teacher cache is shared",
                            group="data", low=0)
    holdout_fraction: float = option(0.1, "hold out this fraction of the training set (seeded by data-seed) and "
                                     "choose the epoch (and a sweep's settings) on it, so that the dev set is "
                                     "reported untouched, as a test set (0: choose on the dev set that is reported, "
                                     "an optimistic score)", group="data", low=0.0, high=1.0,
                                     high_open=True)
    transfer_labeled: int | None = option(None, "transfer data from the task's own training split: this many "
                                          "seeded examples keep their labels (the hold-out is taken from them), "
                                          "every other one is a transfer example, which only the KD term learns "
                                          "from (makd/transfer.py)", group="data", low=1)
    transfer_file: str | None = option(None, "a csv/tsv/jsonl/parquet file of unlabeled texts in the task's text "
                                       "columns, added to the training split as transfer examples", group="data")
    epochs: int = option(3, "training epochs", low=1)
    batch_size: int = option(32, "examples per optimizer step", low=1)
    micro_batch_size: int | None = option(None, "run each batch forward/backward in chunks of this size: the same "
                                          "gradient with a chunk's activation memory (default: the whole batch)",
                                          low=1)
    eval_batch_size: int = option(128, "examples per evaluation batch", low=1)
    inference_batch_size: int = option(32, "batch size at which the student's inference throughput is measured "
                                       "(beside its batch-1 latency; 0: no measurement)", low=0)
    lr: float = option(5e-5, "AdamW learning rate (the paper's)", low=0.0, low_open=True)
    weight_decay: float = option(0.01, "AdamW weight decay", low=0.0)
    warmup_ratio: float = option(0.1, "fraction of the steps with a linear learning-rate warm-up", low=0.0,
                                 high=1.0, high_open=True)
    max_grad_norm: float = option(1.0, "gradient clipping norm", low=0.0, low_open=True)
    precision: str = option("auto", "auto (bf16/fp16 autocast on GPU, fp32 on CPU), fp32, bf16, fp16",
                            choices=("auto", "fp32", "bf16", "fp16"))
    pad_to_multiple_of: int | None = option(None, "round each batch's width up to a multiple of this (default: 32 "
                                            "on GPU, a few shapes CUDA warms up once; exact dynamic padding on "
                                            "CPU)", low=1)
    warm_up: bool | None = option(None, "run every batch shape once before training (default: on GPU only)")
    compile: str | None = option(None, "torch.compile the student: default (fused kernels), reduce-overhead (also CUDA "
                                 "graphs) or max-autotune (default: eager); compiled code is cached under "
                                 "$MAKD_HOME/compile, shared by the trials of a node, so each shape compiles once",
                                 choices=COMPILE_MODES)
    lm_max_new_tokens: int = option(32, "causal-LM tasks: the most tokens of each teacher response (greedy "
                                    "decoding, generated once and cached)", group="teacher", low=1, high=4096)
    lm_top_k: int = option(64, "causal-LM tasks: teacher log-probabilities kept per token in the teacher cache (every "
                           "other token's mass: one tail bucket; results/bench-lm measures the error)",
                           group="teacher", low=1)
    lm_topk_dtype: str = option("float16", "causal-LM tasks: the dtype of the cached top-k log-probabilities",
                                group="teacher", choices=("float16", "bfloat16", "float32"))

    def teacher_for(self, task: str):
        """The TeacherSpec these options give a task: what its teacher-logit cache is keyed by."""
        from makd.teacher_spec import TeacherSpec

        if not self.teacher:
            raise UsageError("teacher", "no teacher given")
        return TeacherSpec(self.teacher, task, self.head_seed, self.fine_tuned, self.max_length)

    def validate(self) -> None:
        """Raise UsageError naming the first bad field (in its flag spelling, e.g. micro-batch-size)."""
        for f in fields(self):
            check_bounds(f, getattr(self, f.name), flag_name(f.name))
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise UsageError("micro-batch-size", f"must be between 1 and batch-size ({self.batch_size}), "
                                                 f"got {self.micro_batch_size}")


def _loss_help() -> str:
    from makd.losses import loss_help

    return f"default taylor; {loss_help()}"


def _task_help() -> str:
    from makd.tasks import TASKS

    return ", ".join(TASKS)


@dataclass(kw_only=True)
class TrainConfig(TrainOptions):
    """Everything that determines one training run (and so must match when it resumes)."""

    task: str = option(None, _task_help, group="data", required=True)
    student: str = option(None, "LxH shape (2x128, 4x312, 6x768: random init), a pretrained id/path/zoo name, or "
                          "MODEL@LAYERS for a layer-truncated copy (zoo:minilm-l6@0,5, zoo:mpnet-base@0:12:2)",
                          group="student", required=True)
    loss: str = option("taylor", _loss_help, group="loss")
    lam: float = option(0.5, "weight of CE in lam*CE + (1-lam)*L_KD", group="loss")
    tau: float = option(1.0, "temperature of the KD term (losses that use one)", group="loss")
    seed: int = option(0, "training seed (student init, batch order, dropout)", group="loss", low=0)

    @property
    def needs_teacher(self) -> bool:
        from makd.losses import LOSSES

        spec = LOSSES.get(self.loss)
        # with transfer data a KD loss reads the teacher on the transfer rows even at λ = 1 (makd/transfer.py)
        transfer = self.transfer_labeled is not None or self.transfer_file is not None
        return bool(spec and spec.needs_teacher_logits) and (self.lam < 1.0 or transfer)

    @property
    def teacher_spec(self):
        """The makd.cache.TeacherSpec of this run's teacher logits; None when the run does not read them."""
        return self.teacher_for(self.task) if self.needs_teacher else None

    def validate(self) -> None:
        """Raise UsageError naming the first bad field."""
        from makd.losses import validate_loss_args
        from makd.tasks import get_task

        task = get_task(self.task)
        validate_loss_args(self.loss, self.lam, self.tau)
        check_loss_for_task(self.loss, task.name, task.is_regression, "loss")
        if self.needs_teacher and not self.teacher:
            raise UsageError("teacher", f"loss '{self.loss}' with lam < 1 needs a teacher")
        super().validate()


def check_loss_for_task(loss: str, task: str, regression: bool, where: str) -> None:
    """A loss that needs classes (pseudo_label: the teacher's argmax) on a regression task: one line."""
    from makd.losses import get_loss

    if get_loss(loss).classes_only and regression:
        raise UsageError(where, f"{loss} needs a task with classes: {task} is a regression task")


# ----------------------------------------------------------------------------------------------------- derived


OPTION_NAMES = tuple(f.name for f in fields(TrainOptions))  # the sweep YAML's training keys
RUN_NAMES = tuple(f.name for f in fields(TrainConfig) if f.name not in OPTION_NAMES)  # what varies per run


def flag_name(name: str) -> str:
    return name.replace("_", "-")


@functools.cache
def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """A dataclass's field name -> (its type without None, whether None is allowed), from the annotations."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        out[name] = (base, optional)
    return out


def _types() -> dict[str, tuple[type, bool]]:
    return field_types(TrainConfig)


def type_text(cls: type, name: str) -> str:
    """A field's YAML type as the reference page states it: int, float, str, bool, list of float, ... or null."""
    kind, optional = field_types(cls)[name]
    if typing.get_origin(kind) is tuple:
        kind_text = f"list of {typing.get_args(kind)[0].__name__}"
    else:
        kind_text = kind.__name__
    return kind_text + (" or null" if optional else "")


def check_bounds(f: Field, value: Any, where: str) -> None:
    """A value against its field's choices and bounds (a tuple's elements one by one, named where[i])."""
    meta = f.metadata
    if isinstance(value, tuple):
        for i, element in enumerate(value):
            check_bounds(f, element, f"{where}[{i}]")
        return
    if value is None or isinstance(value, bool):
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise UsageError(where, f"must be {', '.join(meta['choices'][:-1])} or {meta['choices'][-1]}, got '{value}'")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta.get("low_open") else value < low):
        raise UsageError(where, f"must be {'>' if meta.get('low_open') else '>='} {low:g}, got {value}")
    if high is not None and (value >= high if meta.get("high_open") else value > high):
        raise UsageError(where, f"must be {'<' if meta.get('high_open') else '<='} {high:g}, got {value}")


def typed_number(value: Any, path: str, kind: type = float) -> Any:
    """An int (integral values only) or float from a config value; bools and text are refused, naming `path`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise UsageError(path, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _typed(kind: type, optional: bool, value: Any, path: str) -> Any:
    if value is None:
        if optional:
            return None
        raise UsageError(path, "must not be null")
    if typing.get_origin(kind) is tuple:  # a YAML list (a scalar: a list of one)
        element = typing.get_args(kind)[0]
        values = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_typed(element, False, v, f"{path}[{i}]") for i, v in enumerate(values))
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(path, f"expected true or false{' or null' if optional else ''}, got {value!r}")
    elif kind in (int, float):
        value = typed_number(value, path, kind)
    elif not isinstance(value, str) or not value:
        raise UsageError(path, f"expected a string, got {value!r}")
    return value


def parse_field(cls: type, name: str, value: Any, path: str) -> Any:
    """A YAML value for field `name` of the dataclass `cls`, type-checked and bounds-checked from its declaration;
    UsageError names `path`."""
    value = _typed(*field_types(cls)[name], value, path)
    check_bounds(next(f for f in fields(cls) if f.name == name), value, path)
    return value


def parse_option(name: str, value: Any, path: str | None = None) -> Any:
    """A sweep YAML value for training option `name`, type-checked and bounds-checked; UsageError names `path`."""
    return parse_field(TrainConfig, name, value, path or name)


def parse_section(cls: type, raw: Any, path: str, example: str) -> Any:
    """A YAML mapping -> the dataclass `cls` whose fields declare its keys (`option(...)`: type, default, bounds,
    choices): a missing key takes its declared default, an unknown or missing required key, a wrong type or a value
    out of bounds is one UsageError naming `path.key`. null or absent: every default."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UsageError(path, f"expected a mapping like {example}")
    declared = {f.name: f for f in fields(cls) if "help" in f.metadata}  # a plain field is derived, not a key
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise UsageError(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join(declared)})")
    values = {}
    for name, f in declared.items():
        if name in raw:
            values[name] = parse_field(cls, name, raw[name], f"{path}.{name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise UsageError(f"{path}.{name}", f"required, e.g. {example}")
    return cls(**values)


def field_help(f: Field) -> str:
    """A field's help text (a function for registry-built help is called)."""
    text = f.metadata.get("help", "")
    return text() if callable(text) else text


def add_option_flags(parser: argparse.ArgumentParser, groups: Iterable[str], *,
                     required: Iterable[str] = ()) -> None:
    """One flag per field of the given groups (`--batch-size`, `--warm-up/--no-warm-up`), help and default from
    the field. `required` makes flags required that have defaults otherwise (e.g. cache-teacher's --teacher)."""
    required = set(required)
    for group in groups:  # "data" goes into the caller's own data group (beside --glue-dir and friends)
        target = parser if GROUP_TITLES[group] is None else parser.add_argument_group(GROUP_TITLES[group])
        for f in sorted(fields(TrainConfig), key=lambda f: f.name not in RUN_NAMES):  # --task, --student first
            if f.metadata.get("group") != group:
                continue
            kind, optional = _types()[f.name]
            help_text = field_help(f)
            is_required = f.name in required or f.default is MISSING
            kwargs: dict[str, Any] = {"required": is_required, "dest": f.name}
            if kind is bool and not optional:
                kwargs.update(action="store_true")
            elif kind is bool:
                kwargs.update(action=argparse.BooleanOptionalAction, default=None)
            else:
                kwargs.update(type=kind, default=None if is_required else f.default, choices=f.metadata.get("choices"))
                if f.default is not None and not is_required and "default" not in help_text:
                    help_text += f" (default {f.default})"
            target.add_argument(f"--{flag_name(f.name)}", help=help_text, **kwargs)


def from_args(cls: type[TrainOptions], args: argparse.Namespace) -> TrainOptions:
    """TrainOptions or TrainConfig from parsed flags: every field whose flag the parser has (others: defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
