"""Causal-LM teachers and students (issue 27): the LM counterparts of makd/models.py's encoder classifiers.

Model ids are the student model ids of makd/models.py, read as causal LMs:
  MODEL                   any AutoModelForCausalLM id, local dir, or zoo name (zoo:smollm2-135m)
  MODEL@0,6,12,18,24,29   a copy of MODEL keeping those decoder layers (renumbered), its embeddings, final norm and
                          LM head: the layer-truncated students the issue asks for, initialised from the teacher
  LxH                     a random model of the teacher's family (its config class and tokenizer, `family`) with
                          L layers of width H (heads H/64, FFN 4H·2/3 as llama's, rounded to 64)
A teacher is frozen (eval mode, no grads). Teacher and student must share the vocabulary: per-token losses compare
distributions over the same token ids, so a mismatch is refused in one line (`check_same_vocabulary`).
"""

from __future__ import annotations

from makd.errors import UsageError
from makd.models import (
    _keep_layers,
    _load_failed,
    load_tokenizer,
    parse_student,
    quiet_transformers,
    resolve_model_path,
    save_model_dir,
    truncate_state_dict,
)


def load_lm_teacher(model_id: str):
    """(model, tokenizer) of a causal LM teacher, frozen."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(model_id, "teacher")
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _load_failed("teacher", model_id, err) from None
    model.eval()
    model.requires_grad_(False)
    return model, load_tokenizer(model_id, "teacher")


def build_lm_student(model_id: str, *, seed: int = 0, family: str | None = None):
    """(model, tokenizer) for a causal-LM student model id; everything random is drawn under `seed`. `family`: the model
    whose config class and tokenizer an LxH shape takes (the teacher)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    parsed = parse_student(model_id)
    if parsed.kind == "shape":
        if family is None:
            raise UsageError("student", f"a causal-LM shape {model_id!r} needs the teacher's family (its config and "
                                        "tokenizer)")
        config = AutoConfig.from_pretrained(resolve_model_path(family, "teacher"))
        heads = max(1, parsed.hidden // 64)
        config.num_hidden_layers, config.hidden_size = parsed.layers, parsed.hidden
        config.num_attention_heads = config.num_key_value_heads = heads
        config.intermediate_size = max(64, round(parsed.hidden * 8 / 3 / 64) * 64)
        if hasattr(config, "head_dim"):
            config.head_dim = parsed.hidden // heads
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config), load_tokenizer(family, "teacher")
    path = resolve_model_path(parsed.base, "student")
    try:
        with quiet_transformers():
            if parsed.kind == "pretrained":
                return AutoModelForCausalLM.from_pretrained(path), load_tokenizer(parsed.base, "student")
            source = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _load_failed("student", model_id, err) from None
    keep = _keep_layers(parsed, source.config.num_hidden_layers)
    config = source.config.__class__.from_dict(source.config.to_dict())
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(truncate_state_dict(source.state_dict(), keep), strict=True)
    return model, load_tokenizer(parsed.base, "student")


def lm_student_tokenizer(model_id: str, teacher: str):
    """A causal-LM student's tokenizer: its own base model's, or for an LxH shape the teacher's (its family)."""
    parsed = parse_student(model_id)
    return load_tokenizer(teacher if parsed.kind == "shape" else parsed.base, "student")


def check_same_vocabulary(teacher_tokenizer, student_tokenizer, teacher: str, student: str) -> None:
    """Per-token KD needs one vocabulary: the same tokens under the same ids."""
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise UsageError("student", f"{student} does not share {teacher}'s vocabulary "
                                    f"({len(student_tokenizer)} vs {len(teacher_tokenizer)} tokens): per-token "
                                    "distillation compares the same token ids; use a student of the teacher's family")


def save_lm_student(cfg, weights, path, card: str | None = None) -> None:
    """Export a causal-LM student (a makd checkpoint's weights) as an HF model dir that AutoModelForCausalLM loads."""
    model, tokenizer = build_lm_student(cfg.student, seed=cfg.seed, family=cfg.teacher)
    save_model_dir(model, tokenizer, weights, path, card)
