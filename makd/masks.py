"""Attention masks expanded before the forward, so that a GPU forward never waits for the GPU.

transformers' encoders (BERT, MPNet, ...: `masking_utils.create_bidirectional_mask`) test `padding_mask.all()` in
every forward, to drop the mask of a batch without padding. That reads a GPU tensor in a Python `if`: the CPU stops
there until every queued kernel has run, once per training step, so it cannot queue step n+1 while the GPU runs
step n and a launch-bound student runs at CPU time + GPU time instead of the larger of the two. Handing the model
the 4-D mask that the same function builds with the skip turned off gives the same attention (a 4-D mask is used
as given) without the wait. Only on CUDA: on CPU there is no wait to remove, and CPU results stay as they were.
"""

from __future__ import annotations

import inspect
import sys
from functools import cache

import torch

from makd.batching import EncodedDataset, batch_to_device, collate

SKIP_FLAG = "allow_is_bidirectional_skip"
ON_CUDA = True  # `model_batch` expands masks on CUDA; bench.gpu turns it off once to measure the wait it removes


@cache
def _mask_builder(model_class: type):
    """The encoder's own `create_bidirectional_mask` when it has the skip flag, else None (left to the model)."""
    module = sys.modules.get(model_class.__module__)
    build = getattr(module, "create_bidirectional_mask", None)
    if build is None or SKIP_FLAG not in inspect.signature(build).parameters:
        return None
    return build


def expand_attention_mask(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """batch with its 2-D padding mask replaced by the model's 4-D mask (what its forward would build), where the
    model builds it with `create_bidirectional_mask`; unchanged otherwise (decoders, other architectures)."""
    mask = batch.get("attention_mask")
    base = getattr(model, "base_model", model)
    if mask is None or mask.ndim != 2 or getattr(model.config, "is_decoder", False):
        return batch
    build = _mask_builder(type(base))
    if build is None:
        return batch
    # The builder reads only the shape, dtype and device of the embeddings: an empty stand-in of their shape.
    embeds = torch.empty((mask.shape[0], mask.shape[1], 1), dtype=model.dtype, device=mask.device)
    return {**batch, "attention_mask": build(config=base.config, inputs_embeds=embeds, attention_mask=mask,
                                             **{SKIP_FLAG: False})}


def model_batch(model: torch.nn.Module, encoded: EncodedDataset, rows, device: torch.device,
                pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Rows of an EncodedDataset as the model's forward takes them: padded, on the device, and on CUDA with the
    attention mask already expanded."""
    batch = batch_to_device(collate(encoded, rows, pad_to_multiple_of=pad_to_multiple_of), device)
    return expand_attention_mask(model, batch) if device.type == "cuda" and ON_CUDA else batch
