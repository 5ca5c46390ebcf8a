"""Small in-memory datasets for fast training tests."""

from __future__ import annotations

import numpy as np

from makd.data import TextDataset

POSITIVE = ["a wonderful , moving film", "great acting and a clever plot", "i loved every minute of it",
            "a joyous , funny ride", "beautifully shot and warmly told", "the best film of the year"]
NEGATIVE = ["a dull , lifeless mess", "boring and far too long", "i hated every minute of it",
            "a tedious , clumsy script", "badly acted and poorly shot", "the worst film of the year"]


def sentiment(n: int, split: str = "train", seed: int = 0) -> TextDataset:
    """An SST-2-like toy set: separable enough that a tiny model learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = int(rng.integers(0, 2))
        pool = POSITIVE if label else NEGATIVE
        words = pool[int(rng.integers(0, len(pool)))]
        texts.append(f"{words} {'really ' * int(rng.integers(0, 4))}".strip() + f" #{i}")
        labels.append(label)
    return TextDataset(task="sst2", split=split, text_a=texts, text_b=None,
                       labels=np.asarray(labels, dtype=np.int64), source=f"toy:{split}")


def similarity(n: int, split: str = "train", seed: int = 0) -> TextDataset:
    """An STS-B-like toy set with 0..5 scores."""
    rng = np.random.default_rng(seed)
    a = [POSITIVE[int(rng.integers(0, 6))] for _ in range(n)]
    b = [NEGATIVE[int(rng.integers(0, 6))] if rng.random() < 0.5 else a[i] for i in range(n)]
    scores = np.asarray([5.0 if x == y else float(rng.uniform(0, 2)) for x, y in zip(a, b, strict=True)],
                        dtype=np.float32)
    return TextDataset(task="stsb", split=split, text_a=a, text_b=b, labels=scores, source=f"toy:{split}")


def without_package(monkeypatch, package: str) -> None:
    """importlib.metadata sees every installed distribution but `package` (a zoo model's missing dependency)."""
    import importlib.metadata

    real = importlib.metadata.distribution

    def distribution(name):
        if name == package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def stderr_ends(proc, head: int = 3000, tail: int = 2000) -> str:
    """A failed subprocess's stderr for an assertion message: its first lines (where a native crash names its signal
    and Python's faulthandler the crashing thread) and its last ones (the error), not only the tail."""
    err = proc.stderr or ""
    return err if len(err) <= head + tail else f"{err[:head]}\n[... {len(err) - head - tail} characters ...]\n{err[-tail:]}"

