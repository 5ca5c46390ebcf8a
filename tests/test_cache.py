"""Teacher-logit cache: computed once, content-addressed, verified, rebuilt when corrupt."""

from __future__ import annotations

import logging

import numpy as np
import torch

from makd import models
from makd.cache import TeacherLogitCache, compute_logits, teacher_logits
from makd.teacher_spec import TeacherSpec
from tests.helpers import sentiment


def fetch(tmp_path, teacher, ds, head_seed=0, max_length=64, **kw):
    spec = TeacherSpec(str(teacher), ds.task, head_seed=head_seed, max_length=max_length)
    return teacher_logits({"train": ds}, spec, cache_dir=tmp_path, progress=False, **kw)


def test_second_fetch_hits_the_cache_without_loading_the_teacher(tmp_path, tiny_bert_dir, monkeypatch):
    ds = sentiment(40)
    loads = models.TEACHER_LOADS
    first, report = fetch(tmp_path, tiny_bert_dir, ds)
    assert report.misses == 1 and report.teacher_loaded and models.TEACHER_LOADS == loads + 1
    assert first["train"].shape == (40, 2)

    def forbidden(*a, **k):
        raise AssertionError("the teacher must not be loaded on a cache hit")

    monkeypatch.setattr(models, "load_teacher", forbidden)
    second, report = fetch(tmp_path, tiny_bert_dir, ds)
    assert report.status == "hit" and not report.teacher_loaded
    np.testing.assert_array_equal(first["train"], second["train"])


def test_key_covers_head_seed_data_and_max_length(tmp_path, tiny_bert_dir):
    ds = sentiment(30)
    base, _ = fetch(tmp_path, tiny_bert_dir, ds)
    other_head, r1 = fetch(tmp_path, tiny_bert_dir, ds, head_seed=1)
    assert r1.misses == 1 and not np.allclose(base["train"], other_head["train"])
    _, r2 = fetch(tmp_path, tiny_bert_dir, sentiment(30, seed=5))
    assert r2.misses == 1
    _, r3 = fetch(tmp_path, tiny_bert_dir, ds, max_length=32)
    assert r3.misses == 1
    entries = list((tmp_path / "teacher-logits").rglob("*.npy"))
    assert len(entries) == 4
    assert not list(tmp_path.rglob("*.tmp")), "no temp files left behind"


def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, tiny_bert_dir, caplog):
    ds = sentiment(20)
    good, _ = fetch(tmp_path, tiny_bert_dir, ds)
    (npy,) = (tmp_path / "teacher-logits").rglob("*.npy")
    raw = bytearray(npy.read_bytes())
    raw[-3] ^= 0xFF
    npy.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        again, report = fetch(tmp_path, tiny_bert_dir, ds)
    assert report.misses == 1 and report.teacher_loaded
    assert "corrupt" in caplog.text
    np.testing.assert_allclose(good["train"], again["train"], rtol=1e-5, atol=1e-6)


def test_truncated_entry_is_rebuilt(tmp_path, tiny_bert_dir):
    ds = sentiment(20)
    fetch(tmp_path, tiny_bert_dir, ds)
    (npy,) = (tmp_path / "teacher-logits").rglob("*.npy")
    npy.write_bytes(npy.read_bytes()[:50])
    _, report = fetch(tmp_path, tiny_bert_dir, ds)
    assert report.misses == 1


def test_batched_dynamic_padding_equals_one_by_one(tiny_bert_dir):
    model, tok = models.load_teacher(str(tiny_bert_dir), 2, head_seed=0)
    ds = sentiment(12)
    batched = compute_logits(model, tok, ds, max_length=64, batch_size=5, progress=False)
    with torch.no_grad():
        single = np.stack([model(**tok(t, return_tensors="pt")).logits[0].numpy() for t in ds.text_a])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_cache_load_of_missing_entry_is_none(tmp_path):
    from makd.cache import TeacherKey

    key = TeacherKey("t", 0, False, "sst2", "train", 2, 128, "abc")
    cache = TeacherLogitCache(tmp_path)
    assert cache.load(key) is None
    cache.save(key, np.arange(4, dtype=np.float32).reshape(2, 2))
    np.testing.assert_array_equal(cache.load(key), [[0, 1], [2, 3]])


def test_looking_only_never_loads_the_teacher(tmp_path, tiny_bert_dir, monkeypatch):
    """compute=False (what the sweep driver asks first, before it sends a teacher pass to a GPU node): a miss is
    reported and left out, a hit is returned."""
    ds = sentiment(20)
    loads = models.TEACHER_LOADS
    missing, report = fetch(tmp_path, tiny_bert_dir, ds, compute=False)
    assert missing == {} and report.status == "miss" and models.TEACHER_LOADS == loads
    filled, _ = fetch(tmp_path, tiny_bert_dir, ds)
    found, report = fetch(tmp_path, tiny_bert_dir, ds, compute=False)
    assert report.status == "hit"
    np.testing.assert_array_equal(found["train"], filled["train"])
