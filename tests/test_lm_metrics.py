"""LM metrics (issue 27): perplexity, top-1 agreement with the teacher (full logits or a top-k cache), and the
zero-shot sentiment probe, each against a value computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from makd.errors import UsageError
from makd.lm.metrics import perplexity, top1_agreement, zero_shot_sentiment
from makd.lm.sparse_teacher import sparse_from_logits

V = 40


def test_perplexity_of_a_uniform_model_is_the_vocabulary_and_the_prompt_counts_for_nothing():
    labels = torch.randint(0, V, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, :3] = False
    assert perplexity(torch.zeros(2, 6, V), labels, mask) == pytest.approx(V)
    sure = torch.full((2, 6, V), -30.0).scatter(-1, labels.unsqueeze(-1), 30.0)
    sure[:, :3] = 0.0  # the prompt positions are uniform: they would raise the perplexity if they counted
    assert perplexity(sure, labels, mask) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UsageError):
        perplexity(sure, labels, torch.zeros_like(mask))


def test_top1_agreement_reads_the_full_teacher_and_its_cache_alike():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 5, V, generator=g)
    student = teacher.clone()
    student[0, :2] = -teacher[0, :2]  # 2 of 15 positions disagree
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert top1_agreement(student, teacher, mask) == pytest.approx(13 / 15)
    assert top1_agreement(student, sparse_from_logits(teacher, 4), mask) == pytest.approx(13 / 15)
    mask[0, :2] = False
    assert top1_agreement(student, teacher, mask) == 1.0


class Words:
    """A tokenizer with one token per word, and a model that always prefers one of the label words."""

    vocab = {" negative": 1, " positive": 2}

    def __call__(self, text, add_special_tokens=True, return_tensors=None):
        ids = [self.vocab.get(text, 3)] if not return_tensors else [[5, 6, 7]]
        return {"input_ids": ids if not return_tensors else torch.tensor(ids)}


class Prefers(torch.nn.Module):
    def __init__(self, token: int):
        super().__init__()
        self.token = token

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, 8)
        logits[..., self.token] = 1.0
        return type("Out", (), {"logits": logits})()


def test_the_zero_shot_probe_scores_the_label_word_the_model_prefers():
    texts, labels = ["a", "b", "c", "d"], [1, 1, 0, 1]
    assert zero_shot_sentiment(Prefers(2), Words(), texts, labels) == 0.75
    assert zero_shot_sentiment(Prefers(1), Words(), texts, labels) == 0.25
    with pytest.raises(UsageError):
        zero_shot_sentiment(Prefers(1), Words(), texts, labels, words=(" negative", " negative"))
    assert math.isclose(zero_shot_sentiment(Prefers(2), Words(), [], []), 0.0)


def test_the_probe_and_the_metrics_run_on_a_real_causal_lm(tiny_llama_dir):
    from makd.lm.causal_lm import load_lm_teacher

    model, tokenizer = load_lm_teacher(str(tiny_llama_dir))
    texts, labels = ["a great film", "a dull film", "lovely", "awful"], [1, 0, 1, 0]
    accuracy = zero_shot_sentiment(model, tokenizer, texts, labels)
    assert accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)
    ids = torch.tensor([tokenizer("a great film indeed")["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
    mask = torch.ones(ids[:, 1:].shape, dtype=torch.bool)
    assert perplexity(logits, ids[:, 1:], mask) > 1 and top1_agreement(logits, logits, mask) == 1.0
