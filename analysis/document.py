"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

The same blocks give both files, so report.md and report.html never disagree. HTML embeds a short style
sheet; figures are ``<img>`` links relative to the report (the files sit beside it).
"""

from __future__ import annotations

import html
import re

import pandas as pd

from analysis.render import Table, markdown_table

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table.results { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
table.results th, table.results td { border-bottom: 1px solid #ccc; padding: 3px 8px; text-align: left; }
table.results th { background: #f3f3f3; }
p.note { font-size: 0.85em; color: #555; max-width: 1000px; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 3px; }
"""


class Document:
    """Headings, paragraphs, bullet lists, tables and images, in order."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple[str, object]] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(self, table: Table) -> None:
        self.blocks.append(("table", table))

    def frame(self, frame: pd.DataFrame) -> None:
        """A plain DataFrame shown as a table (values as they print)."""
        self.blocks.append(("frame", frame))

    def image(self, path: str, alt: str) -> None:
        """A figure, ``path`` relative to the report."""
        self.blocks.append(("image", (path, alt)))

    def to_markdown(self) -> str:
        """The report as GitHub Markdown."""
        parts = [f"# {self.title}"]
        for kind, value in self.blocks:
            if kind == "heading":
                parts.append(f"{'#' * value[0]} {value[1]}")
            elif kind == "paragraph":
                parts.append(value)
            elif kind == "bullets":
                parts.append("\n".join(f"- {item}" for item in value))
            elif kind == "table":
                parts.append(value.to_markdown().rstrip())
            elif kind == "frame":
                parts.append(markdown_table(value.astype(str)))
            elif kind == "image":
                parts.append(f"![{value[1]}]({value[0]})")
        return "\n\n".join(parts) + "\n"

    def to_html(self) -> str:
        """The report as one HTML page (inline style; images linked relative to the page)."""
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h{value[0]}>{_inline(value[1])}</h{value[0]}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in value) + "</ul>")
            elif kind == "table":
                body.append(value.to_html())
            elif kind == "frame":
                body.append(value.to_html(index=False, border=0, classes="results", escape=True))
            elif kind == "image":
                path, alt = (html.escape(v, quote=True) for v in value)
                body.append(f'<figure><img src="{path}" alt="{alt}"><figcaption>{alt}</figcaption></figure>')
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{html.escape(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
                + "\n".join(body) + "\n</body>\n</html>\n")


def _inline(text: str) -> str:
    """Escape HTML, then render the two inline Markdown forms the report uses: `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
