"""Per-token distillation losses for causal LMs: what the GLUE losses of makd/losses.py are, token by token.

For a response token t: student logits s_t, teacher p̂_t (full logits, or a `SparseTeacher` top-k with its tail),
the label y_t (the next token of the response), f_τ = softmax(s/τ). Every kind is mixed as eq. 9 of the paper,
    L = λ·CE(y, f) + (1 − λ)·L_KD,
and averaged over the response tokens only (`mask`: prompts and padding count for nothing):
- `ce`: −log f(y_t), the labels only;
- `forward_kl` (vanilla KD, Hinton et al.): τ²·KL(p̂_τ ‖ f_τ);
- `reverse_kl` (MiniLLM, Gu et al. 2024): τ²·KL(f_τ ‖ p̂_τ);
- `jsd` (GKD, Agarwal et al. 2024, as TRL computes it): β·KL(p̂_τ ‖ m) + (1 − β)·KL(f_τ ‖ m) with
  m = β·p̂_τ + (1 − β)·f_τ, and at the ends β = 0 forward KL, β = 1 reverse KL;
- `taylor` (the paper's eq. 8 per token): KL(p̂_τ ‖ f_τ) + ⟨y − p̂_τ, −log f_τ⟩ = CE(y, f_τ) − H(p̂_τ). As for GLUE,
  the teacher only shifts the value by its entropy: the gradient is the tempered cross-entropy's, whatever the
  teacher, and at τ = 1 the loss trains exactly like `ce` (tests/test_token_losses.py proves both).
With a `SparseTeacher` the KL terms run over its k + 1 buckets (makd/lm/sparse_teacher.py); the Taylor term uses the
stored exact entropy, so its value and gradient are those of full logits. Training reverse KL from a top-k cache is
refused (`token_distillation_loss`): measured on SmolLM2, its gradient is nearly orthogonal to the true one
(results/bench-lm); `token_kd_term` still computes it, for that measurement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from makd.errors import UsageError
from makd.lm.sparse_teacher import SparseTeacher, bucket_logprobs
from makd.losses import JSD_BETA, jsd_from_logprobs, kl_from_logprobs

TOKEN_LOSSES = ("ce", "forward_kl", "reverse_kl", "jsd", "taylor")
TEACHER_FREE_GRADIENT = frozenset({"ce", "taylor"})  # their gradient never reads the teacher
def _distributions(student_logits: torch.Tensor, teacher: torch.Tensor | SparseTeacher,
                   tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log f_τ, log p̂_τ) on the same support: the vocabulary, or a sparse teacher's k + 1 buckets (τ = 1 only)."""
    if isinstance(teacher, SparseTeacher):
        if tau != 1.0:
            raise UsageError("tau", f"a top-k teacher cache holds p at τ = 1 only (got τ = {tau:g}): use tau 1 or "
                                    "full teacher logits")
        return bucket_logprobs(student_logits, teacher)
    return (F.log_softmax(student_logits.float() / tau, dim=-1), F.log_softmax(teacher.float() / tau, dim=-1))


def _teacher_entropy(teacher: torch.Tensor | SparseTeacher, tau: float) -> torch.Tensor:
    if isinstance(teacher, SparseTeacher):
        return teacher.entropy.float()
    logp = F.log_softmax(teacher.float() / tau, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def token_kd_term(kind: str, student_logits: torch.Tensor, teacher: torch.Tensor | SparseTeacher | None,
                  labels: torch.Tensor, *, tau: float = 1.0, beta: float = JSD_BETA) -> torch.Tensor:
    """L_KD per token [...]: student_logits [..., V], labels [...] (token ids)."""
    logf = F.log_softmax(student_logits.float(), dim=-1)
    labels = labels.long().clamp_min(0)  # an ignored position (e.g. -100) is masked out by the caller
    ce = -logf.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if kind == "ce":
        return ce
    if teacher is None:
        raise ValueError(f"token loss {kind!r} needs the teacher")
    if kind == "taylor":  # CE(y, f_τ) − H(p̂_τ): computed in this form, its gradient is the tempered CE's
        tempered = -F.log_softmax(student_logits.float() / tau, dim=-1).gather(-1, labels.unsqueeze(-1))
        return tempered.squeeze(-1) - _teacher_entropy(teacher, tau)
    logq, logp = _distributions(student_logits, teacher, tau)
    if kind == "forward_kl":
        return tau * tau * kl_from_logprobs(logp, logq)
    if kind == "reverse_kl":
        return tau * tau * kl_from_logprobs(logq, logp)
    if kind == "jsd":
        return tau * tau * jsd_from_logprobs(logp, logq, beta)
    raise UsageError("loss", f"unknown token loss {kind!r} (choose from {', '.join(TOKEN_LOSSES)})")


def token_distillation_loss(student_logits: torch.Tensor, teacher: torch.Tensor | SparseTeacher | None,
                            labels: torch.Tensor, mask: torch.Tensor, *, kind: str, lam: float, tau: float = 1.0,
                            beta: float = JSD_BETA) -> torch.Tensor:
    """L = λ·CE + (1 − λ)·L_KD per token, averaged over the tokens where `mask` is true (a scalar)."""
    if kind not in TOKEN_LOSSES:
        raise UsageError("loss", f"unknown token loss {kind!r} (choose from {', '.join(TOKEN_LOSSES)})")
    if not 0.0 <= lam <= 1.0:
        raise UsageError("lam", f"must be in [0, 1], got {lam}")
    if not tau > 0.0:
        raise UsageError("tau", f"must be > 0, got {tau}")
    if not 0.0 <= beta <= 1.0:
        raise UsageError("beta", f"must be in [0, 1], got {beta}")
    if kind == "reverse_kl" and isinstance(teacher, SparseTeacher) and lam < 1.0:
        raise UsageError("loss", "reverse_kl needs the teacher's probability of every token the student favours; a "
                                 "top-k cache gives it a misleading gradient (results/bench-lm: cosine < 0.2 to the "
                                 "full one): train it from full teacher logits")
    weights = mask.float()
    count = weights.sum().clamp_min(1.0)
    ce = token_kd_term("ce", student_logits, None, labels)
    if kind == "ce" or lam == 1.0:
        return (ce * weights).sum() / count
    kd = token_kd_term(kind, student_logits, teacher, labels, tau=tau, beta=beta)
    return ((lam * ce + (1.0 - lam) * kd) * weights).sum() / count
