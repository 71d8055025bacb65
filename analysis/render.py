"""A table as data (:class:`Table`) and its renderings: Markdown, LaTeX (booktabs), CSV, HTML.

Tables keep two frames: ``display`` (formatted strings, what Markdown/LaTeX/HTML show) and ``numbers``
(plain numbers, what the CSV holds, so nobody has to parse "82.50 ± 6.45" back). No tabulate/jinja2: both
renderers are a few lines and the output stays the same across pandas versions.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

DATASET_LABELS = {"esc50": "ESC-50", "esc10": "ESC-10", "us8k": "UrbanSound8K", "gtzan": "GTZAN",
                  "fsdd": "FSDD", "folder": "folder"}
PM, MINUS = "±", "−"


@dataclass
class Table:
    """One result table: ``name`` is the file stem, ``title`` the caption; ``note`` explains the numbers.

    An empty table still renders: its title and ``note`` say that no trials support it, and why.
    ``comparisons``: the paired comparisons its rows show (:class:`analysis.stats.Comparison`), for the
    report's sentences on intervals that include 0.
    """

    name: str
    title: str
    display: pd.DataFrame
    numbers: pd.DataFrame
    note: str = ""
    empty_reason: str = ""
    comparisons: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.display.empty

    @classmethod
    def nothing(cls, name: str, title: str, reason: str, note: str = "") -> "Table":
        """A table with no rows: renders as its title plus "no trials for this table: <reason>"."""
        return cls(name, title, pd.DataFrame(), pd.DataFrame(), note, reason)

    def _empty_text(self) -> str:
        return f"No trials for this table: {self.empty_reason or 'the results hold none of its rows'}."

    def to_markdown(self) -> str:
        """``**title**``, a pipe table, then the note (in italics)."""
        parts = [f"**{self.title}**", ""]
        parts += [f"_{self._empty_text()}_"] if self.empty else [markdown_table(self.display)]
        if self.note:
            parts += ["", f"_{self.note}_"]
        return "\n".join(parts) + "\n"

    def to_latex(self) -> str:
        """A ``table`` environment with a booktabs ``tabular``, caption = title, note below."""
        if self.empty:
            return f"% {self.title}\n% {self._empty_text()}\n"
        return latex_table(self.display, self.title, self.note, label=f"tab:{self.name}")

    def to_csv(self) -> str:
        """The numeric frame as CSV (empty string when the table is empty)."""
        return "" if self.empty else self.numbers.to_csv(index=False)

    def to_html(self) -> str:
        """An HTML fragment: caption heading, table, note."""
        body = (f"<p><em>{html.escape(self._empty_text())}</em></p>" if self.empty
                else self.display.to_html(index=False, border=0, classes="results", escape=True))
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3>\n{body}\n{note}\n"


# ---------------------------------------------------------------- number formatting


def dataset_label(name: str) -> str:
    """Pretty dataset name: ``esc50`` -> ``ESC-50``; ``esc50@1a2b3c4d`` -> ``ESC-50@1a2b3c4d``."""
    base, sep, version = str(name).partition("@")
    return DATASET_LABELS.get(base, base) + sep + version


def fmt_mean_std(mean: float, std: float | None = None, digits: int = 2) -> str:
    """``82.50 ± 6.45``; just ``82.50`` when std is missing (a single run); ``—`` when there is no mean."""
    if mean is None or _isnan(mean):
        return "—"
    if std is None or _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {PM} {std:.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
    """``+7.50`` / ``-7.50`` (``—`` when missing): differences, signed so the direction is explicit."""
    if value is None or _isnan(value):
        return "—"
    return f"{round(value, digits) + 0.0:+.{digits}f}"  # + 0.0: a value that rounds to zero prints +0.00, not -0.00


def _isnan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return value is pd.NA


# ---------------------------------------------------------------- renderers


def _numeric_looking(values: pd.Series) -> bool:
    pattern = re.compile(r"^[+\-−]?\d")
    cells = [str(v) for v in values if str(v) not in ("", "—")]
    return bool(cells) and all(pattern.match(c) for c in cells)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of ``frame`` (as strings); numeric-looking columns are right-aligned."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    align = "|" + "|".join("---:" if _numeric_looking(frame[c]) else "---" for c in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, align, *rows])


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  PM: r"$\pm$", MINUS: r"$-$", "Δ": r"$\Delta$", "×": r"$\times$", "—": "--"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map ±, −, Δ, ×, — to math/text equivalents."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_table(frame: pd.DataFrame, caption: str, note: str = "", label: str = "") -> str:
    """A booktabs table (``\\usepackage{booktabs}``) with caption, label and a small note below."""
    spec = "".join("r" if _numeric_looking(frame[c]) else "l" for c in frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{latex_escape(caption)}}}"]
    if label:
        lines.append(f"\\label{{{label}}}")  # labels may hold underscores as they are
    lines += [f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if note:
        lines.append(f"\\par\\smallskip\\footnotesize {latex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
