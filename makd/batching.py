"""Tokenisation once per (model, split), length-grouped batches and dynamic padding.

Padding every batch to the longest sequence *in that batch* (not to max_length), and grouping examples of similar
length into the same batch, is what keeps short GLUE sentences cheap: most SST-2 batches are ~25 tokens wide.

Token ids are kept as flat numpy arrays (one per model input, plus offsets): a batch is cut and padded with numpy,
a few microseconds per batch where the tokenizer's own `pad` takes milliseconds, and an encoded dataset travels
through Ray's object store as a handful of arrays. On a GPU, batches are padded to a multiple of a bucket width
(`pad_to_multiple_of`): a handful of tensor shapes instead of one per sequence length, each of which costs CUDA a
slow first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from makd.data import TextDataset

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@dataclass
class EncodedDataset:
    """Token ids of one dataset for one tokenizer, ragged: example i is `tokens[key][offsets[i]:offsets[i + 1]]`.

    `lengths` drive length grouping; `pad_id` fills input_ids beyond an example's end (masks and token types get 0).
    """

    tokens: dict[str, np.ndarray]
    offsets: np.ndarray
    lengths: np.ndarray
    pad_id: int
    max_length: int

    def __len__(self) -> int:
        return len(self.offsets) - 1


def encode(tokenizer: PreTrainedTokenizerBase, ds: TextDataset, max_length: int) -> EncodedDataset:
    """Tokenise the raw text pairs the model's own way (teacher and student may use different tokenizers)."""
    args = (ds.text_a,) if ds.text_b is None else (ds.text_a, ds.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in MODEL_INPUTS if k in enc]
    lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(ds))
    offsets = np.zeros(len(ds) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    dtypes = {"input_ids": np.int32, "token_type_ids": np.int8, "attention_mask": np.int8}
    tokens = {k: np.fromiter((t for row in enc[k] for t in row), dtype=dtypes[k], count=int(offsets[-1]))
              for k in keys}
    return EncodedDataset(tokens, offsets, lengths, int(tokenizer.pad_token_id or 0), int(max_length))


GPU_PAD_MULTIPLE = 32  # bucket width on CUDA: at most four shapes at max_length 128


def default_pad_multiple(device: str | torch.device) -> int | None:
    """Exact dynamic padding on CPU (every padded token costs compute there and no shape costs a first call);
    length buckets of GPU_PAD_MULTIPLE tokens on CUDA."""
    return GPU_PAD_MULTIPLE if torch.device(device).type == "cuda" else None


def padded_length(longest: int, pad_to_multiple_of: int | None, max_length: int) -> int:
    """A batch's width: its longest example, rounded up to the bucket width but never past max_length."""
    if not pad_to_multiple_of or pad_to_multiple_of <= 1:
        return longest
    return min(-(-longest // pad_to_multiple_of) * pad_to_multiple_of, max(max_length, longest))


def bucket_lengths(encoded: EncodedDataset, pad_to_multiple_of: int | None) -> list[int]:
    """Every batch width this dataset can produce (what a warm-up runs once each)."""
    widths = {padded_length(int(n), pad_to_multiple_of, encoded.max_length) for n in np.unique(encoded.lengths)}
    return sorted(widths)


def collate(encoded: EncodedDataset, indices: Sequence[int], *,
            pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence (rounded up to pad_to_multiple_of): int64 ids, as models expect."""
    indices = np.asarray(indices)
    starts, ends = encoded.offsets[indices], encoded.offsets[indices + 1]
    width = padded_length(int((ends - starts).max()), pad_to_multiple_of, encoded.max_length)
    batch = {}
    for key, flat in encoded.tokens.items():
        out = np.full((len(indices), width), encoded.pad_id if key == "input_ids" else 0, dtype=np.int64)
        for row, (start, end) in enumerate(zip(starts, ends, strict=True)):
            out[row, :end - start] = flat[start:end]
        batch[key] = torch.from_numpy(out)
    return batch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host-to-GPU copy that does not make the CPU wait for the GPU (pinned memory, non-blocking): the CPU
    queues the next step while the GPU runs this one."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)
    return tensor.to(device)


def batch_to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: to_device(value, device) for key, value in batch.items()}


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           megabatch_mult: int = 50) -> list[np.ndarray]:
    """Random order, but each batch holds examples of similar length (the scheme of HF's LengthGroupedSampler):
    shuffle, cut into megabatches of `megabatch_mult * batch_size`, sort each by length, split into batches,
    then shuffle the batch order so long and short batches interleave."""
    order = rng.permutation(len(lengths))
    mega = batch_size * megabatch_mult
    batches: list[np.ndarray] = []
    for start in range(0, len(order), mega):
        chunk = order[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Deterministic inference batches, longest first (a too-large batch fails at once, not at the end)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
