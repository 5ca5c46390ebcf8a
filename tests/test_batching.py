from __future__ import annotations

import numpy as np

from makd.batching import (
    bucket_lengths,
    collate,
    encode,
    length_grouped_batches,
    padded_length,
    sorted_batches,
)
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
    batch = collate(enc, idx)
    assert batch["input_ids"].shape == (3, int(enc.lengths[idx].max()))
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths[idx].tolist()


def test_numpy_collate_matches_the_tokenizers_own_padding(tiny_bert_dir, tiny_mpnet_dir):
    """The ragged arrays + numpy padding give exactly the tensors tokenizer.pad gives (BERT pairs with token types,
    MPNet without them)."""
    from transformers import AutoTokenizer

    from tests.helpers import similarity

    for model_dir in (tiny_bert_dir, tiny_mpnet_dir):
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        ds = similarity(30)
        enc = encode(tok, ds, max_length=12)
        raw = tok(ds.text_a, ds.text_b, truncation=True, max_length=12)
        idx = np.array([3, 17, 0, 29, 8])
        expected = tok.pad([{k: raw[k][i] for k in raw} for i in idx], padding="longest", return_tensors="pt")
        got = collate(enc, idx)
        assert set(got) == set(expected)
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            assert got[key].tolist() == expected[key].tolist(), key


def test_length_buckets_round_widths_up_but_never_past_max_length(tiny_bert_dir):
    from transformers import AutoTokenizer

    assert [padded_length(n, 32, 128) for n in (1, 32, 33, 100, 128)] == [32, 32, 64, 128, 128]
    assert [padded_length(n, 32, 100) for n in (33, 97, 100)] == [64, 100, 100]
    assert [padded_length(n, None, 128) for n in (7, 33)] == [7, 33]
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = encode(tok, sentiment(40), max_length=128)
    batch = collate(enc, np.arange(5), pad_to_multiple_of=16)
    assert batch["input_ids"].shape[1] == 16
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths[:5].tolist()
    assert bucket_lengths(enc, 16) == [16]
    assert bucket_lengths(enc, None) == sorted(set(enc.lengths.tolist()))


def test_max_length_truncates(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    enc = encode(tok, sentiment(10), max_length=6)
    assert enc.lengths.max() == 6
