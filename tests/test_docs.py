"""The documentation stands on its own: no link leaves the repository, and every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "spec").glob("*.md"),
               *(ROOT / "runtimes").glob("**/README.md"), *(ROOT / "examples").glob("*.md")])


def test_docs_link_nothing_outside_the_repository():
    found = [(p.relative_to(ROOT), m) for p in DOCS if "target" not in p.parts
             for m in re.findall(r"https?://\S+", p.read_text(encoding="utf-8"))]
    assert not found, found


def prose(text: str) -> str:
    """The text without code blocks and inline code (where brackets are code, not links)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def test_relative_links_resolve():
    broken = []
    for path in DOCS:
        if "target" in path.parts:
            continue
        for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
            file = target.split("#", 1)[0]
            if file and not (path.parent / file).exists():
                broken.append((str(path.relative_to(ROOT)), target))
    assert not broken, broken
