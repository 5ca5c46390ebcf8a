"""Per-token LM losses (makd/lm/token_losses.py) and the top-k teacher cache (makd/lm/sparse_teacher.py), issue 27:
the Taylor term's gradient is the tempered CE's whatever the teacher (a causal LM trained with it is ce's, weight for
weight), a cache with k = V is the full teacher, a smaller k can only lower a KL, the JSD family meets the KLs at its
ends, and prompt/padding tokens count for nothing."""

from __future__ import annotations

import pytest
import torch

from makd.errors import UsageError
from makd.fingerprints import weights_fingerprint
from makd.lm.sparse_teacher import sparse_from_logits
from makd.lm.token_losses import TOKEN_LOSSES, token_distillation_loss, token_kd_term

V = 50


def batch(seed: int = 0, shape=(3, 7)):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(*shape, V, generator=g) * 2
    teacher = torch.randn(*shape, V, generator=g) * 3
    labels = torch.randint(0, V, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.bool)
    mask[:, :2] = False  # the prompt
    return student, teacher, labels, mask


def grad(kind, student, teacher, labels, mask, **kw):
    s = student.clone().requires_grad_(True)
    token_distillation_loss(s, teacher, labels, mask, kind=kind, **kw).backward()
    return s.grad


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 4.0])
def test_the_taylor_gradient_is_the_tempered_ce_gradient_whatever_the_teacher(tau):
    student, teacher, labels, mask = batch()
    g1 = grad("taylor", student, teacher, labels, mask, lam=0.0, tau=tau)
    g2 = grad("taylor", student, -5 * teacher, labels, mask, lam=0.0, tau=tau)
    assert torch.equal(g1, g2)
    s = (student / tau).clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(s[mask], labels[mask])
    ce.backward()
    assert torch.allclose(g1, s.grad / tau, atol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_a_causal_lm_trained_with_taylor_at_tau_1_is_the_ce_student_weight_for_weight(lam):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=32)
    ids = torch.randint(0, V, (4, 9), generator=torch.Generator().manual_seed(1))
    teacher_logits = torch.randn(4, 8, V, generator=torch.Generator().manual_seed(2)) * 4
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[:, :3] = False
    prints = {}
    for kind, mix in (("ce", 1.0), ("taylor", lam)):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(3):
            logits = model(ids[:, :-1]).logits
            loss = token_distillation_loss(logits, teacher_logits, ids[:, 1:], mask, kind=kind, lam=mix)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        prints[kind] = weights_fingerprint(model.state_dict())
    assert prints["taylor"] == prints["ce"]


@pytest.mark.parametrize("kind", [k for k in TOKEN_LOSSES if k != "ce"])
def test_a_top_k_cache_covering_the_vocabulary_is_the_full_teacher(kind):
    student, teacher, labels, mask = batch()
    sparse = sparse_from_logits(teacher, k=V, dtype="float32")
    full = token_kd_term(kind, student, teacher, labels, beta=0.3)
    cached = token_kd_term(kind, student, sparse, labels, beta=0.3)
    assert torch.allclose(cached, full, rtol=1e-5, atol=1e-5)
    if kind == "reverse_kl":
        return  # training it from a cache is refused (below)
    assert torch.allclose(grad(kind, student, sparse, labels, mask, lam=0.3, beta=0.3),
                          grad(kind, student, teacher, labels, mask, lam=0.3, beta=0.3), atol=1e-6)


def test_training_reverse_kl_from_a_top_k_cache_is_refused():
    student, teacher, labels, mask = batch()
    with pytest.raises(UsageError, match="reverse_kl needs the teacher's probability"):
        token_distillation_loss(student, sparse_from_logits(teacher, 8), labels, mask, kind="reverse_kl", lam=0.5)


def test_a_smaller_k_can_only_lower_the_kl_and_the_taylor_term_stays_exact():
    student, teacher, labels, mask = batch(seed=3)
    full = token_kd_term("forward_kl", student, teacher, labels)
    previous = torch.zeros_like(full)
    for k in (1, 4, 16, V):
        cached = token_kd_term("forward_kl", student, sparse_from_logits(teacher, k, "float32"), labels)
        assert (cached <= full + 1e-5).all() and (cached >= previous - 1e-5).all()  # coarser buckets, less KL
        previous = cached
        taylor = token_kd_term("taylor", student, sparse_from_logits(teacher, k, "float16"), labels)
        assert torch.allclose(taylor, token_kd_term("taylor", student, teacher, labels), atol=1e-5)


def test_the_jsd_family_meets_forward_and_reverse_kl_at_its_ends():
    student, teacher, labels, _ = batch()
    forward = token_kd_term("forward_kl", student, teacher, labels)
    reverse = token_kd_term("reverse_kl", student, teacher, labels)
    assert torch.allclose(token_kd_term("jsd", student, teacher, labels, beta=0.0), forward)
    assert torch.allclose(token_kd_term("jsd", student, teacher, labels, beta=1.0), reverse)
    half = token_kd_term("jsd", student, teacher, labels, beta=0.5)
    swapped = token_kd_term("jsd", teacher, student, labels, beta=0.5)
    assert torch.allclose(half, swapped, atol=1e-5) and (half >= 0).all() and (half <= torch.log(torch.tensor(2.))).all()


def test_prompt_and_padding_tokens_count_for_nothing():
    student, teacher, labels, mask = batch()
    moved = student.clone()
    moved[:, :2] = 100 * torch.randn_like(moved[:, :2])
    labels_moved = labels.clone()
    labels_moved[:, :2] = -100
    for kind in TOKEN_LOSSES:
        assert token_distillation_loss(student, teacher, labels, mask, kind=kind, lam=0.5) == \
            token_distillation_loss(moved, teacher, labels_moved, mask, kind=kind, lam=0.5)


def test_bad_settings_name_the_field():
    student, teacher, labels, mask = batch()
    sparse = sparse_from_logits(teacher, 8)
    for kw, field in ((dict(kind="kl"), "loss"), (dict(kind="jsd", lam=2.0), "lam"), (dict(kind="jsd", beta=1.5), "beta"),
                      (dict(kind="jsd", tau=0.0), "tau")):
        with pytest.raises(UsageError) as err:
            token_distillation_loss(student, teacher, labels, mask, **{"lam": 0.5, **kw})
        assert err.value.field == field
    with pytest.raises(UsageError, match="τ = 1 only"):
        token_distillation_loss(student, sparse, labels, mask, kind="forward_kl", lam=0.5, tau=2.0)
    with pytest.raises(UsageError) as err:
        sparse_from_logits(teacher, V + 1)
    assert err.value.field == "topk"
    assert sparse.bytes_per_token() == 8 * (4 + 2) + 8  # k int32 ids + k fp16 values + tail + entropy


def test_the_kls_are_torchs_kl_div_both_ways():
    student, teacher, labels, _ = batch()
    logq, logp = torch.log_softmax(student, -1), torch.log_softmax(teacher, -1)
    kl = torch.nn.functional.kl_div  # kl_div(input, target) = KL(target || input)
    assert torch.allclose(token_kd_term("forward_kl", student, teacher, labels),
                          kl(logq, logp, reduction="none", log_target=True).sum(-1), atol=1e-5)
    assert torch.allclose(token_kd_term("reverse_kl", student, teacher, labels),
                          kl(logp, logq, reduction="none", log_target=True).sum(-1), atol=1e-5)
    assert torch.allclose(token_kd_term("forward_kl", student, teacher, labels, tau=2.0),
                          4 * kl(torch.log_softmax(student / 2, -1), torch.log_softmax(teacher / 2, -1),
                                 reduction="none", log_target=True).sum(-1), atol=1e-5)
