"""The user's documentation holds together: README.md stays the short first page, every relative link in
README.md, the top-level pages and docs/*.md reaches an existing file (and heading), every docs page
can be found from README, and README shows CI's test command exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_LIMIT = 20_000  # bytes
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def pages() -> list[Path]:
    return [*sorted(ROOT.glob("*.md")), *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, inline code marks and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, fragment = target.partition("#")
    return ((page.parent / path).resolve() if path else page), fragment


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; keep it <= {README_LIMIT}, move detail to docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    bad = []
    for target in links(page):
        if not relative(target):
            continue
        path, fragment = resolve(page, target)
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            bad.append(f"{target}: no heading #{fragment} in {path.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: broken links: {bad}"


def test_every_docs_page_is_reachable_from_readme():
    seen, todo = {README.resolve()}, [README]
    while todo:
        page = todo.pop()
        for target in links(page):
            if not relative(target):
                continue
            path, _ = resolve(page, target)
            if path.suffix == ".md" and path.is_file() and path not in seen:
                seen.add(path)
                todo.append(path)
    lost = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in seen]
    assert not lost, f"docs pages no reader can reach from README.md: {lost}"


def test_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install -e ".[dev,landmarks]" && python -m pytest -q tests'
    assert command in ci, ".ci/run no longer runs the test command this test expects"
    assert command in README.read_text(), "README.md must show the test command exactly as .ci/run runs it"


def test_the_checks_themselves_catch_breakage(tmp_path):
    """The link, anchor and reachability helpers on a planted broken page."""
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Real faces: the extra `faceocc[landmarks]`\n\n## The twin/kernel contract\n")
    page.write_text("See [b](b.md#real-faces-the-extra-faceocclandmarks), [c](b.md#the-twinkernel-contract),\n"
                    "![pic](missing.png), [web](https://example.com) and `[not](a-link.md)`.\n"
                    "```\n[also not](code.md)\n```\n")
    assert links(page) == ["b.md#real-faces-the-extra-faceocclandmarks", "b.md#the-twinkernel-contract",
                           "missing.png", "https://example.com"]
    assert anchors(tmp_path / "b.md") == {"real-faces-the-extra-faceocclandmarks", "the-twinkernel-contract"}
    assert not resolve(page, "missing.png")[0].exists()
    assert not relative("https://example.com") and relative("docs/x.md")
