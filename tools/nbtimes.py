"""Print the wall time of every code cell of executed notebooks (from nbconvert's execution metadata).

Usage: python tools/nbtimes.py notebooks/06_structured_pruning.ipynb [...]
"""

import sys
from datetime import datetime

import nbformat


def cell_seconds(cell) -> float:
    meta = cell.get("metadata", {}).get("execution", {})
    start, end = meta.get("iopub.execute_input"), meta.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def main():
    for path in sys.argv[1:]:
        nb = nbformat.read(path, as_version=4)
        times = [(cell_seconds(c), i, c.source.splitlines()[0][:70] if c.source else "") for i, c in
                 enumerate(nb.cells) if c.cell_type == "code"]
        print(f"{path}: {sum(t for t, _, _ in times):.1f} s in all")
        for t, i, head in sorted(times, reverse=True)[:6]:
            print(f"  {t:6.1f} s  cell {i:2d}  {head}")


if __name__ == "__main__":
    main()
