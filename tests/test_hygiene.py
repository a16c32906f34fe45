"""Source hygiene the issue tracker asked for, enforced: small files, no stale lint suppressions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("eigendspy", "tests", "benchmarks", "scripts") for p in (ROOT / folder).rglob("*.py"))
NOQA = re.compile(r"#\s*noqa:\s*([A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")


def selected_prefixes() -> tuple[str, ...]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return tuple(config["tool"]["ruff"]["lint"]["select"])


def test_sources_were_found() -> None:
    assert len(SOURCES) > 100


def test_no_noqa_for_rules_ruff_does_not_select() -> None:
    """A suppression of a rule that never runs only misleads the reader about what is checked."""
    selected = selected_prefixes()
    stale = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in NOQA.finditer(line):
                for code in (c.strip() for c in match.group(1).split(",")):
                    if re.match(r"[A-Z]+", code).group(0) not in selected:
                        stale.append(f"{path.relative_to(ROOT)}:{number} {code}")
    assert not stale, "noqa for rules ruff does not select:\n" + "\n".join(stale)


def test_no_module_over_400_lines() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for p in SOURCES if (n := len(p.read_text().splitlines())) > 400]
    assert not long, long
