"""A training step's GPU memory peak: what `resources_per_trial: {gpu: auto}` (makd_sweep/gpu_sizing.py) packs trials by.
Its own module because it runs the training loop's steps (makd/train.py), which itself imports makd/gpu.py."""

from __future__ import annotations

import torch

from makd.gpu import MIB, StepMemory


def measure_step_memory(cfg, encoded, device: str | torch.device = "cuda") -> StepMemory:
    """Run two training steps (the second with AdamW's state allocated) on cfg.batch_size of the longest training
    examples, then one eval batch of the longest ones, and report the peak."""
    from makd.batching import padded_length
    from makd.masks import model_batch
    from makd.models import build_student
    from makd.runtime import autocast_dtype
    from makd.tasks import get_task
    from makd.train import make_optimizer, pad_multiple, placeholder_targets, shape_batches, train_step

    device = torch.device(device)
    torch.cuda.init()
    torch.cuda.synchronize(device)
    free, total = torch.cuda.mem_get_info(device)
    context = (total - free) / MIB - torch.cuda.memory_reserved(device) / MIB
    torch.cuda.reset_peak_memory_stats(device)
    task = get_task(cfg.task)
    model, _ = build_student(cfg.student, task.num_labels, seed=cfg.seed, tokenizer=cfg.student_tokenizer)
    model.to(device).train()
    amp = autocast_dtype(cfg.precision, device)
    pad = pad_multiple(cfg, device)
    widest = shape_batches(encoded, cfg.batch_size, pad)[-1]  # the widest bucket's batch
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    for _ in range(2):
        train_step(model, encoded, widest, *placeholder_targets(task, cfg, len(widest)), cfg, optimizer, scaler,
                   device=device, amp=amp, pad_to_multiple_of=pad)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        model(**model_batch(model, encoded, shape_batches(encoded, cfg.eval_batch_size, pad)[-1], device, pad))
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_reserved(device) / MIB
    width = padded_length(int(encoded.lengths[widest].max()), pad, encoded.max_length)
    del model, optimizer
    torch.cuda.empty_cache()
    return StepMemory(student=cfg.student, peak_mb=round(peak, 1), context_mb=round(max(context, 0.0), 1),
                      total_mb=round(total / MIB, 1), device_name=torch.cuda.get_device_name(device),
                      batch=f"{len(widest)} x {width} tokens")
