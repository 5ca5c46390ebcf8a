"""The causal-LM teacher's top-k signal on disk (issue 27): computed once per (teacher weights, sequences, k, dtype),
read back exactly, the teacher never loaded on a hit, a corrupt entry recomputed, a different k a different entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from makd.errors import UsageError
from makd.lm.cache import lm_teacher_topk
from makd.lm.causal_lm import load_lm_teacher
from makd.lm.sparse_teacher import sparse_from_logits

SEQUENCES = [[101, 2023, 3185, 2001, 2307, 102], [101, 2009, 2001, 6659, 102], [101, 7592, 102]]


def loads(counter: list):
    def load(spec):
        counter.append(spec)
        return load_lm_teacher(spec)
    return load


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_second_read_is_a_hit_equal_to_the_first_and_to_the_teacher(tiny_llama_dir, tmp_path, dtype):
    loaded: list = []
    first, report = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=8, dtype=dtype, cache_dir=tmp_path,
                                    load_teacher=loads(loaded))
    second, again = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=8, dtype=dtype, cache_dir=tmp_path,
                                    load_teacher=loads(loaded))
    assert (report.status, report.teacher_loaded, again.status, again.teacher_loaded) == ("miss", True, "hit", False)
    assert len(loaded) == 1 and [s.indices.shape for s in second] == [(6, 8), (5, 8), (3, 8)]
    model, _ = load_lm_teacher(str(tiny_llama_dir))
    with torch.no_grad():
        direct = sparse_from_logits(model(input_ids=torch.tensor([SEQUENCES[1]])).logits[0], 8, dtype)
    for name in ("indices", "logprobs", "tail_logprob", "entropy"):
        assert torch.equal(getattr(second[1], name), getattr(direct, name)), name
        assert getattr(second[1], name).dtype == getattr(direct, name).dtype


def test_another_k_or_other_sequences_are_other_entries_and_a_corrupt_one_is_recomputed(tiny_llama_dir, tmp_path):
    loaded: list = []
    _, a = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=8, cache_dir=tmp_path, load_teacher=loads(loaded))
    _, b = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=4, cache_dir=tmp_path, load_teacher=loads(loaded))
    _, c = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES[:2], k=8, cache_dir=tmp_path, load_teacher=loads(loaded))
    assert len({a.path, b.path, c.path}) == 3 and len(loaded) == 3
    with open(a.path, "r+b") as f:
        f.seek(100)
        f.write(b"\x00garbage")
    signals, d = lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=8, cache_dir=tmp_path, load_teacher=loads(loaded))
    assert d.status == "miss" and len(loaded) == 4 and np.isfinite(signals[0].entropy.numpy()).all()


def test_a_bad_dtype_is_one_line(tiny_llama_dir, tmp_path):
    with pytest.raises(UsageError) as err:
        lm_teacher_topk(str(tiny_llama_dir), SEQUENCES, k=8, dtype="int8", cache_dir=tmp_path)
    assert err.value.field == "topk_dtype"
