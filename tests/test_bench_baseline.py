"""The HF-Trainer baseline in bench/ must compute the same loss as makd, or the benchmarks compare different work."""

from __future__ import annotations

import pytest
import torch

from bench.hf_baseline import notebook_loss
from makd.losses import distillation_loss


@pytest.mark.parametrize("kind", ["vanilla", "taylor"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_notebook_loss_equals_makd_loss_at_tau_1(kind, lam):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(16, 3, generator=gen, requires_grad=True)
    teacher = torch.randn(16, 3, generator=gen)
    labels = torch.randint(0, 3, (16,), generator=gen)
    ours = distillation_loss(student, teacher, labels, kind=kind, lam=lam, tau=1.0)
    theirs = notebook_loss(student, teacher, labels, lam=lam, kd=kind)
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-5, abs=1e-6)
    g_ours, = torch.autograd.grad(ours, student)
    g_theirs, = torch.autograd.grad(theirs, student)
    assert torch.allclose(g_ours, g_theirs, atol=1e-6)


def test_the_baseline_trains_with_the_teacher_in_every_step(tiny_bert_dir, monkeypatch):
    """teacher_mode="loop" runs the teacher forward once per training step (the notebook's cost), "cache" never."""
    import numpy as np

    from bench import hf_baseline
    from makd.data import TextDataset

    calls = {"n": 0}
    real = hf_baseline.DistillationTrainer.compute_loss

    def counting(self, model, inputs, *args, **kwargs):
        if self.teacher is not None:
            hook = self.teacher.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
            try:
                return real(self, model, inputs, *args, **kwargs)
            finally:
                hook.remove()
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(hf_baseline.DistillationTrainer, "compute_loss", counting)
    texts = [f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(12)]
    ds = TextDataset(task="sst2", split="train", text_a=texts, text_b=None,
                     labels=np.array([i % 2 for i in range(12)]), source="test")
    run = hf_baseline.run_baseline(ds, ds, student=str(tiny_bert_dir), teacher=str(tiny_bert_dir),
                                   teacher_mode="loop", lam=0.5, epochs=2, batch_size=4)
    assert calls["n"] == 6  # 3 steps x 2 epochs
    assert 0.0 <= run.score <= 1.0 and run.examples_per_s > 0
    calls["n"] = 0
    hf_baseline.run_baseline(ds, None, student=str(tiny_bert_dir), teacher=str(tiny_bert_dir), teacher_mode="cache",
                             lam=0.5, epochs=1, batch_size=4, teacher_logits=np.zeros((12, 2), np.float32))
    assert calls["n"] == 0
