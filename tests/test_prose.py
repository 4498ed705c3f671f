"""The notebooks' text quotes only numbers that their outputs show.

Every number with a decimal point in a markdown cell (outside `inline code`, and not an exercise, question or
section number) must appear, at the precision quoted, among the numbers of the notebook's code cells and their
committed outputs, or in a benchmark result (`bench/results/NAME.md`) that the same markdown cell names. A figure
the text quotes therefore comes from the outputs beside it, or from a named measurement a learner can open.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")
NUMBERED = re.compile(r"(?:Exercise|Question|[Ss]ection|[Ss]ections|and|notebook)\s+\d+\.\d+")
INLINE_CODE = re.compile(r"`[^`]*`")
BENCH_FILE = re.compile(r"bench/results/([\w-]+)\.md")


def _output_text(output) -> str:
    if "text" in output:
        return output["text"]
    data = output.get("data", {})
    return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/markdown", "text/html"))


def _pool(text: str) -> set[str]:
    return set(NUMBER.findall(text)) | set(re.findall(r"\d+\.\d+", text))


def quoted_numbers(markdown: str) -> list[str]:
    """The decimal numbers a markdown cell quotes (not in inline code, not exercise or section numbers)."""
    text = INLINE_CODE.sub(" ", markdown)
    text = NUMBERED.sub(" ", text)
    return NUMBER.findall(text)


def shown(quoted: str, pool: set[str]) -> bool:
    """Whether `quoted` is one of the pool's numbers, or one of them rounded to the quoted precision."""
    if quoted in pool:
        return True
    decimals, value = len(quoted.split(".")[1]), float(quoted)
    return any(len(p.split(".")[1]) >= decimals and abs(round(float(p), decimals) - value) < 10 ** -(decimals + 3)
               for p in pool)


def unsupported_numbers(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source + "\n" + "\n".join(_output_text(o) for o in c.get("outputs", []))
                     for c in nb.cells if c.cell_type == "code")
    pool = _pool(code)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        cell_pool = set(pool)
        for name in BENCH_FILE.findall(cell.source):
            bench = ROOT / "bench" / "results" / f"{name}.md"
            cell_pool |= _pool(bench.read_text()) if bench.exists() else set()
        missing += [f"cell {i}: {q}" for q in quoted_numbers(cell.source) if not shown(q, cell_pool)]
    return missing


def test_the_rule_itself():
    assert quoted_numbers("Exercise 4.2 gives 97.4% (`sparsity=0.5`), Question 3.1 and section 2.1") == ["97.4"]
    assert shown("3.7", {"3.66"}) and shown("97.4", {"97.41"}) and not shown("3.8", {"3.94"})
    assert not shown("3.95", {"3.9"})  # a quoted figure more precise than the outputs is not shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_text_is_in_the_outputs(path):
    missing = unsupported_numbers(path)
    assert not missing, f"{path.name}: numbers in the text that no output shows: {missing}"
