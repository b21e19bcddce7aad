"""The structure of a rendered report, for tests that assert on structure rather than on wording.

``report_sections(html)``: section id -> ``Section(title, tables, images, text)``, where a table is its
rows as lists of cell texts (header row first) and images counts the embedded PNGs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Section:
    title: str = ""
    tables: list[list[list[str]]] = field(default_factory=list)
    images: int = 0
    text: str = ""

    def table_with(self, header: str) -> list[dict[str, str]]:
        """The rows of the first table whose header row holds ``header``, as {header: cell} dicts."""
        for rows in self.tables:
            if rows and header in rows[0]:
                return [dict(zip(rows[0], r)) for r in rows[1:]]
        raise AssertionError(f"no table with a '{header}' column in section '{self.title}'")


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, Section] = {}
        self.current: Section | None = None
        self.in_h2 = self.in_cell = False
        self.depth = 0  # <section> nesting

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and self.current is None:
            self.current = self.sections.setdefault(a.get("id", f"section{len(self.sections)}"), Section())
        elif tag == "section":
            self.depth += 1
        s = self.current
        if s is None:
            return
        if tag == "h2":
            self.in_h2 = True
        elif tag == "table":
            s.tables.append([])
        elif tag == "tr" and s.tables:
            s.tables[-1].append([])
        elif tag in ("td", "th") and s.tables and s.tables[-1]:
            s.tables[-1][-1].append("")
            self.in_cell = True
        elif tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            s.images += 1

    def handle_endtag(self, tag):
        if tag == "section":
            if self.depth:
                self.depth -= 1
            else:
                self.current = None
        elif tag == "h2":
            self.in_h2 = False
        elif tag in ("td", "th"):
            self.in_cell = False

    def handle_data(self, data):
        s = self.current
        if s is None:
            return
        if self.in_h2 and not s.title:
            s.title = data.strip()
        if self.in_cell:
            s.tables[-1][-1][-1] = (s.tables[-1][-1][-1] + " " + data.strip()).strip()
        s.text += data


def report_sections(html: str) -> dict[str, Section]:
    parser = _Parser()
    parser.feed(html)
    return parser.sections
