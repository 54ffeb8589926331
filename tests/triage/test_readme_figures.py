"""Every figure in a README table that cites a committed benchmark file is in that file (no services).

A table counts as citing `bench/baseline/NAME.json` when the paragraph just above it names that file.
Each number in its value cells (not the first column, which names the figure, nor a `target` column,
nor a column whose header says "not in the JSON") must equal a number of the file, or of its keys,
at the decimals shown, as it is or as a percentage. So a figure typed by hand, or left behind when a
benchmark is re-run, fails here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
BASELINE = PROJECT_ROOT / "bench" / "baseline"
_CITED = re.compile(r"bench/baseline/([\w\-]+\.json)")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
NOT_CHECKED = "not in the JSON"


@dataclass(frozen=True)
class Table:
    line: int
    cited: tuple[str, ...]
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def cited_tables(text: str) -> list[Table]:
    lines = text.splitlines()
    out: list[Table] = []
    i = 0
    while i < len(lines):
        is_table = lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|") \
            and set(lines[i + 1].replace("|", "").strip()) <= set("-: ")
        if not is_table:
            i += 1
            continue
        end = i + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        paragraph: list[str] = []
        while k >= 0 and lines[k].strip() and not lines[k].startswith("|"):
            paragraph.insert(0, lines[k])
            k -= 1
        cited = tuple(_CITED.findall(" ".join(paragraph)))
        if cited:
            out.append(Table(i + 1, cited, _cells(lines[i]), [_cells(r) for r in lines[i + 2 : end]]))
        i = end
    return out


def numbers_of(obj: Any, out: set[float]) -> set[float]:
    """Every number in a JSON document, and the numbers written in its keys ("p95_ms", "1000")."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(float(d) for d in _DIGITS.findall(str(key)))
            numbers_of(value, out)
    elif isinstance(obj, list):
        for value in obj:
            numbers_of(value, out)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out.add(float(obj))
    return out


def shown_as(figure: float, decimals: int, known: set[float]) -> bool:
    return any(round(x, decimals) == figure or round(x * 100, decimals) == figure for x in known)


def unbacked(table: Table) -> list[str]:
    """The figures of `table` that none of its cited files holds."""
    known: set[float] = set()
    for name in table.cited:
        numbers_of(json.loads((BASELINE / name).read_text(encoding="utf-8")), known)
    skip = {0} | {n for n, h in enumerate(table.header) if h.lower().startswith("target") or NOT_CHECKED in h}
    missing = []
    for row in table.rows:
        for n, cell in enumerate(row):
            if n in skip:
                continue
            for m in _NUMBER.finditer(cell):
                whole, frac = m.group(1).replace(",", ""), m.group(2) or ""
                if not shown_as(float(f"{whole}.{frac}" if frac else whole), len(frac), known):
                    missing.append(f"line {table.line}, {row[0]!r}: {m.group(0)} in {cell!r}")
    return missing


def test_the_readme_cites_committed_benchmark_files_and_they_hold_its_figures() -> None:
    tables = cited_tables(README.read_text(encoding="utf-8"))
    assert len(tables) >= 4, "the README's benchmark tables name their bench/baseline files"
    for table in tables:
        for name in table.cited:
            assert (BASELINE / name).is_file(), f"README line {table.line} cites bench/baseline/{name}: commit it"
    missing = [m for t in tables for m in unbacked(t)]
    assert not missing, "figures in the README that no cited bench/baseline file holds:\n" + "\n".join(missing)


def test_the_check_catches_a_figure_typed_by_hand(tmp_path: Path) -> None:
    doc = json.loads((BASELINE / "canary.json").read_text(encoding="utf-8"))
    table = Table(1, ("canary.json",), ["figure", "value"], [["A/A", f"{doc['aa_false_promotion_rate'] * 100:.2f} %"],
                                                             ["typed", "12.34 %"]])
    assert unbacked(table) == ["line 1, 'typed': 12.34 in '12.34 %'"]
