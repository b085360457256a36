"""The Markdown docs hold together: BENCHMARKS.md's contents list every section, and every relative link
(a file, or a heading anchor as GitHub renders it) points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "BENCHMARKS.md", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str]]:
    out, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = re.match(r"(#{1,6}) (.+)", line)
        if m and not fenced:
            out.append((len(m.group(1)), m.group(2)))
    return out


def test_slug_follows_github():
    assert slug("Short-GOP copies (`mcl transcode`)") == "short-gop-copies-mcl-transcode"
    assert slug("Calibration 2, gate 2b: region50, 48 px (seed 0's baseline only)") == (
        "calibration-2-gate-2b-region50-48-px-seed-0s-baseline-only")


def test_benchmarks_contents_list_every_section_in_order():
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"\]\(#([^)]+)\)", contents)
    sections = [slug(h) for level, h in headings(path) if level in (2, 3) and h != "Contents"]
    assert listed == sections, "update the Contents list at the top of BENCHMARKS.md"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in {slug(h) for _, h in headings(dest)}:
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"
