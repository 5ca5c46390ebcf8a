"""Tokenisation once per (model, split), length-grouped batches and dynamic padding.

Padding every batch to the longest sequence *in that batch* (not to max_length), and grouping examples of similar
length into the same batch, is what keeps short GLUE sentences cheap: most SST-2 batches are ~25 tokens wide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from makd.data import TextDataset


@dataclass
class EncodedDataset:
    """Token ids of one dataset for one tokenizer; `lengths` drive length grouping."""

    features: list[dict[str, list[int]]]
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


def encode(tokenizer: PreTrainedTokenizerBase, ds: TextDataset, max_length: int) -> EncodedDataset:
    """Tokenise the raw text pairs the model's own way (teacher and student may use different tokenizers)."""
    args = (ds.text_a,) if ds.text_b is None else (ds.text_a, ds.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    features = [{k: enc[k][i] for k in keys} for i in range(len(ds))]
    lengths = np.fromiter((len(f["input_ids"]) for f in features), dtype=np.int64, count=len(features))
    return EncodedDataset(features, lengths)


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


def collate(tokenizer: PreTrainedTokenizerBase, encoded: EncodedDataset,
            indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence."""
    return tokenizer.pad([encoded.features[i] for i in indices], padding="longest", return_tensors="pt")


def iterate(tokenizer: PreTrainedTokenizerBase, encoded: EncodedDataset,
            batches: Sequence[np.ndarray]) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    for idx in batches:
        yield idx, collate(tokenizer, encoded, idx)
