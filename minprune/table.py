"""A small results table that renders as HTML in a notebook and as aligned text in a terminal."""

from __future__ import annotations

import html
import json


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        return f"{value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


class Table:
    """Rows of dicts with shared columns. `str()` gives text, notebooks show HTML, `to_markdown()` for reports."""

    def __init__(self, rows: list[dict], title: str = ""):
        if isinstance(rows, (str, bytes, dict)) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("rows must be a list of dicts {column: value}, one dict per row")
        self.rows = [dict(r) for r in rows]
        self.title = title
        self.columns = []
        for row in self.rows:
            self.columns += [c for c in row if c not in self.columns]

    def _cells(self) -> list[list[str]]:
        return [[_fmt(row.get(c, "")) for c in self.columns] for row in self.rows]

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(self.columns)]

        def line(values):
            return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

        out = [self.title] if self.title else []
        out += [line(self.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in cells]
        return "\n".join(out)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in self._cells())
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_markdown(self) -> str:
        out = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(r) + " |" for r in self._cells()]
        return "\n".join(out)

    def to_json(self) -> str:
        return json.dumps(self.rows, indent=2)

    def column(self, name: str) -> list:
        """The values of one column, in row order."""
        return [row.get(name) for row in self.rows]
