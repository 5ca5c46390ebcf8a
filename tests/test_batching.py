from __future__ import annotations

import numpy as np

from makd.batching import collate, encode, length_grouped_batches, sorted_batches
from tests.helpers import sentiment


def test_length_grouped_batches_cover_every_example_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(1), megabatch_mult=8)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    # grouping: the padding waste is far below that of random batches
    def waste(bs):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)
    random_batches = np.array_split(np.random.default_rng(2).permutation(1000), 63)
    assert waste(batches) < 0.25 * waste(random_batches)


def test_length_grouped_batches_are_deterministic_per_seed():
    lengths = np.arange(100)
    a = length_grouped_batches(lengths, 8, np.random.default_rng([3, 0]))
    b = length_grouped_batches(lengths, 8, np.random.default_rng([3, 0]))
    c = length_grouped_batches(lengths, 8, np.random.default_rng([3, 1]))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_sorted_batches_longest_first():
    lengths = np.array([3, 9, 1, 7, 5])
    assert [b.tolist() for b in sorted_batches(lengths, 2)] == [[1, 3], [4, 0], [2]]


def test_dynamic_padding_pads_to_the_longest_in_the_batch(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    ds = sentiment(20)
    enc = encode(tok, ds, max_length=128)
    idx = np.array([0, 5, 7])
    batch = collate(tok, enc, idx)
    assert batch["input_ids"].shape == (3, int(enc.lengths[idx].max()))
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths[idx].tolist()


def test_max_length_truncates(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = encode(tok, sentiment(10), max_length=6)
    assert enc.lengths.max() == 6
