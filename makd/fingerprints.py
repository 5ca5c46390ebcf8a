"""Fingerprints of a trained student: what "identical to ce" means in every table.

Equal scores are a tie, not identity: two different students that both predict "paraphrase" for every MRPC pair
score the same F1. So every epoch records
- `weights_fingerprint`: a hash of the student's state dict (every tensor's name, dtype, shape and bytes, in name
  order): equal only for bit-identical weights (taylor at τ = 1 and ce at the same seed);
- `predictions_fingerprint`: a hash of its dev predictions (class ids, or STS-B scores), in dev order: equal for
  students that answer alike, whatever their weights;
- `predicted_classes`: how many distinct classes it predicts on dev (1: a constant predictor; None for STS-B).
BLAKE2b with a 64-bit digest (16 hex digits): the chance that two different students collide in a sweep is nil.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import torch

DIGEST_BYTES = 8
FINGERPRINT_COLUMNS = ("weights_fingerprint", "predictions_fingerprint")  # their columns (trials.csv: hex text)


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The same for the same weights on any device, in any process; different for any differing bit."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for name in sorted(state_dict):
        tensor = state_dict[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def predictions_fingerprint(predictions: Iterable[np.ndarray]) -> str:
    """One hash over the dev splits' predictions, in split order (MNLI: matched, then mismatched)."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for split in predictions:
        array = np.ascontiguousarray(split)
        digest.update(f"{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def predicted_classes(predictions: Iterable[np.ndarray], is_regression: bool) -> int | None:
    """Distinct classes predicted over the dev splits (1: the student answers one class for everything)."""
    if is_regression:
        return None
    return len(np.unique(np.concatenate([np.asarray(p).reshape(-1) for p in predictions])))
