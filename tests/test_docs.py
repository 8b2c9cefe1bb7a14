"""Documentation checks: no work-period labels, no dates in reference pages, no references
to documents outside the repository, and no dead relative links or anchors.

Which pages are which (docs/README.md says the same):

* *reference pages* describe the present system and carry no dates: README.md and every
  ``docs/*.md`` directly under docs/;
* the changelog (CHANGELOG.md), the archive (docs/archive/), the decision notes
  (docs/decisions/), the index of raw files (docs/results/README.md) and the model cards
  may carry dates (a version's release, a run's day, a lineage).

Every check reads the files git knows about (tracked, plus new files that are not
ignored), so build outputs and virtual environments are never read.
"""
from __future__ import annotations

import re
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

TEXT_SUFFIXES = {
    ".md", ".py", ".txt", ".json", ".yaml", ".yml", ".toml", ".cfg", ".csv", ".sh",
    ".cff", ".ini", "",
}

# Built from pieces so that this file does not match its own patterns.
WORK_PERIOD = re.compile(r"(?<![a-z])" + "st" + r"op[ _-]?[0-9]+", re.IGNORECASE)
OUTSIDE_SPEC = re.compile("DESIGN" + r"\.md")
ISSUE_NUMBER = re.compile(r"\b" + "iss" + r"ue\s*#?\s*[0-9]+\b", re.IGNORECASE)
ISO_DATE = re.compile(r"(?<![\w/.-])(?:19|20)[0-9]{2}-[01][0-9]-[0-3][0-9](?![\w-])")
MONTHS = ("January|February|March|April|May|June|July|August|September|October|"
          "November|December")
WORDY_DATE = re.compile(r"\b(?:[0-3]?[0-9] )?(?:" + MONTHS + r") (?:[0-3]?[0-9], )?(?:19|20)[0-9]{2}\b")


@lru_cache(maxsize=1)
def repo_files() -> tuple[Path, ...]:
    """Tracked files and new files that git does not ignore."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in sorted(set(filter(None, out.split("\0")))):
        p = ROOT / name
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and p.stat().st_size < 2_000_000:
            files.append(p)
    return tuple(files)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def markdown_pages() -> list[Path]:
    """README.md, CHANGELOG.md, docs/**/*.md and every model card."""
    pages = []
    for p in repo_files():
        rel = p.relative_to(ROOT).as_posix()
        if p.suffix != ".md":
            continue
        if rel in ("README.md", "CHANGELOG.md") or rel.startswith(("docs/", "candidates/")) \
                or p.name == "MODEL_CARD.md":
            pages.append(p)
    return pages


def reference_pages() -> list[Path]:
    pages = [ROOT / "README.md"]
    pages += [p for p in repo_files()
              if p.parent == ROOT / "docs" and p.suffix == ".md"]
    return pages


def find_lines(pattern: re.Pattern, paths) -> list[str]:
    hits = []
    for p in paths:
        if p == THIS:
            continue
        text = read_text(p)
        if text is None:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            for m in pattern.finditer(line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {m.group(0)!r} in {line.strip()[:100]}")
    return hits


# ------------------------------------------------------------------ markdown links
def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup removed, lower case, punctuation other
    than hyphens and underscores dropped, spaces turned into hyphens."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", heading)          # images
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)          # links keep their text
    text = re.sub(r"<[^>]+>", "", text)                            # html tags
    text = text.replace("`", "").strip().lower()
    out = []
    for ch in text:
        if ch in " -":
            out.append("-")
        elif ch == "_" or ch.isalnum() or unicodedata.category(ch).startswith(("L", "N", "M")):
            out.append(ch)
    return "".join(out)


FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!\\)!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def strip_code(text: str) -> list[str]:
    """Lines outside fenced code blocks, with inline code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return lines


def anchors_of(text: str) -> set[str]:
    """Every anchor a page defines, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        anchors.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def dead_links(page: Path, text: str | None = None, root: Path = ROOT) -> list[str]:
    """Relative links of one markdown page whose file or anchor does not exist."""
    text = read_text(page) if text is None else text
    problems = []
    for i, line in enumerate(strip_code(text), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
                continue
            path_part, _, anchor = target.partition("#")
            dest = page if not path_part else (page.parent / path_part).resolve()
            if not path_part and not anchor:
                continue
            try:
                dest.relative_to(root)
            except ValueError:
                problems.append(f"{page.name}:{i}: {target} leaves the repository")
                continue
            if not dest.exists():
                problems.append(f"{page.relative_to(root)}:{i}: {target}: no such file")
                continue
            if anchor:
                if dest.is_dir() or dest.suffix != ".md":
                    problems.append(f"{page.relative_to(root)}:{i}: {target}: anchor on a non-markdown target")
                elif anchor not in anchors_of(read_text(dest) or ""):
                    problems.append(f"{page.relative_to(root)}:{i}: {target}: no such anchor")
    return problems


# ------------------------------------------------------------------------ tests
def test_no_work_period_labels_anywhere():
    hits = find_lines(WORK_PERIOD, repo_files())
    hits += [f"file name: {p.relative_to(ROOT)}" for p in repo_files()
             if WORK_PERIOD.search(p.relative_to(ROOT).as_posix())]
    assert not hits, "work-period labels (use a version or a date):\n" + "\n".join(hits[:40])


def test_no_dates_in_reference_pages():
    hits = find_lines(ISO_DATE, reference_pages()) + find_lines(WORDY_DATE, reference_pages())
    assert not hits, ("dates in reference pages (history belongs in CHANGELOG.md or "
                      "docs/archive/):\n" + "\n".join(hits[:40]))


def test_no_references_to_documents_outside_the_repository():
    hits = find_lines(OUTSIDE_SPEC, repo_files()) + find_lines(ISSUE_NUMBER, repo_files())
    assert not hits, ("references to the outside design file or to issue numbers (link "
                      "docs/method.md or docs/results.md instead):\n" + "\n".join(hits[:40]))


def test_relative_links_and_anchors_resolve():
    pages = markdown_pages()
    assert ROOT / "README.md" in pages
    problems = [p for page in pages for p in dead_links(page)]
    assert not problems, "dead links:\n" + "\n".join(problems[:60])


# ------------------------------------------------- the checkers can fail
def test_slug_follows_github():
    assert github_slug("Guided DDIM at one resolution") == "guided-ddim-at-one-resolution"
    assert github_slug("`mssfs analyze`: interpretations and spread") == "mssfs-analyze-interpretations-and-spread"
    assert github_slug("Region flips (ours)") == "region-flips-ours"
    assert github_slug("Speed & memory — CPU") == "speed--memory--cpu"
    assert github_slug("The [V-cycle](x.md)") == "the-v-cycle"
    text = "# A\n## A\n```\n# not a heading\n```\n"
    assert anchors_of(text) == {"a", "a-1"}


def test_link_checker_finds_dead_files_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Present heading\n")
    page = tmp_path / "page.md"
    text = ("# Top\n"
            "[ok](other.md#present-heading) [ok](#top) [web](https://example.org/x.md)\n"
            "[bad file](missing.md) [bad anchor](other.md#absent) [bad local](#nowhere)\n"
            "`[in code](missing2.md)`\n"
            "```\n[in a fence](missing3.md)\n```\n")
    page.write_text(text)
    problems = dead_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert any("missing.md" in p for p in problems)
    assert any("other.md#absent" in p for p in problems)
    assert any("#nowhere" in p for p in problems)


def test_label_and_date_patterns_match_what_they_should():
    assert WORK_PERIOD.search("since " + "st" + "op 22") and WORK_PERIOD.search("st" + "op17")
    assert WORK_PERIOD.search("cpu_" + "st" + "op18_log.csv")
    assert not WORK_PERIOD.search("the sampler stops 3 times") and not WORK_PERIOD.search("stopwatch 2")
    assert ISO_DATE.search("measured on 2026-11-27 on one GPU")
    assert not ISO_DATE.search("results/gpu_2026-11-27_run1_log.csv")
    assert not ISO_DATE.search("candidates/published-arch-2026-11-27")
    assert WORDY_DATE.search("on 5 December 2026") and not WORDY_DATE.search("NeurIPS 2024")
    assert ISSUE_NUMBER.search("(" + "iss" + "ue 6)") and not ISSUE_NUMBER.search("an issue with 6 samples")
    assert OUTSIDE_SPEC.search("DESIGN" + ".md §7")


def setup_commands(readme: str) -> list[str]:
    """The fenced commands of the README's "Set up and run" section."""
    section = readme.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def test_readme_has_two_setup_commands_and_ci_runs_the_second():
    commands = setup_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    install_and_run, install_and_test = commands
    assert "pip install" in install_and_run and "mssfs sample" in install_and_run
    assert "pytest" in install_and_test
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip("no .ci/run in this checkout")
    ci_lines = [line.strip() for line in ci.read_text(encoding="utf-8").splitlines()]
    assert install_and_test in ci_lines, ".ci/run must run the README's test command"


def test_setup_command_parser_sees_a_third_command():
    readme = "## Set up and run\n```bash\na\n```\n```bash\nb\n```\n```bash\nc\n```\n## Next\n```bash\nd\n```\n"
    assert setup_commands(readme) == ["a", "b", "c"]
