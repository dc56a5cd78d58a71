"""A training report's tables as plain text, Markdown and a self-contained HTML page.

The report builds its content once as :class:`Table` values (already formatted cells);
the three renderers here only lay them out, so the terminal, the Markdown file and the
page cannot disagree on a number.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Plot", "Table", "html_page", "markdown", "text"]


@dataclass(frozen=True)
class Table:
    """A titled table of formatted cells, with notes printed under it. A table with no
    header and no rows is just its title and notes (a paragraph)."""

    title: str
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()
    #: notes that need attention (e.g. where the model does not beat a baseline)
    warnings: tuple[str, ...] = ()
    #: a section heading printed before this table
    section: str = ""
    #: whether the terminal table shows it (long detail goes to the files only)
    terminal: bool = True
    #: how many leading columns are text (left-aligned); the rest are numbers
    labels: int = 1


@dataclass(frozen=True)
class Plot:
    """A PNG written beside the report: its file name, caption and bytes."""

    name: str
    caption: str
    png: bytes = field(repr=False)
    #: the section it is shown in (at the section's end); the report's end when none
    section: str = ""


def _placed(tables: Sequence[Table], plots: Sequence[Plot]) -> list[Table | Plot]:
    """Tables in order, each section's plots after its last table."""
    sections = {t.section for t in tables if t.section}
    items: list[Table | Plot] = []
    current = ""
    for table in tables:
        if table.section:
            items += [p for p in plots if p.section == current and current]
            current = table.section
        items.append(table)
    items += [p for p in plots if p.section == current and current]
    return items + [p for p in plots if p.section not in sections]


def _widths(table: Table) -> list[int]:
    lines = [table.header, *table.rows]
    return [max(len(line[i]) for line in lines) for i in range(len(table.header))]


def _text_line(cells: Sequence[str], widths: Sequence[int], labels: int) -> str:
    parts = [
        cell.ljust(width) if i < labels else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(parts).rstrip()


def text(tables: Sequence[Table]) -> str:
    """Fixed-width text for a terminal."""
    out: list[str] = []
    for table in tables:
        if table.section:
            out += ["", f"== {table.section} ==", ""]
        out.append(table.title)
        if table.header:
            widths = _widths(table)
            out.append(_text_line(table.header, widths, table.labels))
            out.append("  ".join("-" * w for w in widths))
            out += [_text_line(row, widths, table.labels) for row in table.rows]
        out += [f"  {note}" for note in table.notes]
        out += [f"  ! {warning}" for warning in table.warnings]
        out.append("")
    return "\n".join(out).strip("\n") + "\n"


def _md_cell(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown(title: str, tables: Sequence[Table], plots: Sequence[Plot]) -> str:
    """Markdown; plots are referenced by their file name (written beside it)."""
    out = [f"# {title}", ""]
    for table in _placed(tables, plots):
        if isinstance(table, Plot):
            out += [f"![{table.caption}]({table.name})", ""]
            continue
        if table.section:
            out += [f"## {table.section}", ""]
        out += [f"**{table.title}**", ""]
        if table.header:
            out.append("| " + " | ".join(_md_cell(c) for c in table.header) + " |")
            aligns = [":---" if i < table.labels else "---:" for i in range(len(table.header))]
            out.append("|" + "|".join(aligns) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
            out.append("")
        lines = [*table.notes, *(f"**{w}**" for w in table.warnings)]
        if lines:
            out += [f"- {line}" for line in lines] + [""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .4rem 0 .6rem; }
th, td { padding: .2rem .7rem; border-bottom: 1px solid #e4e4e4; }
th { background: #f4f4f4; }
th, td { text-align: right; font-variant-numeric: tabular-nums; }
th.label, td.label { text-align: left; }
p.title { font-weight: 600; margin: 1.2rem 0 .2rem; }
ul.notes { margin-top: 0; } li.warning { color: #8a1c1c; font-weight: 600; }
figure { display: inline-block; margin: .5rem 1rem .5rem 0; }
figure img { max-width: 30rem; border: 1px solid #ddd; }
figcaption { font-size: .9rem; color: #555; }
"""


def _html_table(table: Table) -> list[str]:
    esc = html.escape
    out = []
    if table.section:
        out.append(f"<h2>{esc(table.section)}</h2>")
    out.append(f'<p class="title">{esc(table.title)}</p>')
    if table.header:
        out.append("<table><thead><tr>")
        out.append(
            "".join(
                f'<th class="label">{esc(c)}</th>' if i < table.labels else f"<th>{esc(c)}</th>"
                for i, c in enumerate(table.header)
            )
        )
        out.append("</tr></thead><tbody>")
        for row in table.rows:
            cells = (
                f'<td class="label">{esc(c)}</td>' if i < table.labels else f"<td>{esc(c)}</td>"
                for i, c in enumerate(row)
            )
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    items = [f"<li>{esc(n)}</li>" for n in table.notes]
    items += [f'<li class="warning">{esc(w)}</li>' for w in table.warnings]
    if items:
        out.append(f'<ul class="notes">{"".join(items)}</ul>')
    return out


def _html_figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    caption = html.escape(plot.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def html_page(title: str, tables: Sequence[Table], plots: Sequence[Plot]) -> str:
    """One HTML file with inline CSS and the plots embedded as base64 PNGs, so it can be
    mailed or attached on its own."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for item in _placed(tables, plots):
        body += [_html_figure(item)] if isinstance(item, Plot) else _html_table(item)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
