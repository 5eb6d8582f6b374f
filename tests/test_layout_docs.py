"""The README's "## Layout" section matches the tree: it names every subpackage of
``tokenizer_kit`` (a directory with an ``__init__.py``) and no directory that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "tokenizer_kit"


def layout_entries(readme: str) -> list[str]:
    """Directories the Layout section's text block names, as repository paths
    (``tokenizer_kit/io``, ``docs``): an indented entry sits under the entry above it."""
    section = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```text\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the Layout section has no ```text block"
    out, parents = [], {}
    for line in block.group(1).splitlines():
        m = re.match(r"^( *)([\w.-]+)/(\s|$)", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        path = "/".join([parents[d] for d in range(depth)] + [m.group(2)])
        parents[depth] = path
        out.append(path)
    return out


def subpackages(repo: Path) -> list[str]:
    """Top-level subpackages of the package, as repository paths."""
    return sorted(f"{PACKAGE}/{p.parent.name}" for p in (repo / PACKAGE).glob("*/__init__.py"))


def layout_problems(readme: str, repo: Path) -> list[str]:
    named = layout_entries(readme)
    missing = [p for p in subpackages(repo) if p not in named]
    absent = [p for p in named if not (repo / p).is_dir()]
    return [f"README Layout does not name {p}/" for p in missing] + [f"README Layout names {p}/, which does not exist" for p in absent]


def test_readme_layout_names_every_subpackage_and_nothing_else():
    assert layout_problems((REPO / "README.md").read_text(), REPO) == []


def test_layout_sees_the_package_entries():
    named = layout_entries((REPO / "README.md").read_text())
    assert f"{PACKAGE}/io" in named and f"{PACKAGE}/cli" in named and "docs" in named


# ---- the check itself, on a planted tree -------------------------------------------------------
def test_the_check_flags_a_missing_and_a_stale_entry(tmp_path):
    for d in ("io", "cli"):
        (tmp_path / PACKAGE / d).mkdir(parents=True)
        (tmp_path / PACKAGE / d / "__init__.py").write_text("")
    (tmp_path / PACKAGE / "presets").mkdir()  # a data directory, not a subpackage
    (tmp_path / "docs").mkdir()
    good = f"# x\n\n## Layout\n\n```text\n{PACKAGE}/\n  io/   a\n  cli/  b\n  presets/ c\ndocs/  d\n```\n\n## Next\n"
    assert layout_problems(good, tmp_path) == []
    stale = good.replace("  cli/  b\n", "  cli/  b\n  engines/  gone\n")
    assert layout_problems(stale, tmp_path) == [f"README Layout names {PACKAGE}/engines/, which does not exist"]
    missing = good.replace("  io/   a\n", "")
    assert layout_problems(missing, tmp_path) == [f"README Layout does not name {PACKAGE}/io/"]
