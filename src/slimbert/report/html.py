"""Self-contained HTML: escaped tables, inline CSS and plots embedded as PNG data URIs (no network, no script)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.holds { color: #176117; font-weight: bold; } .fails { color: #a11; font-weight: bold; }
.unknown { color: #777; font-weight: bold; } .note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; } code { background: #f6f6f6; padding: 0 0.2em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def table(headers: list[str], rows: Iterable[list[Any]], table_id: str | None = None) -> str:
    """An HTML table; cells are escaped (pass pre-rendered HTML as ``Raw``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """Already-rendered HTML (not escaped again by :func:`table`)."""


def figure_img(fig, alt: str) -> str:
    """A matplotlib figure as an ``<img>`` with a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def png_img(path, alt: str) -> str:
    """A PNG file as an ``<img>`` with a data URI."""
    from pathlib import Path

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def new_figure(*args, **kwargs):
    """A matplotlib figure on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)
