"""A causal-LM teacher's signal per token, kept sparse: the top-k log-probabilities with the mass left in the tail.

A full logit row of a 49k-token vocabulary is ~96 KiB per token in fp16; the few tokens a teacher gives real mass
are what distillation uses (DistillKit, TRL and torchtune keep top-k too). `SparseTeacher` keeps, per token, at
temperature 1:
- `indices` [..., k] (int32) and `logprobs` [..., k] (a configurable float dtype) of the k most likely tokens;
- `tail_logprob` [...]: log of the probability of every other token, computed exactly (a log-sum-exp over the
  tokens left out, not 1 − Σ top-k, which rounds to 0 or below for peaked rows);
- `entropy` [...]: the teacher's exact entropy H(p̂), which the Taylor term's value needs and the top-k cannot give.
Losses then compare teacher and student over k + 1 buckets: the k tokens and "any other token"
(`bucket_logprobs`). Merging tokens can only lower a KL (the data-processing inequality): a loss from the cache is a
lower bound of the full one that reaches it when k covers the vocabulary. Temperatures other than 1 need the full
logits (p̂_τ cannot be rebuilt from p̂_1's top-k), and are refused on a sparse teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from makd.errors import UsageError

VALUE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SparseTeacher:
    indices: torch.Tensor  # [..., k] int32 token ids, most likely first
    logprobs: torch.Tensor  # [..., k] log p̂ of those tokens (τ = 1)
    tail_logprob: torch.Tensor  # [...] log of the mass of every other token
    entropy: torch.Tensor  # [...] H(p̂) over the whole vocabulary

    @property
    def k(self) -> int:
        return int(self.indices.shape[-1])

    def bytes_per_token(self) -> int:
        """What one token costs in the cache: k ids, k values, the tail and the entropy (float32)."""
        return self.k * (self.indices.element_size() + self.logprobs.element_size()) + 2 * 4


def sparse_from_logits(logits: torch.Tensor, k: int, dtype: str = "float16") -> SparseTeacher:
    """The top-k view of full teacher logits [..., V] (k ≤ V; ties broken by torch.topk)."""
    if dtype not in VALUE_DTYPES:
        raise UsageError("topk_dtype", f"expected one of {', '.join(VALUE_DTYPES)}, got {dtype!r}")
    vocab = logits.shape[-1]
    if not 1 <= k <= vocab:
        raise UsageError("topk", f"must be between 1 and the vocabulary size {vocab}, got {k}")
    logp = torch.log_softmax(logits.float(), dim=-1)
    top, indices = torch.topk(logp, k, dim=-1)
    rest = logp.scatter(-1, indices, float("-inf"))
    return SparseTeacher(indices=indices.to(torch.int32), logprobs=top.to(VALUE_DTYPES[dtype]),
                         tail_logprob=torch.logsumexp(rest, dim=-1),
                         entropy=-(logp.exp() * logp).sum(dim=-1))


def bucket_logprobs(student_logits: torch.Tensor, teacher: SparseTeacher) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probabilities over the k + 1 buckets [..., k + 1]: the teacher's top-k tokens, then
    all the others. The student's tail is a log-sum-exp over the tokens it leaves out (exact, differentiable)."""
    logf = torch.log_softmax(student_logits.float(), dim=-1)
    index = teacher.indices.long()
    student_top = logf.gather(-1, index)
    student_tail = torch.logsumexp(logf.scatter(-1, index, float("-inf")), dim=-1, keepdim=True)
    teacher_buckets = torch.cat([teacher.logprobs.float(), teacher.tail_logprob.float().unsqueeze(-1)], dim=-1)
    return torch.cat([student_top, student_tail], dim=-1), teacher_buckets
