"""Losses against hand computations, and the Taylor-term identity the README states.

The identity: for every tau, KL(p_tau||f_tau) + <y - p_tau, -log f_tau> = CE(y, f_tau) - H(p_tau),
so the Taylor loss's gradient w.r.t. the student logits does not depend on the teacher.
"""

from __future__ import annotations

import math

import pytest
import torch

from makd.errors import UsageError
from makd.losses import LOSS_KINDS, TEACHER_DEPENDENT_KINDS, distillation_loss


def tensor(values) -> torch.Tensor:
    """Double precision, so hand computations agree to ~1e-12."""
    return torch.tensor(values, dtype=torch.float64)


S = [[2.0, -1.0, 0.5], [0.1, 0.3, -0.7]]
T = [[1.0, 0.0, -1.0], [-0.5, 2.0, 0.0]]
Y = [0, 2]


def softmax(row: list[float], tau: float = 1.0) -> list[float]:
    e = [math.exp(v / tau) for v in row]
    z = sum(e)
    return [v / z for v in e]


def hand_ce(s: list[list[float]], y: list[int]) -> float:
    return sum(-math.log(softmax(r)[c]) for r, c in zip(s, y, strict=True)) / len(s)


def hand_kl(p: list[float], f: list[float]) -> float:
    return sum(pi * math.log(pi / fi) for pi, fi in zip(p, f, strict=True))


def loss(kind: str, lam: float, tau: float = 1.0, s=S, t=T, y=Y) -> float:
    return distillation_loss(tensor(s), tensor(t), torch.tensor(y), kind=kind, lam=lam, tau=tau).item()


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_vanilla_matches_hand_computation(tau):
    expected = sum(tau * tau * hand_kl(softmax(t, tau), softmax(s, tau)) for s, t in zip(S, T, strict=True)) / 2
    assert loss("vanilla", 0.0, tau) == pytest.approx(expected, rel=1e-10)
    assert loss("vanilla", 0.3, tau) == pytest.approx(0.3 * hand_ce(S, Y) + 0.7 * expected, rel=1e-10)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_taylor_matches_eq8(tau):
    total = 0.0
    for s, t, c in zip(S, T, Y, strict=True):
        p, f = softmax(t, tau), softmax(s, tau)
        y = [1.0 if k == c else 0.0 for k in range(3)]
        total += hand_kl(p, f) + sum((yk - pk) * -math.log(fk) for yk, pk, fk in zip(y, p, f, strict=True))
    assert loss("taylor", 0.0, tau) == pytest.approx(total / 2, rel=1e-10)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_reverse_kl_and_jsd_match_hand_computation(tau):
    reverse = sum(tau * tau * hand_kl(softmax(s, tau), softmax(t, tau)) for s, t in zip(S, T, strict=True)) / 2
    jsd = 0.0
    for s, t in zip(S, T, strict=True):
        p, f = softmax(t, tau), softmax(s, tau)
        m = [(a + b) / 2 for a, b in zip(p, f, strict=True)]
        jsd += tau * tau * (hand_kl(p, m) + hand_kl(f, m)) / 2
    assert loss("reverse_kl", 0.0, tau) == pytest.approx(reverse, rel=1e-10)
    assert loss("jsd", 0.0, tau) == pytest.approx(jsd / 2, rel=1e-10)
    assert loss("jsd", 0.4, tau) == pytest.approx(0.4 * hand_ce(S, Y) + 0.6 * jsd / 2, rel=1e-10)


def test_mse_and_ortho_match_hand_computation():
    mse = sum((a - b) ** 2 for rs, rt in zip(S, T, strict=True) for a, b in zip(rs, rt, strict=True)) / 6
    assert loss("mse", 0.0) == pytest.approx(mse, rel=1e-12)
    ortho = 0.0
    for s, t, c in zip(S, T, Y, strict=True):
        p = softmax(t)
        for k in range(3):
            yk = 1.0 if k == c else 0.0
            ortho += p[k] * (s[k] - t[k] - (yk / p[k] - 1.0)) ** 2
    assert loss("ortho", 0.0) == pytest.approx(ortho / 6, rel=1e-10)


def test_ce_kind_is_cross_entropy_and_ignores_the_teacher():
    assert loss("ce", 0.0) == pytest.approx(hand_ce(S, Y), rel=1e-12)
    no_teacher = distillation_loss(tensor(S), None, torch.tensor(Y), kind="ce", lam=0.2).item()
    assert no_teacher == pytest.approx(hand_ce(S, Y), rel=1e-12)


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_lambda_one_equals_ce_for_every_kind(kind):
    assert loss(kind, 1.0) == pytest.approx(hand_ce(S, Y), rel=1e-12)
    assert loss(kind, 1.0, tau=5.0) == pytest.approx(hand_ce(S, Y), rel=1e-12)


def test_soft_labels_accepted_and_equal_one_hot_for_one_hot_rows():
    one_hot = torch.nn.functional.one_hot(torch.tensor(Y), 3).double()
    for kind in LOSS_KINDS:
        a = distillation_loss(tensor(S), tensor(T), one_hot, kind=kind, lam=0.4, tau=2.0)
        b = distillation_loss(tensor(S), tensor(T), torch.tensor(Y), kind=kind, lam=0.4, tau=2.0)
        assert a.item() == pytest.approx(b.item(), rel=1e-12)


# --- the identity -------------------------------------------------------------------------------------------

def random_batch(seed: int, batch: int = 16, classes: int = 3):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 2
    t1 = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 3
    t2 = torch.randn(batch, classes, generator=g, dtype=torch.float64) * 3 + 1.0
    y = torch.randint(0, classes, (batch,), generator=g)
    return s, t1, t2, y


def student_grad(kind: str, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, lam: float, tau: float):
    s = s.clone().requires_grad_(True)
    distillation_loss(s, t, y, kind=kind, lam=lam, tau=tau).backward()
    return s.grad


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 4.0])
def test_taylor_term_equals_tempered_ce_minus_teacher_entropy(tau):
    s, t, _, y = random_batch(0)
    log_f = torch.log_softmax(s / tau, -1)
    p = torch.softmax(t / tau, -1)
    ce_tempered = -log_f.gather(1, y[:, None]).mean()
    teacher_entropy = -(p * p.log()).sum(-1).mean()
    taylor = distillation_loss(s, t, y, kind="taylor", lam=0.0, tau=tau)
    assert taylor.item() == pytest.approx((ce_tempered - teacher_entropy).item(), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_taylor_gradient_does_not_depend_on_the_teacher(tau, lam):
    s, t1, t2, y = random_batch(1)
    g1 = student_grad("taylor", s, t1, y, lam, tau)
    g2 = student_grad("taylor", s, t2, y, lam, tau)
    assert torch.allclose(g1, g2, atol=1e-12)
    # and it is the gradient of lam * CE(y, s) + (1 - lam) * CE(y, s / tau)
    s_ = s.clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy
    (lam * ce(s_, y) + (1 - lam) * ce(s_ / tau, y)).backward()
    assert torch.allclose(g1, s_.grad, atol=1e-12)


def test_taylor_at_tau_one_trains_exactly_like_cross_entropy():
    s, t1, _, y = random_batch(2)
    for lam in (0.0, 0.3, 0.7):
        assert torch.allclose(student_grad("taylor", s, t1, y, lam, 1.0), student_grad("ce", s, t1, y, lam, 1.0),
                              atol=1e-12)


@pytest.mark.parametrize("kind", sorted(TEACHER_DEPENDENT_KINDS))
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_other_kd_gradients_change_with_the_teacher(kind, tau):
    s, t1, t2, y = random_batch(3)
    g1 = student_grad(kind, s, t1, y, 0.5, tau)
    g2 = student_grad(kind, s, t2, y, 0.5, tau)
    assert (g1 - g2).abs().max().item() > 1e-3


def test_teacher_dependent_kinds_are_every_kind_but_ce_and_taylor():
    assert TEACHER_DEPENDENT_KINDS == {"pseudo_label", "vanilla", "reverse_kl", "jsd", "mse", "ortho"}


# --- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(kind="nope", lam=0.5), "loss"),
    (dict(kind="taylor", lam=1.5), "lam"),
    (dict(kind="taylor", lam=-0.1), "lam"),
    (dict(kind="taylor", lam=0.5, tau=0.0), "tau"),
    (dict(kind="vanilla", lam=0.5, tau=-1.0), "tau"),
])
def test_bad_hyperparameters_name_the_field(kwargs, field):
    with pytest.raises(UsageError) as err:
        distillation_loss(tensor(S), tensor(T), torch.tensor(Y), **kwargs)
    assert err.value.field == field
