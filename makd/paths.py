"""Where makd keeps its on-disk state (zoo models, teacher-logit cache), overridable by MAKD_HOME."""

from __future__ import annotations

import os
from pathlib import Path


def makd_home() -> Path:
    """$MAKD_HOME, else ~/.cache/makd: one root so a user can move or wipe everything at once."""
    return Path(os.environ.get("MAKD_HOME", Path.home() / ".cache" / "makd")).expanduser()


def default_cache_dir() -> Path:
    """Teacher-logit cache root (`--cache-dir` overrides)."""
    return makd_home() / "cache"
