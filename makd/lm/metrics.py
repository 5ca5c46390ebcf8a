"""How good a causal-LM student is (issue 27): perplexity of the responses, top-1 agreement with the teacher on the
same tokens, and one downstream probe, zero-shot sentiment by comparing the next-token logits of two label words.

Positions follow makd/lm/token_losses.py: logits at t are scored against labels[t] (the next token), where `mask`
says which positions are response tokens (prompt and padding count for nothing)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from makd.errors import UsageError
from makd.lm.sparse_teacher import SparseTeacher


def perplexity(student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    """exp of the mean next-token negative log-likelihood over the masked positions."""
    logf = F.log_softmax(student_logits.float(), dim=-1)
    nll = -logf.gather(-1, labels.long().clamp_min(0).unsqueeze(-1)).squeeze(-1)
    weights = mask.float()
    if weights.sum() == 0:
        raise UsageError("mask", "no response token to score")
    return math.exp(float((nll * weights).sum() / weights.sum()))


def top1_agreement(student_logits: torch.Tensor, teacher: torch.Tensor | SparseTeacher, mask: torch.Tensor) -> float:
    """The share of masked positions where the student's most likely next token is the teacher's (a top-k cache
    keeps the teacher's top token first, so k = 1 is enough)."""
    teacher_top = teacher.indices[..., 0].long() if isinstance(teacher, SparseTeacher) else teacher.argmax(-1)
    agree = (student_logits.argmax(-1) == teacher_top).float()
    weights = mask.float()
    if weights.sum() == 0:
        raise UsageError("mask", "no response token to score")
    return float((agree * weights).sum() / weights.sum())


PROBE_TEMPLATE = "Review: {text}\nSentiment:"
PROBE_WORDS = (" negative", " positive")  # label 0, label 1 (SST-2's order)


@torch.no_grad()
def zero_shot_sentiment(model: torch.nn.Module, tokenizer, texts: Sequence[str], labels: Sequence[int], *,
                        template: str = PROBE_TEMPLATE, words: Sequence[str] = PROBE_WORDS) -> float:
    """Accuracy of predicting each text's label as the label word whose first token the model finds more likely
    right after the templated text: a probe of what a student kept, with no training on the task."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    if any(not i for i in ids) or len({i[0] for i in ids}) != len(ids):
        raise UsageError("words", f"the label words {list(words)} must start with distinct tokens")
    device = next(model.parameters(), torch.empty(0)).device  # the student's (a model without weights: the CPU)
    first = torch.tensor([i[0] for i in ids], device=device)
    model.eval()
    correct = 0
    for text, label in zip(texts, labels, strict=True):
        prompt = {k: v.to(device) for k, v in tokenizer(template.format(text=text), return_tensors="pt").items()}
        logits = model(**prompt).logits[0, -1]
        correct += int(int(logits[first].argmax()) == int(label))
    return correct / max(len(texts), 1)
