"""Validators for sweep-config fields: each error names the YAML path (`search.lam[1]: must be <= 1.0, got 2.0`)."""

from __future__ import annotations

from typing import Any

from makd.config import parse_field
from makd.errors import UsageError


def as_list(raw: dict, key: str, default: Any) -> list:
    """A scalar or a list under `key` as a list (missing: `default`; null: empty)."""
    value = raw.get(key, default)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def value_range(cls: type, name: str, raw: Any, path: str) -> tuple[float, float]:
    """[low, high] for the range field `name` of dataclass `cls`: low < high, both within the field's declared
    bounds (makd.config.option)."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise UsageError(path, f"expected [low, high], got {raw!r}")
    lo, hi = parse_field(cls, name, tuple(raw), path)
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
