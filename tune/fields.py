"""Validators for sweep-config fields: each error names the YAML path (`search.lam[1]: must be <= 1.0, got 2.0`)."""

from __future__ import annotations

from typing import Any

from makd.config import typed_number
from makd.errors import UsageError


def as_list(raw: dict, key: str, default: Any) -> list:
    """A scalar or a list under `key` as a list (missing: `default`; null: empty)."""
    value = raw.get(key, default)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def number(value: Any, path: str, *, kind=float, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Any:
    """An int or float within [low, high] (or (low, high] with low_open); bools are refused."""
    value = typed_number(value, path, kind)
    if low is not None and (value <= low if low_open else value < low):
        raise UsageError(path, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(path, f"must be <= {high}, got {value}")
    return value


def value_range(raw: Any, path: str, *, low: float, high: float | None = None,
                low_open: bool = False) -> tuple[float, float]:
    """[low, high] with low < high, both within the bounds."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise UsageError(path, f"expected [low, high], got {raw!r}")
    lo = number(raw[0], f"{path}[0]", low=low, high=high, low_open=low_open)
    hi = number(raw[1], f"{path}[1]", low=low, high=high, low_open=low_open)
    if hi <= lo:
        raise UsageError(path, f"high must exceed low, got {raw!r}")
    return (lo, hi)


def mapping(raw: Any, path: str, allowed: set[str], example: str) -> dict:
    """A mapping (missing: empty) whose keys are all in `allowed`; the first unknown key is named."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UsageError(path, f"expected a mapping like {example}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(f"{path}.{unknown[0]}", "unknown field")
    return raw
