"""A fused pack (makd/fused.py): K students of one shape trained as one vmapped model give each member the result of
its config trained alone, and keep the paired guarantee (taylor at tau 1 is ce's student inside a pack)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from makd import fused
from makd.epoch import HOLDOUT
from makd.errors import UsageError
from makd.train import train
from tests.helpers import sentiment
from tests.test_train import config, teacher_for

MEMBERS = [dict(loss="ce", lam=1.0), dict(loss="taylor", lam=0.0, tau=1.0), dict(loss="vanilla", lam=0.5, tau=2.0),
           dict(loss="taylor", lam=0.5, tau=2.0)]


def test_every_member_of_a_fused_pack_trains_as_it_would_alone(tiny_bert_dir, monkeypatch):
    """CPU, fp32, dropout on: the same dev predictions and selection scores at every epoch, losses and weights
    equal up to float summation order (batched kernels), and a hold-out choosing the epoch as it would alone."""
    ds, dev, held = sentiment(96), sentiment(48, "validation", seed=1), sentiment(24, "validation", seed=2)
    logits = teacher_for(ds, 0)
    cfgs = [config(tiny_bert_dir, epochs=3, lr=8e-3, **m) for m in MEMBERS]
    splits = {"": dev, HOLDOUT: held}
    alone = [train(cfg, ds, splits, logits, progress=False) for cfg in cfgs]
    weights: dict[int, dict[str, torch.Tensor]] = {}
    stacked_state = fused.StackedStudents.state_dict

    def keep(self, member):
        state = stacked_state(self, member)
        weights[member] = {k: v.detach().clone() for k, v in state.items()}
        return state

    monkeypatch.setattr(fused.StackedStudents, "state_dict", keep)
    packed = fused.train_fused(cfgs, ds, splits, logits)
    assert alone[0].last.metrics["accuracy"] >= 0.75  # the members learn: equality is not that of constants
    for solo, member in zip(alone, packed, strict=True):
        assert [h.predictions_fingerprint for h in member.history] == [h.predictions_fingerprint for h in solo.history]
        assert [h.score for h in member.history] == [h.score for h in solo.history]
        assert [h.metrics for h in member.history] == [h.metrics for h in solo.history]
        np.testing.assert_allclose([h.train_loss for h in member.history], [h.train_loss for h in solo.history],
                                   rtol=1e-5)
        assert member.best.epoch == solo.best.epoch
    solo_weights = _final_weights(tiny_bert_dir, ds, splits, logits, MEMBERS[2])
    # 36 AdamW steps at lr 8e-3: measured 2.2e-5 at most (the batched matmuls sum in another order)
    assert max((solo_weights[k] - weights[2][k]).abs().max().item() for k in solo_weights) < 1e-4
    # the paired guarantee inside a pack: one initialisation, batch order and dropout mask for every member
    assert [h.weights_fingerprint for h in packed[1].history] == [h.weights_fingerprint for h in packed[0].history]
    assert packed[2].last.weights_fingerprint != packed[0].last.weights_fingerprint


def _final_weights(student, ds, splits, logits, member) -> dict[str, torch.Tensor]:
    import tempfile
    from pathlib import Path

    from makd.checkpoints import CHECKPOINT_NAME

    with tempfile.TemporaryDirectory() as d:
        train(config(student, epochs=3, lr=8e-3, **member), ds, splits, logits, checkpoint_dir=d, progress=False)
        return torch.load(Path(d) / CHECKPOINT_NAME, weights_only=False)["model"]


def test_gradient_clipping_uses_each_members_own_norm(tiny_bert_dir):
    from makd.models import build_student

    model, _ = build_student(str(tiny_bert_dir), 2, seed=0)
    students = fused.StackedStudents(model, 2)
    for p in students.params.values():
        p.grad = torch.ones_like(p)
        p.grad[1] *= 100.0  # member 1's gradient is 100x member 0's
    norms = students.clip_(max_norm=1e9)  # no clipping: the norms as computed
    assert norms[1].item() == pytest.approx(100 * norms[0].item(), rel=1e-3)
    students.clip_(max_norm=float(norms[0]) * 2)  # only member 1 is above it
    after = students.clip_(max_norm=1e9)
    assert after[0].item() == pytest.approx(norms[0].item(), rel=1e-3)
    assert after[1].item() == pytest.approx(2 * norms[0].item(), rel=1e-3)


@pytest.mark.parametrize("other, field", [(dict(seed=1), "seed"), (dict(lr=1e-3), "lr"), (dict(epochs=3), "epochs")])
def test_members_that_differ_beyond_loss_lambda_and_tau_are_refused(tiny_bert_dir, other, field):
    cfgs = [config(tiny_bert_dir, **MEMBERS[0]), config(tiny_bert_dir, **{**MEMBERS[2], **other})]
    with pytest.raises(UsageError) as err:
        fused.check_fusable(cfgs)
    assert err.value.field == "pack.members[1]" and field in err.value.problem


def test_fp16_is_refused_in_one_line(tiny_bert_dir):
    with pytest.raises(UsageError) as err:
        fused.check_fusable([config(tiny_bert_dir, precision="fp16")])
    assert err.value.field == "precision"


def test_a_members_clipped_gradient_is_what_clip_grad_norm_gives_it_alone(tiny_bert_dir):
    from makd.models import build_student

    model, _ = build_student(str(tiny_bert_dir), 2, seed=0)
    students = fused.StackedStudents(model, 3)
    generator = torch.Generator().manual_seed(0)
    for p in students.params.values():
        p.grad = torch.randn(p.shape, generator=generator) * torch.tensor([0.01, 1.0, 10.0]).view(3, *[1] * (p.ndim - 1))
    alone = []
    for member in range(3):
        for name, p in model.named_parameters():
            p.grad = students.params[name].grad[member].clone()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        alone.append({name: p.grad.clone() for name, p in model.named_parameters()})
    students.clip_(1.0)
    for member in range(3):
        for name in students.names:
            torch.testing.assert_close(students.params[name].grad[member], alone[member][name], rtol=1e-5, atol=1e-7)


def test_a_member_that_diverges_leaves_the_pack_and_its_neighbours_train_as_without_it(tiny_bert_dir, monkeypatch):
    """A member whose loss turns NaN gets its own error after that epoch, is not evaluated or reported again, and
    the other members' results are bit-identical to the same pack where nothing diverged."""
    ds, dev = sentiment(48), sentiment(24, "validation", seed=1)
    logits = teacher_for(ds, 0)
    cfgs = [config(tiny_bert_dir, epochs=2, **m) for m in MEMBERS[:3]]
    healthy = fused.train_fused(cfgs, ds, {"": dev}, logits)
    real_loss = fused.distillation_loss

    def vanilla_diverges(*args, kind, **kw):
        loss = real_loss(*args, kind=kind, **kw)
        return loss * float("nan") if kind == "vanilla" else loss

    monkeypatch.setattr(fused, "distillation_loss", vanilla_diverges)
    errors, reported = [], []
    packed = fused.train_fused(cfgs, ds, {"": dev}, logits, on_member_error=lambda m, why: errors.append((m, why)),
                               on_epoch_end=lambda m, result: reported.append((m, result.epoch)))
    assert errors == [(2, "diverged in epoch 1: the mean train loss is nan (lower the lr, or check λ and τ)")]
    assert packed[2].error == errors[0][1] and packed[2].history == []
    assert reported == [(0, 1), (1, 1), (0, 2), (1, 2)]
    for member, alone_in_health in zip(packed[:2], healthy[:2], strict=True):
        assert member.error is None
        assert [h.weights_fingerprint for h in member.history] == [h.weights_fingerprint for h in alone_in_health.history]
        assert [h.metrics for h in member.history] == [h.metrics for h in alone_in_health.history]


class _Stop(Exception):
    pass


def test_a_fused_pack_stopped_after_an_epoch_resumes_there_bit_identical_and_trains_no_epoch_twice(tiny_bert_dir,
                                                                                                  tmp_path):
    """Stopped while reporting epoch 2 (after its files are written), the pack resumes at epoch 3 from its state:
    every member's history equals an uninterrupted run's, bit for bit, each epoch trained once; a finished pack
    leaves no state file (its members' finished runs are in their own folders)."""
    from makd.checkpoints import CHECKPOINT_NAME

    ds, dev = sentiment(48), sentiment(24, "validation", seed=1)
    logits = teacher_for(ds, 0)
    cfgs = [config(tiny_bert_dir, epochs=3, **m) for m in MEMBERS[:3]]
    whole = fused.train_fused(cfgs, ds, {"": dev}, logits)
    dirs = [tmp_path / f"member-{i}" for i in range(3)]
    state, trained, reported = tmp_path / fused.STATE_NAME, [], []

    def stop_in_epoch_2(member, result):
        reported.append((member, result.epoch))
        if (member, result.epoch) == (1, 2):
            raise _Stop

    with pytest.raises(_Stop):
        fused.train_fused(cfgs, ds, {"": dev}, logits, checkpoint_dirs=dirs, state_path=state,
                          on_epoch_end=stop_in_epoch_2)
    assert state.is_file()
    real_step = fused.StackedStudents.__call__

    def counting(self, batch):
        trained.append(self.model.training)
        return real_step(self, batch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fused.StackedStudents, "__call__", counting)
        resumed = fused.train_fused(cfgs, ds, {"": dev}, logits, checkpoint_dirs=dirs, state_path=state,
                                    on_epoch_end=lambda m, result: reported.append((m, result.epoch)))
    assert reported[5:] == [(0, 2), (1, 2), (2, 2), (0, 3), (1, 3), (2, 3)]  # epoch 2 again, then epoch 3 once
    assert sum(trained) == -(-48 // cfgs[0].batch_size)  # one epoch of training steps after the resume
    for member, uninterrupted in zip(resumed, whole, strict=True):
        assert member.resumed_from_epoch == 2
        assert [h.weights_fingerprint for h in member.history] == [h.weights_fingerprint for h in uninterrupted.history]
        assert [h.metrics for h in member.history] == [h.metrics for h in uninterrupted.history]
    assert not state.exists() and all((d / CHECKPOINT_NAME).is_file() for d in dirs)
    torch.save({"format": fused.CHECKPOINT_FORMAT, "configs": []}, state)
    with pytest.raises(UsageError, match="holds the state of another fused pack"):
        fused.train_fused(cfgs, ds, {"": dev}, logits, state_path=state)


def test_a_pack_out_of_memory_names_a_size_that_fits_in_one_line():
    """makd.gpu's message for a fused pack that ran out of memory: a size from one member's measured step peak
    and the sizing margin (the numbers only a GPU measures are given here; tests/test_gpu.py runs a real one)."""
    from makd.gpu import members_that_fit, pack_out_of_memory_text

    assert members_that_fit(80_000, 7_000) == 9  # 9 x 8,400 = 75,600; 10 x 8,400 > 80,000
    assert members_that_fit(5_000, 7_000) == 0 and members_that_fit(80_000, 0.0) == 0
    text = pack_out_of_memory_text(16, 79_500, 80_000, 1.0, 81_079, 7_000)
    assert "\n" not in text and "fused pack of 16 members" in text and "cap 80,000 MiB" in text
    assert "a pack of 9 fits: set pack.size to 9" in text
    assert "not even one member fits" in pack_out_of_memory_text(4, 9_000, 10_000, 0.125, 81_079, 12_000)
    assert "not even one member fits" in pack_out_of_memory_text(4, 9_000, 10_000, 0.125, 81_079, None)
    assert "should fit" in pack_out_of_memory_text(2, 9_000, 10_000, 0.125, 81_079, 1_000)


def test_a_fused_pack_out_of_memory_on_a_gpu_becomes_that_line_and_on_cpu_stays_what_it_was(monkeypatch):
    """train_fused turns a CUDA out-of-memory into makd.gpu.GpuOutOfMemory after leaving the failed pack's frames
    (so that one member's step can be measured in the freed memory); elsewhere the error is not rewritten."""
    from makd import gpu

    def failing(device_type):
        def run(cfgs, *args, seen, **kwargs):
            seen.update(device=torch.device(device_type), train_enc="encoded")
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run

    calls = []
    monkeypatch.setattr(gpu, "peak_memory_mb", lambda device: 79_000.0)
    monkeypatch.setattr(fused, "_pack_out_of_memory", lambda cfg, k, device, enc, peak: calls.append((k, enc, peak))
                        or gpu.GpuOutOfMemory(f"pack of {k} at {peak:.0f}"))
    monkeypatch.setattr(fused, "_train_fused", failing("cuda"))
    cfgs = [object(), object(), object()]
    with pytest.raises(gpu.GpuOutOfMemory, match="pack of 3 at 79000") as err:
        fused.train_fused(cfgs, None, {}, None)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one line, not the CUDA trace
    assert calls == [(3, "encoded", 79_000.0)]
    monkeypatch.setattr(fused, "_train_fused", failing("cpu"))
    with pytest.raises(torch.OutOfMemoryError):
        fused.train_fused(cfgs, None, {}, None)
