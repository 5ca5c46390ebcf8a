"""docs/sweep-config.md, generated from the schema: the sweep keys (makd_sweep/config.py's SWEEP_FIELDS), the keys of each
section (the dataclass that declares it: SchedulerConfig, PackConfig, ...) and the training keys (makd/config.py's
TrainOptions fields, which are also `makd distill` flags), each with its type, default, bounds and meaning, read from
the same `option(...)` declarations the parser uses. A test fails when the committed file differs from what this
writes.

    python -m makd_sweep.config_reference docs/sweep-config.md     # rewrite it (also: make docs)
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from makd.config import TrainOptions, field_help, field_types, flag_name, type_text
from makd.files import atomic_write_bytes
from makd_sweep.config import REQUIRED, SWEEP_FIELDS
from makd_sweep.sweep_config import AdaptiveSeeds, FinalConfig

OUT = Path(__file__).resolve().parents[1] / "docs" / "sweep-config.md"


def _table_text(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value: object) -> str:
    if value is None:
        return "null"
    if value is REQUIRED:
        return "**required**"
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_dataclass(value):  # a section's defaults
        return "{" + ", ".join(f"{f.name}: {_value(getattr(value, f.name))}" for f in fields(value)
                               if "help" in f.metadata) + "}"  # a plain field is derived, not a key
    return str(value)


def _bounds(meta: dict) -> str:
    parts = []
    if meta.get("choices"):
        parts.append(" \\| ".join(meta["choices"]))
    if meta.get("low") is not None:
        parts.append(f"{'>' if meta.get('low_open') else '>='} {meta['low']:g}")
    if meta.get("high") is not None:
        parts.append(f"{'<' if meta.get('high_open') else '<='} {meta['high']:g}")
    return ", ".join(parts)


def _section_rows(path: str, cls: type) -> list[str]:
    """One row per key of the section `cls` at `path`; a key that is itself a section (tracking.mlflow) by its
    own keys."""
    rows = []
    for f in fields(cls):
        if "help" not in f.metadata:  # derived, not a key
            continue
        kind, _ = field_types(cls)[f.name]
        if is_dataclass(kind):
            rows += _section_rows(f"{path}.{f.name}", kind)
            continue
        default = f.metadata.get("default_text") or (REQUIRED if f.default is MISSING else f.default)
        rows.append(f"| `{path}.{f.name}` | {type_text(cls, f.name)} | {_table_text(_value(default))} | "
                    f"{_bounds(f.metadata)} | {_table_text(field_help(f))} |")
        if cls is FinalConfig and f.name == "seeds":  # its other form: a mapping
            rows += _section_rows(f"{path}.seeds", AdaptiveSeeds)
    return rows


def render() -> str:
    """The whole reference page, deterministic."""
    lines = ["# Sweep config reference", "",
             "Generated from the schema by `python -m makd_sweep.config_reference docs/sweep-config.md` (`make docs`); a "
             "test fails when this file is stale. A sweep config is one YAML mapping: the sweep keys below, plus "
             "any training key at the top level (shared by every trial). Unknown keys, wrong types and values out "
             "of bounds are refused in one line naming the key, before Ray starts.", "",
             "## Sweep keys", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, key in SWEEP_FIELDS.items():
        lines.append(f"| `{name}` | {_table_text(key.type)} | {_table_text(_value(key.default))} | {_table_text(key.meaning)} |")
    lines += ["", "## Section keys", "",
              "The keys of each mapping above, declared by the dataclass that holds them (a missing key takes its "
              "default; bounds apply to each element of a list).", "",
              "| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for name, key in SWEEP_FIELDS.items():
        if key.section is not None:
            lines += _section_rows(name, key.section)
    lines += ["", "## Training keys", "",
              "Every field of `TrainOptions` (makd/config.py); each is also a `makd distill` flag (`--name-with-"
              "dashes`).", "", "| key | type | default | bounds | meaning | flag |", "|---|---|---|---|---|---|"]
    for f in fields(TrainOptions):
        default = REQUIRED if f.default is MISSING else f.default
        lines.append(f"| `{f.name}` | {type_text(TrainOptions, f.name)} | {_table_text(_value(default))} | "
                     f"{_bounds(f.metadata)} | {_table_text(field_help(f))} | `--{flag_name(f.name)}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUT
    atomic_write_bytes(out, render().encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
