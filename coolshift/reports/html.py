"""Self-contained HTML pages: figures embedded as base64 PNG, tables from frames, no external files.

Small building blocks shared by every Coolshift report (carbon report, nightly plan report,
evaluation report)::

    from coolshift.reports.html import Section, figure_to_data_uri, html_figure, html_table, render_page

    page = render_page("Nightly plan", [Section("Intensity", html_figure(fig, "Grid intensity"))])

Every piece of text is HTML-escaped; only the markup built here is trusted.
"""

from __future__ import annotations

import base64
import html as _html
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

__all__ = [
    "Section", "escape", "figure_to_png", "figure_to_data_uri", "html_figure", "html_table",
    "html_kv", "html_paragraphs", "render_page",
]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1f23;line-height:1.45}
h1{border-bottom:2px solid #2b6cb0;padding-bottom:.2em}h2{margin-top:2em;color:#2b6cb0}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:right}th{background:#f3f6f9}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{font-size:.9em;color:#57606a}
img{max-width:100%}.meta{color:#57606a;font-size:.9em}.note{background:#fff8e1;padding:.5em .8em;border-left:4px solid #f0b429}
nav ol{columns:2}
"""


@dataclass
class Section:
    """One titled part of a page; ``body`` is HTML built with this module's helpers."""

    title: str
    body: str
    anchor: str = field(default="")

    def id(self) -> str:
        return self.anchor or "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def escape(text) -> str:
    return _html.escape(str(text), quote=True)


def figure_to_png(fig, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_to_data_uri(fig, dpi: int = 110) -> str:
    """``data:image/png;base64,...`` for a matplotlib figure, to embed in ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(figure_to_png(fig, dpi)).decode("ascii")


def html_figure(fig, caption: str = "", dpi: int = 110) -> str:
    return (f'<figure><img alt="{escape(caption)}" src="{figure_to_data_uri(fig, dpi)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "&ndash;"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,d}"
    if isinstance(v, float):
        a = abs(v)
        if a != 0 and (a >= 1e7 or a < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:,.{digits}f}"
    return escape(v)


def html_table(frame: pd.DataFrame | dict, digits: int = 2, index: bool = True, caption: str = "") -> str:
    """An HTML table of a frame (or a dict of column -> values); numbers formatted, text escaped."""
    df = pd.DataFrame(frame) if isinstance(frame, dict) else frame
    head = ([escape(df.index.name or "")] if index else []) + [escape(c) for c in df.columns]
    rows = []
    for idx, row in df.iterrows():
        cells = ([f"<td>{escape(idx)}</td>"] if index else []) + [f"<td>{_fmt(v, digits)}</td>" for v in row.tolist()]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (f"<table>{cap}<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def html_kv(pairs, digits: int = 2) -> str:
    """A two-column table of (label, value) pairs."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{_fmt(v, digits)}</td></tr>" for k, v in items)
    return f"<table><tbody>{rows}</tbody></table>"


def html_paragraphs(*texts: str, note: bool = False) -> str:
    cls = ' class="note"' if note else ""
    return "".join(f"<p{cls}>{escape(t)}</p>" for t in texts if t)


def render_page(title: str, sections: list[Section], subtitle: str = "", generated: datetime | None = None) -> str:
    """A complete, self-contained HTML document with a table of contents."""
    when = (generated or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(f'<li><a href="#{s.id()}">{escape(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.id()}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    sub = f"<p>{escape(subtitle)}</p>" if subtitle else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{sub}"
        f'<p class="meta">Generated by Coolshift, {when}.</p><nav><ol>{toc}</ol></nav>{body}</body></html>'
    )
