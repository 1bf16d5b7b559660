"""Self-contained HTML reports: one page, plots embedded as PNG, no external files or scripts.

>>> page = Report("Example")
>>> page.text("Two rows.")
>>> page.table([{"a": 1, "b": 0.5}, {"a": 2, "b": 0.25}])
>>> "<table" in page.html() and "Example" in page.html()
True
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:.5rem 0}pre{background:#f6f8fa;padding:.6rem 1rem;overflow-x:auto}
.meta{color:#666;font-size:.85rem}.note{background:#f6f8fa;padding:.6rem 1rem}
"""


def figure_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def new_figure(width: float = 7, height: float = 4):
    """A matplotlib figure and axes drawn off-screen (the Agg backend; no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"
    return html.escape("–" if value is None else str(value))


class Report:
    """Build a page from headings, text, tables and figures; ``write(path)`` saves it."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.parts.append(f'<p class="meta">{html.escape(subtitle)}{" · " if subtitle else ""}adpipe · {stamp}</p>')

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def code(self, text: str) -> None:
        """A preformatted block (YAML snippets, commands)."""
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None, digits: int = 4) -> None:
        rows = list(rows)
        columns = columns or list(dict.fromkeys(k for row in rows for k in row))
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c), digits)}</td>" for c in columns) + "</tr>"
                       for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, fig, alt: str) -> None:
        self.parts.append(f'<img alt="{html.escape(alt)}" src="{figure_uri(fig)}">')

    def html(self) -> str:
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f"</title><style>{STYLE}</style></head><body>{''.join(self.parts)}</body></html>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path
