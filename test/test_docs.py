"""The repository documents itself: every reference to documentation resolves inside the repository.

* No text file names one of the specification files that used to live outside the repository (the
  upper-case spec names, the interface and performance surveys, the shared folder beside the checkout), except as a
  ``docs/`` path that exists.
* Every citation ``docs/<name>.md §<label>`` (also ``[text](<name>.md) §<label>`` in markdown, and a bare
  ``§<label>`` inside ``docs/<name>.md`` itself) names an existing file and a section heading in it.
  Headings carry their label first: ``## 6. AQR``, ``### 6.6 Gaussian renderer``, ``## E. AQR constants``.
* Every relative markdown link ``[text](path)`` in a markdown file points to an existing file.

Failures name ``file:line`` and what is wrong.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TEXT_SUFFIXES = (".py", ".md", ".sh", ".yaml", ".xml", ".cfg", ".txt")
#: Folders never scanned when the file list cannot come from git (build outputs, the venv).
_UNTRACKED_DIRS = {".git", ".venv", "build", "install", "log", "out", "work", "__pycache__", ".pytest_cache"}

#: Section label: a number (``6``, ``6.6``) or one capital letter (``E``).
_LABEL = r"(?:\d+(?:\.\d+)*|[A-Z])"
#: A ``§`` reference list after a file name: ``§6.6``, ``§5.3–5.5``, ``§5, §6.8``, ``§1–5``.
_REFS = rf"(?P<refs>(?:\s*(?:,|and|or)?\s*§\s*{_LABEL}(?:\s*[–-]\s*{_LABEL})?)*)"
_DOCS_PATH = re.compile(rf"(?<![\w.-])(?:\.\./)*(?P<path>docs/[\w./-]+?\.md)\b[`\])]*{_REFS}")
_MD_LINK_CITATION = re.compile(rf"\]\((?P<path>[\w./-]+?\.md)\){_REFS}")
_LABEL_IN_REFS = re.compile(rf"§\s*({_LABEL})(?:\s*[–-]\s*({_LABEL}))?")
_BARE_REF = re.compile(rf"§\s*({_LABEL})(?:\s*[–-]\s*({_LABEL}))?")
_HEADING = re.compile(rf"^#{{1,6}}\s+§?({_LABEL})\.?(?=\s|$)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_LINK = re.compile(r"!?\[[^\]\n]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")

#: Specification files that existed only outside the repository. Built from pieces so that this file
#: does not match its own patterns.
_SPEC_NAMES = re.compile(r"(?P<name>\b(?:MODEL|DESIGN|GOLDEN|ENVIRONMENT)\.md\b|\b(?:ros|perf|style)-anchors\.md\b)")
_OUTSIDE = [
    (re.compile(r"\.\./" + "shared"), "points into a folder outside the repository"),
    (re.compile(r"\bGOLDEN [A-G]\b"), "cites reference values by a name outside the repository (cite docs/golden.md and the section letter)"),
]


def _text_files() -> list[Path]:
    """Tracked text files plus untracked ones git does not ignore (what the next commit may hold)."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                 cwd=REPO, capture_output=True, text=True, check=True, timeout=60).stdout
        paths = {REPO / name for name in listing.split("\0") if name}
    except (OSError, subprocess.SubprocessError):
        paths = {p for p in REPO.rglob("*") if not _UNTRACKED_DIRS & set(p.relative_to(REPO).parts)}
    paths |= set(DOCS.glob("**/*.md"))
    return sorted(p for p in paths if p.suffix in TEXT_SUFFIXES and p.is_file())


def _where(path: Path, text: str, offset: int) -> str:
    return f"{path.relative_to(REPO)}:{text.count(chr(10), 0, offset) + 1}"


def _without_fences(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based line number, line) of the lines outside fenced code blocks."""
    kept, fenced = [], False
    for number, line in enumerate(lines, 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append((number, line))
    return kept


@lru_cache(maxsize=None)
def section_labels(path: Path) -> frozenset[str]:
    """Labels of the headings of a markdown file (``6``, ``6.6``, ``E``), fenced code ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(m.group(1) for _, line in _without_fences(lines) if (m := _HEADING.match(line)))


def _labels(refs: str) -> list[str]:
    out = []
    for first, last in _LABEL_IN_REFS.findall(refs):
        out += [first] + ([last] if last else [])
    return out


def _check_citation(target: Path, refs: str, where: str, problems: list[str]) -> None:
    shown = target.relative_to(REPO) if target.is_relative_to(REPO) else target
    if not target.is_file():
        problems.append(f"{where}: cites {shown}, which does not exist")
        return
    missing = [label for label in _labels(refs) if label not in section_labels(target)]
    if missing:
        problems.append(f"{where}: cites {shown} §{', §'.join(missing)}, but it has no such section heading "
                        f"(it has: {', '.join(sorted(section_labels(target))) or 'none'})")


def test_the_documentation_exists() -> None:
    for name in ("model.md", "golden.md", "design.md", "environment.md"):
        path = DOCS / name
        assert path.is_file(), f"docs/{name} is missing"
        assert section_labels(path), f"docs/{name} has no numbered or lettered section headings"


def test_no_reference_to_specifications_outside_the_repository() -> None:
    problems: list[str] = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _SPEC_NAMES.finditer(text):
            start = match.start()
            as_docs_path = text[max(0, start - 5):start] == "docs/"
            if not (as_docs_path and (DOCS / match.group("name")).is_file()):
                problems.append(f"{_where(path, text, start)}: mentions {match.group('name')}, which is not in the "
                                "repository (cite docs/model.md, docs/design.md, docs/golden.md or docs/environment.md)")
        for pattern, why in _OUTSIDE:
            for match in pattern.finditer(text):
                problems.append(f"{_where(path, text, match.start())}: {match.group(0)!r} {why}")
    assert not problems, "references outside the repository:\n" + "\n".join(problems)


def test_every_docs_citation_names_an_existing_file_and_section() -> None:
    problems: list[str] = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        cited_spans: list[tuple[int, int]] = []
        for match in _DOCS_PATH.finditer(text):
            _check_citation(REPO / match.group("path"), match.group("refs"), _where(path, text, match.start()), problems)
            cited_spans.append(match.span("refs"))
        if path.suffix != ".md":
            continue
        for match in _MD_LINK_CITATION.finditer(text):
            target = (path.parent / match.group("path")).resolve()
            _check_citation(target, match.group("refs"), _where(path, text, match.start()), problems)
            cited_spans.append(match.span("refs"))
        if path.parent != DOCS:
            continue
        # Inside docs/<name>.md a bare § reference means a section of that same file.
        for match in _BARE_REF.finditer(text):
            if any(a <= match.start() < b for a, b in cited_spans):
                continue
            missing = [label for label in match.groups() if label and label not in section_labels(path)]
            if missing:
                problems.append(f"{_where(path, text, match.start())}: refers to §{', §'.join(missing)}, "
                                f"which is not a section heading of {path.relative_to(REPO)}")
    assert not problems, "unresolved documentation citations:\n" + "\n".join(problems)


def test_relative_markdown_links_resolve() -> None:
    problems: list[str] = []
    markdown = [p for p in _text_files() if p.suffix == ".md"]
    for name in ("README.md", "models/README.md"):
        assert REPO / name in markdown, f"{name} is missing"
    for path in markdown:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in _without_fences(lines):
            for match in _MD_LINK.finditer(_INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)):
                target = match.group("target")
                if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # a URL or an anchor in the same page
                resolved = (path.parent / target.split("#", 1)[0]).resolve()
                if not resolved.exists():
                    problems.append(f"{path.relative_to(REPO)}:{number}: link to {target!r}, but "
                                    f"{resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else resolved} "
                                    "does not exist")
    assert not problems, "broken relative links:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, labels", [
    ("docs/model.md §6.6", ["6.6"]),
    ("(docs/model.md §5.3–5.5): x", ["5.3", "5.5"]),
    ("(docs/model.md §5, §6.8): x", ["5", "6.8"]),
    ("`docs/golden.md` §E.", ["E"]),
    ("docs/model.md section 2.1", []),
])
def test_citation_parsing(text: str, labels: list[str]) -> None:
    match = _DOCS_PATH.search(text)
    assert match is not None and _labels(match.group("refs")) == labels


def test_heading_labels() -> None:
    assert _HEADING.match("### 6.6 Gaussian renderer").group(1) == "6.6"
    assert _HEADING.match("## 6. AQR (variant A)").group(1) == "6"
    assert _HEADING.match("## E. AQR constants").group(1) == "E"
    assert _HEADING.match("## §11.3 Denoising").group(1) == "11.3"
    assert _HEADING.match("# AQR-CMT model") is None
