"""What only a CUDA GPU can show (skipped without one): warm-up and length buckets on the device, the per-trial
memory cap and its one-line error, peak_gpu_mb, and `gpu: auto` measuring a real training step.

On the offline GPU box: `source .device/env.sh && MAKD_TEST_TOKENIZER_DIR=$MAKD_DEVICE_TOK python3 -m pytest
tests/test_gpu.py` (see docs/performance.md, GPUs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import sentiment

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def config(student_dir, **kw):
    from makd.train import TrainConfig

    base = dict(task="sst2", student="2x128", student_tokenizer=str(student_dir), teacher="unused", loss="vanilla",
                lam=0.5, epochs=2, batch_size=8, lr=2e-3, max_length=32, seed=0)
    return TrainConfig(**{**base, **kw})


def logits_for(ds) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2, size=(len(ds), 2)).astype(np.float32)


def test_cuda_run_warms_up_reports_its_peak_and_trains_like_without_warm_up(tiny_bert_dir):
    from makd.train import train

    ds, dev = sentiment(64), sentiment(32, "validation", seed=1)
    warmed = train(config(tiny_bert_dir), ds, {"": dev}, logits_for(ds), device="cuda", progress=False)
    plain = train(config(tiny_bert_dir, warm_up=False), ds, {"": dev}, logits_for(ds), device="cuda", progress=False)
    assert warmed.history[0].warmup_seconds > 0 and plain.history[0].warmup_seconds == 0
    assert warmed.history[-1].peak_gpu_mb > 0
    # the warm-up restores every RNG and takes no step: the same run, up to CUDA's non-deterministic reductions
    assert [h.train_loss for h in warmed.history] == pytest.approx([h.train_loss for h in plain.history], rel=1e-3)


def test_a_run_over_its_memory_cap_fails_in_one_line_naming_peak_and_cap(tiny_bert_dir):
    from makd import gpu
    from makd.train import train

    ds, dev = sentiment(64), sentiment(32, "validation", seed=1)
    total = gpu.total_memory_mb("cuda")
    try:
        cap = gpu.limit_memory(16 / total, "cuda")  # 16 MiB: a 6x384 student's weights alone are larger
        assert cap == pytest.approx(16, rel=0.01)
        with pytest.raises(gpu.GpuOutOfMemory) as err:
            train(config(tiny_bert_dir, student="6x384"), ds, {"": dev}, logits_for(ds), device="cuda",
                  progress=False)
    finally:
        gpu.limit_memory(1.0, "cuda")
        torch.cuda.empty_cache()
    message = str(err.value)
    assert "\n" not in message and "cap 16 MiB" in message and "peak" in message and "micro_batch_size" in message



def test_a_fused_pack_over_its_cap_names_a_pack_size_that_fits_and_that_size_trains(tiny_bert_dir):
    """Issue 23: a pack that runs out of GPU memory says so in one line and names a size that fits (one member's
    step measured after the failure); that size then trains under the same cap."""
    import re

    from makd import gpu
    from makd.fused import train_fused

    ds, dev = sentiment(64), sentiment(32, "validation", seed=1)

    def pack(k):
        return [config(tiny_bert_dir, student="6x384", epochs=1, lam=i / k) for i in range(k)]

    total = gpu.total_memory_mb("cuda")
    try:
        gpu.limit_memory(1.0, "cuda")  # resets the peak
        one = train_fused(pack(1), ds, {"": dev}, logits_for(ds), device="cuda")[0].history[0].peak_gpu_mb
        gpu.limit_memory(5 * one / total, "cuda")
        with pytest.raises(gpu.GpuOutOfMemory) as err:
            train_fused(pack(16), ds, {"": dev}, logits_for(ds), device="cuda")
        message = str(err.value)
        assert "\n" not in message and "fused pack of 16 members" in message, message
        fits = int(re.search(r"a pack of (\d+) fits", message).group(1))
        assert 1 <= fits < 16
        results = train_fused(pack(fits), ds, {"": dev}, logits_for(ds), device="cuda")
        assert all(r.error is None and len(r.history) == 1 for r in results)
    finally:
        gpu.limit_memory(1.0, "cuda")
        torch.cuda.empty_cache()

def test_gpu_auto_measures_a_real_step_and_caps_every_trial(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    import json
    from pathlib import Path

    import pandas as pd
    import yaml

    from makd_sweep.main import main

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    glue = Path(__file__).resolve().parent / "fixtures" / "glue"
    raw = {"name": "auto", "tasks": ["rte"], "teacher": str(tiny_bert_dir), "students": ["2x128"],
           "student_tokenizer": str(tiny_bert_dir), "losses": ["ce", "vanilla"], "lams": [0.5], "seeds": [0, 1],
           "epochs": 2, "batch_size": 8, "max_length": 32, "data": {"glue_dir": str(glue)},
           "resources_per_trial": {"cpu": 1, "gpu": "auto"}, "storage": str(tmp_path / "runs")}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path), "--num-cpus", "4"]) == 0
    assert "gpu: auto -> " in capsys.readouterr().err
    sizing = json.loads((tmp_path / "runs" / "auto" / "sweep.json").read_text())["gpu_sizing"]
    assert sizing["trials_per_gpu"] >= 1 and sizing["measured"][0]["peak_mb"] > 0
    trials = pd.read_csv(tmp_path / "runs" / "auto" / "trials.csv")
    assert set(trials["device"]) == {"cuda"} and (trials["peak_gpu_mb"] > 0).all()


def test_a_cuda_training_step_never_waits_for_the_gpu(tiny_bert_dir):
    """transformers' encoders read `padding_mask.all()` in every forward; makd.masks hands them the expanded mask,
    so a step (forward, loss, backward, clipping, fused AdamW) queues its kernels without one synchronisation."""
    from makd.batching import encode
    from makd.models import build_student
    from makd.runtime import autocast_dtype
    from makd.tasks import get_task
    from makd.train import make_optimizer, train_step, training_targets

    cfg = config(tiny_bert_dir, loss="taylor")
    ds, device = sentiment(64), torch.device("cuda")
    model, tokenizer = build_student(cfg.student, 2, seed=0, tokenizer=cfg.student_tokenizer)
    model.to(device).train()
    encoded = encode(tokenizer, ds, cfg.max_length)
    assert len(set(encoded.lengths.tolist())) > 1  # padded batches: the mask matters
    optimizer, scaler = make_optimizer(model, cfg), torch.amp.GradScaler("cuda", enabled=False)
    targets, teacher = training_targets(get_task("sst2"), ds.labels), torch.tensor(logits_for(ds))
    rows = [np.arange(i, i + 8) for i in range(0, 64, 8)]
    step = dict(device=device, amp=autocast_dtype("auto", device), pad_to_multiple_of=32)
    for idx in rows[:2]:  # first calls: allocator growth and library handles
        train_step(model, encoded, idx, targets[idx], teacher[idx], cfg, optimizer, scaler, **step)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for idx in rows[2:]:
            train_step(model, encoded, idx, targets[idx], teacher[idx], cfg, optimizer, scaler, **step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
