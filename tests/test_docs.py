"""The user docs: a front-page README of at most 16 KB that starts with the two quick-start
commands, and relative links in README.md, docs/*.md and models/<net>/README.md that all
resolve (the file exists; an anchor names a heading of the target page, as GitHub slugs it)."""

import re
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "models").glob("*/README.md"))]
QUICK_START = [  # the two quick-start commands (docs/architecture.md, "Contracts"): the README shows them verbatim
    "pip install -r requirements.txt && bash test/train_full_1p.sh      # trains on the demo set, prints FPS + Acc@1",
    "pip install -r requirements-dev.txt && python -m pytest -q          # the test suite",
]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text without fenced/indented code blocks and inline code (links there are not links)."""
    lines, code = [], False
    for line in FENCE.sub("", text).splitlines():
        # an indented block starts after a blank line and runs while lines stay indented or blank
        code = line.startswith("    ") and (code or not lines or not lines[-1].strip()) or (code and not line.strip())
        lines.append("" if code else line)
    return re.sub(r"(`+).+?\1", "", "\n".join(lines), flags=re.DOTALL)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercased, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set:
    """Every heading's anchor on a page (repeated headings get -1, -2, ... as on GitHub)."""
    seen, out = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = _slug(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def relative_links(page: Path):
    for target in LINK.findall(_prose(page.read_text())):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
            yield target


def test_readme_is_a_front_page_of_at_most_16_kb():
    size = README.stat().st_size
    assert size <= 16_000, f"README.md is {size} bytes; move detail to docs/"


def test_readme_starts_with_the_two_quick_start_commands():
    text = README.read_text()
    first_block = text.split("## Quick start", 1)[1].split("\n\n")[1]
    assert [line.strip() for line in first_block.splitlines()] == QUICK_START
    for path in ("requirements.txt", "requirements-dev.txt", "test/train_full_1p.sh"):
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, broken


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    """The checker itself: it finds links outside code, and slugs headings as GitHub does."""
    page = tmp_path / "p.md"
    page.write_text("# Decoding backends: `--data-backend`\n## LR warm-up, torchvision's spelling\n## A\n## A\n\n"
                    "See [x](other.md#y) and [z](#a-1), not `[c](code.md)`.\n\n    [d](indented.md)\n\n"
                    "```\n[e](fenced.md)\n```\n[web](https://example.com)\n")
    assert list(relative_links(page)) == ["other.md#y", "#a-1"]
    assert anchors(page) == {"decoding-backends---data-backend", "lr-warm-up-torchvisions-spelling", "a", "a-1"}
