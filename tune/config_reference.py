"""docs/sweep-config.md, generated from the schema: the sweep keys (tune/config.py's SWEEP_FIELDS) and the training
keys (makd/config.py's TrainOptions fields, which are also `makd distill` flags), each with its type, default,
bounds and meaning. A test fails when the committed file differs from what this writes.

    python -m tune.config_reference docs/sweep-config.md     # rewrite it (also: make docs)
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, fields
from pathlib import Path

from makd.config import TrainOptions, _types, flag_name
from makd.files import atomic_write_bytes
from tune.config import REQUIRED, SWEEP_FIELDS

OUT = Path(__file__).resolve().parents[1] / "docs" / "sweep-config.md"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value: object) -> str:
    if value is None:
        return "null"
    if value is REQUIRED:
        return "**required**"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bounds(meta: dict) -> str:
    parts = []
    if meta.get("choices"):
        parts.append(" \\| ".join(meta["choices"]))
    if meta.get("low") is not None:
        parts.append(f"{'>' if meta.get('low_open') else '>='} {meta['low']:g}")
    if meta.get("below") is not None:
        parts.append(f"< {meta['below']:g}")
    return ", ".join(parts)


def render() -> str:
    """The whole reference page, deterministic."""
    lines = ["# Sweep config reference", "",
             "Generated from the schema by `python -m tune.config_reference docs/sweep-config.md` (`make docs`); a "
             "test fails when this file is stale. A sweep config is one YAML mapping: the sweep keys below, plus "
             "any training key at the top level (shared by every trial). Unknown keys, wrong types and values out "
             "of bounds are refused in one line naming the key, before Ray starts.", "",
             "## Sweep keys", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, key in SWEEP_FIELDS.items():
        lines.append(f"| `{name}` | {_cell(key.type)} | {_cell(_value(key.default))} | {_cell(key.meaning)} |")
    lines += ["", "## Training keys", "",
              "Every field of `TrainOptions` (makd/config.py); each is also a `makd distill` flag (`--name-with-"
              "dashes`).", "", "| key | type | default | bounds | meaning | flag |", "|---|---|---|---|---|---|"]
    for f in fields(TrainOptions):
        kind, optional = _types()[f.name]
        type_text = kind.__name__ + (" or null" if optional else "")
        default = REQUIRED if f.default is MISSING else f.default
        help_text = f.metadata["help"]() if callable(f.metadata["help"]) else f.metadata["help"]
        lines.append(f"| `{f.name}` | {type_text} | {_cell(_value(default))} | {_bounds(f.metadata)} | "
                     f"{_cell(help_text)} | `--{flag_name(f.name)}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    atomic_write_bytes(out, render().encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
