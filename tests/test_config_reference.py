"""docs/sweep-config.md is generated from the schema and kept current; the defaults it states are the parser's."""

from __future__ import annotations

from pathlib import Path

import pytest

from makd_sweep.config import REQUIRED, SWEEP_FIELDS, parse_config
from makd_sweep.config_reference import OUT, render

MINIMAL = {"name": "m", "tasks": ["rte"], "students": ["2x128"], "teacher": "zoo:minilm-l6"}


def test_the_committed_reference_is_what_the_schema_generates():
    assert OUT == Path(__file__).resolve().parents[1] / "docs" / "sweep-config.md"
    assert OUT.read_text() == render(), "docs/sweep-config.md is stale: run `make docs`"


@pytest.mark.parametrize("key", [k for k, v in SWEEP_FIELDS.items() if not isinstance(v.default, str)
                                 or k == "storage"])
def test_a_stated_default_is_the_parsed_value(key):
    """Every default the reference gives as a value (not prose) is what a config without that key parses to."""
    cfg = parse_config(MINIMAL)
    assert getattr(cfg, key) == SWEEP_FIELDS[key].default


@pytest.mark.parametrize("key", [k for k, v in SWEEP_FIELDS.items() if v.default is REQUIRED])
def test_a_required_key_is_refused_when_missing(key):
    from makd.errors import UsageError

    with pytest.raises(UsageError) as err:
        parse_config({k: v for k, v in MINIMAL.items() if k != key})
    assert err.value.field == key
