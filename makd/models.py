"""Teachers and students: pretrained ids/paths/zoo names, random LxH shapes, and layer-truncated copies.

Student model ids (one string, so a sweep grid can list them):
  2x128, 4x312, 6x768      random BERT of that shape (heads = H/64, FFN = 4H) with a named tokenizer
  MODEL                     any pretrained AutoModelForSequenceClassification id, local dir, or zoo:NAME
  MODEL@0,5 / MODEL@0:12:2  a copy of MODEL keeping only those encoder layers (DistilBERT-style init)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from makd import zoo
from makd.errors import UsageError

if TYPE_CHECKING:
    from makd.config import TrainConfig

DEFAULT_SHAPE_TOKENIZER = "zoo:minilm-l6"  # the bert-base-uncased WordPiece vocab
TEACHER_LOADS = 0  # how many times load_teacher ran in this process: tests prove the cache skips it

_SHAPE = re.compile(r"^(\d+)x(\d+)$")
_SHAPE_LIKE = re.compile(r"^\d*x\d*$")
_LAYER_KEY = re.compile(r"(^|\.)(layers?)\.(\d+)\.")
_HEAD_PREFIXES = ("classifier.", "pre_classifier.", "score.")


@dataclass(frozen=True)
class StudentSpec:
    kind: str  # "shape" | "pretrained" | "truncated"
    base: str | None = None
    layers: int | None = None
    hidden: int | None = None
    keep: tuple[int, ...] | None = None
    keep_text: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _parse_layers(text: str) -> tuple[tuple[int, ...] | None, str]:
    """'0,5' -> (0, 5); '0:12:2' needs the model depth, so slices stay text until build time."""
    if re.fullmatch(r"\d+(,\d+)*", text):
        keep = tuple(int(x) for x in text.split(","))
        if len(set(keep)) != len(keep) or list(keep) != sorted(keep):
            raise UsageError("student", f"layers {text!r} must be distinct and increasing")
        return keep, text
    if re.fullmatch(r"\d*:\d*(:\d+)?", text):
        parts = text.split(":")
        if len(parts) == 3 and int(parts[2]) == 0:
            raise UsageError("student", f"layer slice {text!r} has step 0")
        return None, text
    raise UsageError("student", f"layers {text!r} do not parse: use a list like 0,5 or a slice like 0:12:2")


def parse_student(model_id: str) -> StudentSpec:
    """Parse a student model id without loading anything; bad ones raise UsageError('student', ...)."""
    model_id = model_id.strip()
    if not model_id:
        raise UsageError("student", "empty model id")
    match = _SHAPE.match(model_id)
    if match:
        layers, hidden = int(match.group(1)), int(match.group(2))
        if layers < 1 or hidden < 1:
            raise UsageError("student", f"shape {model_id!r} needs at least 1 layer and hidden size >= 1")
        heads = max(1, hidden // 64)
        if hidden % heads:
            raise UsageError("student", f"shape {model_id!r}: hidden size {hidden} is not divisible by {heads} heads")
        return StudentSpec("shape", layers=layers, hidden=hidden)
    if _SHAPE_LIKE.match(model_id):
        raise UsageError("student", f"shape {model_id!r} does not parse: use LxH such as 2x128 or 6x768")
    if "@" in model_id:
        base, _, layer_text = model_id.rpartition("@")
        if not base:
            raise UsageError("student", f"{model_id!r} has no model before '@'")
        keep, text = _parse_layers(layer_text)
        _check_model_id(base, "student")
        return StudentSpec("truncated", base=base, keep=keep, keep_text=text)
    _check_model_id(model_id, "student")
    return StudentSpec("pretrained", base=model_id)


def describe_student(model_id: str) -> dict:
    """A plain dict describing a student model id (for results tables); validates without loading weights."""
    return parse_student(model_id).as_dict()


def _looks_local(model_id: str) -> bool:
    return model_id.startswith(("/", "./", "../", "~")) or Path(model_id).expanduser().exists()


def _check_model_id(model_id: str, field: str) -> None:
    if zoo.is_zoo(model_id):
        if model_id[len(zoo.PREFIX):] not in zoo.ZOO:
            raise UsageError(field, f"unknown zoo model {model_id!r}; choose from "
                                    f"{', '.join(zoo.PREFIX + n for n in zoo.ZOO)}")
    elif _looks_local(model_id) and not Path(model_id).expanduser().is_dir():
        raise UsageError(field, f"model dir {model_id} does not exist")


def resolve_model_path(model_id: str, field: str = "model") -> str:
    """zoo:NAME -> its local dir; an existing path -> itself; anything else is taken as a hub id."""
    if zoo.is_zoo(model_id):
        try:
            return str(zoo.resolve(model_id))
        except UsageError as err:
            raise UsageError(field, err.problem) from None
    _check_model_id(model_id, field)
    if _looks_local(model_id):
        path = Path(model_id).expanduser()
        if not (path / "config.json").exists():
            raise UsageError(field, f"{model_id} has no config.json: not a Hugging Face model dir")
        return str(path)
    return model_id


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence 'newly initialized weights' notices: makd initialises heads on purpose and says so in its docs."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_failed(field: str, model_id: str, err: Exception) -> UsageError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UsageError(field, f"cannot load {model_id!r} (not a model dir, zoo name, or reachable hub id): {first}")


def load_tokenizer(model_id: str, field: str = "tokenizer"):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_id, field)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _load_failed(field, model_id, err) from None


def _reinit_(model, names: list[str], seed: int) -> None:
    """Re-initialise the named parameters from a seeded generator (BERT's init: N(0, range), zero bias, unit LN)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(set(names)):
            if name not in params:
                continue
            p = params[name]
            if name.endswith("bias"):
                p.zero_()
            elif "LayerNorm" in name or "layer_norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def head_parameter_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith(_HEAD_PREFIXES)]


def load_teacher(model_id: str, num_labels: int, *, fine_tuned: bool = False, head_seed: int = 0,
                 labels: tuple[str, ...] | None = None):
    """The frozen teacher (eval mode, no grads) and its tokenizer.

    fine_tuned=False is the paper's setting: the pretrained encoder with a classification head initialised from
    head_seed (any head stored in the checkpoint is replaced). fine_tuned=True requires the checkpoint's own head,
    trained with the task's `labels` in the same order when its config names them (check_label_order).
    """
    global TEACHER_LOADS
    from transformers import AutoModelForSequenceClassification

    path = resolve_model_path(model_id, "teacher")
    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels,
                                                                             output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise _load_failed("teacher", model_id, err) from None
    missing = list(info.get("missing_keys", []))
    if fine_tuned:
        head_missing = [k for k in missing if k.startswith(_HEAD_PREFIXES)]
        if head_missing:
            raise UsageError("teacher", f"fine_tuned=true but {model_id!r} has no trained classification head "
                                        f"(missing {', '.join(head_missing[:3])})")
        check_label_order(model_id, model.config, labels)
        _reinit_(model, missing, head_seed)  # e.g. an absent pooler: seeded, not left to global RNG
    else:
        _reinit_(model, missing + head_parameter_names(model), head_seed)
    model.eval()
    model.requires_grad_(False)
    tokenizer = load_tokenizer(model_id, "teacher")
    if model.config.pad_token_id is None:
        # a causal LM as a classifier (LlamaForSequenceClassification) reads its last non-padding token, so it must
        # know the padding id; a tokenizer without one pads with its end-of-sequence token
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    TEACHER_LOADS += 1
    return model, tokenizer


def check_label_order(model_id: str, config, labels: tuple[str, ...] | None) -> None:
    """A fine-tuned head's output i means its config's id2label[i]: when the config names its labels (not the generic
    LABEL_0, LABEL_1, ...) they must be the task's, in the task's order (case aside), or every teacher probability
    would be read under the wrong label, silently."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    if not labels or not names or all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        return
    if [n.lower() for n in names] != [label.lower() for label in labels]:
        raise UsageError("teacher", f"{model_id!r} was fine-tuned with the labels {names} in that order, the task has "
                                    f"{list(labels)}: give the task's labels in the teacher's order (a file task's "
                                    f"`labels:`) or use a teacher trained with the task's order")


def _keep_layers(spec: StudentSpec, depth: int) -> tuple[int, ...]:
    if spec.keep is not None:
        keep = spec.keep
    else:
        parts = [int(p) if p else None for p in spec.keep_text.split(":")]
        keep = tuple(range(depth)[slice(*parts)])
    if not keep:
        raise UsageError("student", f"layers {spec.keep_text!r} select no layer of a {depth}-layer model")
    if max(keep) >= depth:
        raise UsageError("student", f"layers {spec.keep_text!r}: {spec.base} has only {depth} layers (0..{depth - 1})")
    return keep


def truncate_state_dict(state: dict, keep: tuple[int, ...]) -> dict:
    """Keep encoder layers `keep` (renumbered 0..k-1) and every non-layer weight; works for BERT and MPNet keys."""
    new_index = {old: new for new, old in enumerate(keep)}
    out = {}
    for key, value in state.items():
        match = _LAYER_KEY.search(key)
        if match is None:
            out[key] = value
            continue
        old = int(match.group(3))
        if old in new_index:
            out[key[:match.start(3)] + str(new_index[old]) + key[match.end(3):]] = value
    return out


def student_tokenizer_id(model_id: str, tokenizer: str | None = None) -> str:
    """Which tokenizer a student reads with: the override, else its own model's (a shape's: the default vocab).
    Students that share it share one tokenisation of the data."""
    parsed = parse_student(model_id)
    return tokenizer or (DEFAULT_SHAPE_TOKENIZER if parsed.kind == "shape" else parsed.base)


def build_student(model_id: str, num_labels: int, *, seed: int = 0, tokenizer: str | None = None):
    """(model, tokenizer) for a student model id; everything random is drawn under `seed`."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertConfig

    parsed = parse_student(model_id)
    if parsed.kind == "shape":
        tok = load_tokenizer(student_tokenizer_id(model_id, tokenizer), "student_tokenizer")
        config = BertConfig(vocab_size=len(tok), hidden_size=parsed.hidden, num_hidden_layers=parsed.layers,
                            num_attention_heads=max(1, parsed.hidden // 64), intermediate_size=4 * parsed.hidden,
                            max_position_embeddings=512, num_labels=num_labels,
                            pad_token_id=tok.pad_token_id or 0)
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_config(config), tok

    path = resolve_model_path(parsed.base, "student")
    tok = load_tokenizer(tokenizer or parsed.base, "student_tokenizer" if tokenizer else "student")
    try:
        with quiet_transformers():
            if parsed.kind == "pretrained":
                torch.manual_seed(seed)
                model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels,
                                                                                 output_loading_info=True)
                _reinit_(model, list(info.get("missing_keys", [])), seed)
                return model, tok
            config = AutoConfig.from_pretrained(path, num_labels=num_labels)
            keep = _keep_layers(parsed, config.num_hidden_layers)
            encoder = AutoModel.from_pretrained(path)
            config.num_hidden_layers = len(keep)
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_config(config)
    except (OSError, ValueError) as err:
        raise _load_failed("student", model_id, err) from None
    target = model.base_model.state_dict()
    state = {k: v for k, v in truncate_state_dict(encoder.state_dict(), keep).items() if k in target}
    not_copied = sorted(set(target) - set(state))  # absent from the source: keep the seeded init
    model.base_model.load_state_dict({**{k: target[k] for k in not_copied}, **state}, strict=True)
    return model, tok


def model_digest(model_id: str, field: str = "teacher") -> str:
    """Identity of a model's weights for cache keys: a local dir is hashed by config + weight files, a hub id by name."""
    if not zoo.is_zoo(model_id) and not _looks_local(model_id):
        return f"hub:{model_id}"
    path = Path(resolve_model_path(model_id, field))
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        stat = weights.stat()
        # Zoo weights are fixed by their package; a local dir re-saved in place gets a new mtime -> a new key.
        stamp = "" if zoo.is_zoo(model_id) else f":{stat.st_mtime_ns}"
        digest.update(f"{weights.name}:{stat.st_size}{stamp}".encode())
    return f"{model_id}#{digest.hexdigest()[:16]}"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_student(cfg: TrainConfig, weights: Path, path: Path, card: str | None = None) -> None:
    """Export a student as a standard HF model dir (`from_pretrained`, `AutoTokenizer`), atomically, from a makd
    checkpoint or best-epoch file (`weights`); `card` becomes its README.md."""
    from makd.tasks import get_task

    task = get_task(cfg.task)
    model, tokenizer = build_student(cfg.student, task.num_labels, seed=cfg.seed, tokenizer=cfg.student_tokenizer)
    if task.labels:  # a classifier answers with the task's label names (num_labels is their count)
        model.config.id2label = dict(enumerate(task.labels))
        model.config.label2id = {name: i for i, name in enumerate(task.labels)}
    save_model_dir(model, tokenizer, weights, path, card)


def save_model_dir(model, tokenizer, weights: Path, path: Path, card: str | None = None) -> None:
    """The model with the weights of a makd checkpoint, saved as an HF model dir at `path` (temp dir + rename)."""
    import shutil

    import torch

    state = torch.load(weights, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if card is not None:
        (tmp / "README.md").write_text(card)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
