"""The shared HTML report page: self-contained, escaped, plots embedded."""

from __future__ import annotations

import doctest
import math

import adpipe.core.report as report
from adpipe.core.report import Report, new_figure


def test_doctests():
    import adpipe.core.jsonable as jsonable

    assert doctest.testmod(report).failed == 0 and doctest.testmod(jsonable).failed == 0


def test_page_is_self_contained_and_escaped(tmp_path):
    page = Report("Scores <b>", subtitle="fraud.yaml")
    page.heading("Table & plot")
    page.table([{"name": "<iforest>", "roc_auc": 0.91234, "missing": math.nan}], digits=3)
    fig, ax = new_figure()
    ax.hist([1, 2, 2, 3])
    page.figure(fig, "histogram")
    path = page.write(tmp_path / "sub" / "report.html")
    text = path.read_text()
    assert "<b>" not in text.split("<body>")[1] and "Scores &lt;b&gt;" in text and "&lt;iforest&gt;" in text
    assert "0.912" in text and "–" in text
    assert 'src="data:image/png;base64,' in text and "http" not in text.split("<body>")[1]
