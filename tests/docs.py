"""The README's and docs/'s shown commands and examples, read one way by every test that runs them."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))


def blocks(doc: str) -> list[tuple[str, str]]:
    """Every fenced block of a doc as (language, text), in order; a block indented under a list item too (its
    lines without that indentation)."""
    found, lang, lines, indent = [], None, [], ""
    for line in (REPO / doc).read_text().splitlines():
        if line.lstrip().startswith("```"):
            if lang is None:
                indent = line[:len(line) - len(line.lstrip())]
                lang, lines = line.strip()[3:].strip(), []
            else:
                found.append((lang, "\n".join(lines) + "\n"))
                lang = None
        elif lang is not None:
            lines.append(line.removeprefix(indent))
    return found


def block_after(doc: str, marker: str, lang: str = "bash") -> str:
    """The first ```lang block after `marker` (a heading or a phrase) in a doc."""
    text = (REPO / doc).read_text()
    assert marker in text, f"{doc}: no '{marker}'"
    return text.split(marker, 1)[1].split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def shell_lines(block: str) -> list[str]:
    """One command per line: continuation lines joined, comments after two spaces and '#' dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [re.split(r"\s{2,}#", line)[0].strip() for line in joined.splitlines() if line.strip()]


def commands_after(doc: str, marker: str) -> list[str]:
    return shell_lines(block_after(doc, marker))


def shown_commands(doc: str) -> list[str]:
    """Every command a doc shows in a ```bash block."""
    return [line for lang, text in blocks(doc) if lang == "bash" for line in shell_lines(text)]
