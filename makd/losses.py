"""Distillation losses: CE, vanilla KD, Taylor KD (Dasgupta et al., 2023, eq. 8), reverse KL, JSD, logit MSE,
orthogonal MSE.

Every kind is mixed with the classification loss as in eq. 9:  L = lam * CE(y, f) + (1 - lam) * L_KD.

Notation: s = student logits, t = teacher logits, y = target probabilities (one-hot for class ids,
Platt-scaled soft targets for STS-B), f_tau = softmax(s / tau), p_tau = softmax(t / tau).

A fact this module does not hide (tests/test_losses.py proves it): for every tau the Taylor term equals

    KL(p_tau || f_tau) + <y - p_tau, -log f_tau>  =  CE(y, f_tau) - H(p_tau),

and H(p_tau) does not depend on the student. Its gradient with respect to the student logits is therefore the
cross-entropy gradient of the tempered student, and does not depend on the teacher at all: at tau = 1 the
paper's loss trains exactly like plain cross-entropy on the labels. `vanilla`, `reverse_kl`, `jsd`, `mse` and
`ortho` do use the teacher's logits in their gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from makd.errors import UsageError

# (student logits, teacher logits or None, target probabilities y, tau) -> the L_KD of eq. 9
KdTerm = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    """Everything makd knows about one loss: config validation, the CLI help, grid expansion and the leaderboard
    all read it from here. Adding a loss = one `register_loss` call (see CONTRIBUTING.md)."""

    name: str
    kd_term: KdTerm | None  # None: plain cross-entropy, no teacher logits read
    teacher_in_gradient: bool  # does the student's gradient depend on the teacher's logits?
    uses_tau: bool  # does the value depend on tau? (if not, a sweep runs it at tau = 1 only)
    order: float  # rank in leaderboards and the paper-style table
    citation: str
    summary: str  # one line: what L_KD is
    needs_label: bool = False  # does L_KD read the gold label? Such a loss cannot learn from a transfer example
    classes_only: bool = False  # meaningless on a regression task (STS-B): refused there

    @property
    def needs_teacher_logits(self) -> bool:
        return self.kd_term is not None


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, *, teacher_in_gradient: bool, uses_tau: bool, order: float, citation: str,
                  summary: str, needs_label: bool = False,
                  classes_only: bool = False) -> Callable[[KdTerm | None], KdTerm | None]:
    """Decorator for a KD term f(student_logits, teacher_logits, y, tau) -> scalar: makes `name` a loss kind.
    needs_label: the term reads y (on a transfer example, makd/transfer.py, there is none); classes_only: the term
    means nothing for a regression task's two Platt-scaled columns."""
    def add(kd_term: KdTerm | None) -> KdTerm | None:
        LOSSES[name] = LossSpec(name, kd_term, teacher_in_gradient, uses_tau, order, citation, summary, needs_label,
                                classes_only)
        return kd_term
    return add


def loss_names() -> tuple[str, ...]:
    """Every registered loss, in display order."""
    return tuple(sorted(LOSSES, key=lambda n: (LOSSES[n].order, n)))


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        raise UsageError("loss", f"unknown loss '{name}' (choose from {', '.join(loss_names())})")
    return LOSSES[name]


def validate_loss_args(kind: str, lam: float, tau: float) -> None:
    """Raise UsageError naming the field when a loss hyperparameter is out of its domain."""
    get_loss(kind)
    if not 0.0 <= float(lam) <= 1.0:
        raise UsageError("lam", f"must be in [0, 1], got {lam}")
    if not float(tau) > 0.0:
        raise UsageError("tau", f"must be > 0, got {tau}")


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are upcast to float32: softmax/log in fp16 loses the small probabilities."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def target_probabilities(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class ids [B] become one-hot rows; a probability matrix [B, K] is returned as float."""
    if labels.dim() == 1:
        return F.one_hot(labels.long(), num_classes).float()
    if labels.dim() == 2 and labels.shape[1] == num_classes:
        return labels
    raise ValueError(f"labels must be class ids [B] or probabilities [B, {num_classes}], got {tuple(labels.shape)}")


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k y_k log softmax(logits)_k (equals F.cross_entropy for one-hot y)."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def vanilla_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton et al.: tau^2 * KL(p_tau || f_tau), the tau^2 keeping gradient scale independent of tau."""
    log_f = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits / tau, dim=-1)
    kl = (log_p.exp() * (log_p - log_f)).sum(dim=-1).mean()
    return tau * tau * kl


LOG_FLOOR = -1e4  # log 0 as a finite number: a zero-probability entry contributes 0 to a KL, and no NaN to its gradient
JSD_BETA = 0.5  # the `jsd` loss's β: the symmetric Jensen-Shannon divergence (GKD's and TRL's default)


def kl_from_logprobs(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last axis from log-probabilities; an entry where p is 0 contributes 0."""
    logp, logq = logp.clamp_min(LOG_FLOOR), logq.clamp_min(LOG_FLOOR)
    return (logp.exp() * (logp - logq)).sum(dim=-1)


def jsd_from_logprobs(logp_teacher: torch.Tensor, logq_student: torch.Tensor, beta: float) -> torch.Tensor:
    """The generalised JSD of GKD (Agarwal et al., 2024, as TRL computes it): β·KL(p ‖ m) + (1 − β)·KL(q ‖ m) with
    m = β·p + (1 − β)·q; β = 0 is KL(p ‖ q) (forward), β = 1 is KL(q ‖ p) (reverse)."""
    if beta == 0.0:
        return kl_from_logprobs(logp_teacher, logq_student)
    if beta == 1.0:
        return kl_from_logprobs(logq_student, logp_teacher)
    mixture = torch.logaddexp(logp_teacher.clamp_min(LOG_FLOOR) + math.log(beta),
                              logq_student.clamp_min(LOG_FLOOR) + math.log(1.0 - beta))
    return beta * kl_from_logprobs(logp_teacher, mixture) + (1.0 - beta) * kl_from_logprobs(logq_student, mixture)


def reverse_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(f_tau || p_tau) (MiniLLM, Gu et al., 2024): mode-seeking, weighted by the student's own
    probabilities, so a student is pushed off what the teacher finds unlikely rather than onto all it finds likely."""
    log_f = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits / tau, dim=-1)
    return tau * tau * kl_from_logprobs(log_f, log_p).mean()


def jsd_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float,
           beta: float = JSD_BETA) -> torch.Tensor:
    """tau^2 * JSD_beta(p_tau, f_tau): bounded (≤ log 2 at β = 0.5), between forward and reverse KL."""
    log_f = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits / tau, dim=-1)
    return tau * tau * jsd_from_logprobs(log_p, log_f, beta).mean()


def taylor_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
              tau: float) -> torch.Tensor:
    """Paper eq. 8 at temperature tau: KL(p_tau || f_tau) + <y - p_tau, -log f_tau>.

    Expanding the KL, the p_tau * log f_tau terms cancel: eq. 8 = CE(y, f_tau) - H(p_tau) exactly. It is computed
    in that form, so its gradient is literally the tempered student's cross-entropy gradient (the teacher only
    shifts the value by its entropy): at tau = 1 and lam in {0, 0.5} training is bit-for-bit that of `ce`.
    """
    log_p = F.log_softmax(teacher_logits / tau, dim=-1)
    teacher_entropy = -(log_p.exp() * log_p).sum(dim=-1).mean()
    return soft_cross_entropy(student_logits / tau, y) - teacher_entropy


def pseudo_label_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the teacher's argmax (self-training / pseudo-labelling): the control that tells a gain from
    the teacher's distribution (vanilla) from a gain from the teacher merely labelling more text."""
    return F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of logits (Ba & Caruana style), averaged over batch and classes."""
    return F.mse_loss(student_logits, teacher_logits)


def orthogonal_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal (Neyman) correction of Dao et al. (2020), as in the paper's public notebook:
    mean over batch and classes of p * (s - t - (y / p - 1))^2, with p = softmax(t).

    p is clamped at 1e-12 so a saturated teacher cannot produce inf/NaN."""
    p = F.softmax(teacher_logits, dim=-1).clamp_min(1e-12)
    residual = student_logits - teacher_logits - (y / p - 1.0)
    return (p * residual.pow(2)).mean()


register_loss("ce", teacher_in_gradient=False, uses_tau=False, order=0, citation="", needs_label=True,
              summary="plain cross-entropy on the labels (the baseline every sweep runs)")(None)
register_loss("pseudo_label", teacher_in_gradient=True, uses_tau=False, order=0.5, classes_only=True,
              citation="self-training on the teacher's labels (Lee, 2013)",
              summary="CE(argmax p, f): cross-entropy on the teacher's hard labels")(
    lambda s, t, y, tau: pseudo_label_ce(s, t))
register_loss("vanilla", teacher_in_gradient=True, uses_tau=True, order=1, citation="Hinton et al., 2015",
              summary="tau^2 * KL(p_tau || f_tau)")(lambda s, t, y, tau: vanilla_kd(s, t, tau))
register_loss("taylor", teacher_in_gradient=False, uses_tau=True, order=2, needs_label=True,
              citation="Dasgupta, Cohn, Baldwin, ACL Findings 2023, eq. 8",
              summary="KL(p_tau || f_tau) + <y - p_tau, -log f_tau>: the gradient of CE(y, f_tau), teacher-free")(
    lambda s, t, y, tau: taylor_kd(s, t, y, tau))
register_loss("reverse_kl", teacher_in_gradient=True, uses_tau=True, order=2.5, citation="Gu et al., 2024 (MiniLLM)",
              summary="tau^2 * KL(f_tau || p_tau)")(lambda s, t, y, tau: reverse_kd(s, t, tau))
register_loss("jsd", teacher_in_gradient=True, uses_tau=True, order=2.6,
              citation="Agarwal et al., 2024 (GKD), beta 0.5",
              summary="tau^2 * (KL(p_tau || m) + KL(f_tau || m)) / 2, m = (p_tau + f_tau) / 2")(
    lambda s, t, y, tau: jsd_kd(s, t, tau))
register_loss("mse", teacher_in_gradient=True, uses_tau=False, order=3, citation="Ba & Caruana, 2014",
              summary="mean (s - t)^2 over batch and classes")(lambda s, t, y, tau: logit_mse(s, t))
register_loss("ortho", teacher_in_gradient=True, uses_tau=False, order=4, needs_label=True,
              citation="Dao et al., 2020, as in the paper's public notebook",
              summary="mean of p * (s - t - (y/p - 1))^2")(lambda s, t, y, tau: orthogonal_mse(s, t, y))

# Views of the registry as it is at import time (a loss registered later shows up in loss_names()/LOSSES).
LOSS_KINDS: tuple[str, ...] = loss_names()
# Kinds whose gradient depends on the teacher's logits. `ce` ignores the teacher; `taylor` only shifts the
# loss value by the teacher's entropy (see the module docstring).
TEACHER_DEPENDENT_KINDS: frozenset[str] = frozenset(n for n, spec in LOSSES.items() if spec.teacher_in_gradient)


def kd_term(kind: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, y: torch.Tensor,
            tau: float) -> torch.Tensor:
    """The L_KD of eq. 9 for one loss kind (for `ce` the KD term is the classification loss itself)."""
    spec = get_loss(kind)
    if spec.kd_term is None:
        return soft_cross_entropy(student_logits, y)
    if teacher_logits is None:
        raise ValueError(f"loss '{kind}' needs teacher logits")
    return spec.kd_term(student_logits, teacher_logits, y, tau)


def loss_help() -> str:
    """The --loss help text, from the registry."""
    return "; ".join(f"{n}: {LOSSES[n].summary}" for n in loss_names())


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor, *,
                      kind: str, lam: float, tau: float = 1.0, labeled: torch.Tensor | None = None) -> torch.Tensor:
    """L = lam * CE(y, f) + (1 - lam) * L_KD (paper eq. 9), a scalar.

    labels: class ids [B] or a target probability matrix [B, K] (STS-B's Platt-scaled scores).
    teacher_logits may be None only for kind='ce' or lam == 1. tau applies to `vanilla` and `taylor`;
    `mse` and `ortho` work on raw logits, as in the paper's notebook. The classification term is always at tau = 1.
    labeled: a bool [B] on the host, False on transfer examples (makd/transfer.py): those take L_KD alone (lam = 0
    there) and their labels are never read; the batch's loss is the mean over its examples.
    """
    validate_loss_args(kind, lam, tau)
    if labeled is not None and not bool(labeled.all()):
        return _with_transfer_rows(student_logits, teacher_logits, labels, kind=kind, lam=lam, tau=tau,
                                   labeled=labeled)
    student_logits = upcast(student_logits)
    y = target_probabilities(labels, student_logits.shape[-1]).to(student_logits)
    ce = soft_cross_entropy(student_logits, y)
    if not get_loss(kind).needs_teacher_logits or lam == 1.0:
        return ce
    kd = kd_term(kind, student_logits, None if teacher_logits is None else teacher_logits.to(student_logits), y, tau)
    return lam * ce + (1.0 - lam) * kd


def _with_transfer_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor, *,
                        kind: str, lam: float, tau: float, labeled: torch.Tensor) -> torch.Tensor:
    """distillation_loss of a batch holding transfer examples: eq. 9 on the labeled rows, L_KD on the others, each
    part weighted by its share of the batch (the row indices are built on the host: no wait for the GPU)."""
    spec = get_loss(kind)
    if spec.needs_label or teacher_logits is None:
        raise ValueError(f"loss '{kind}' needs a label on every example: it trains on the labeled rows only")
    labeled = labeled.cpu().bool()
    device = student_logits.device
    on_labeled = torch.nonzero(labeled).squeeze(1).to(device, non_blocking=True)
    on_transfer = torch.nonzero(~labeled).squeeze(1).to(device, non_blocking=True)
    share = float(labeled.sum()) / len(labeled)
    teacher = teacher_logits.to(device)
    student = upcast(student_logits)
    loss = (1.0 - share) * spec.kd_term(student[on_transfer], teacher[on_transfer].to(student), None, tau)
    if share > 0:
        loss = loss + share * distillation_loss(student[on_labeled], teacher[on_labeled],
                                                labels.to(device)[on_labeled], kind=kind, lam=lam, tau=tau)
    return loss
