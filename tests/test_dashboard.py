"""The web dashboard (``GET /dashboard``) in a real headless Chromium, over real HTTP.

Most tests serve the dashboard router beside a small ``/v1/dashboard/data`` route that returns fixed data,
so tables, the SVG histogram and the screenshot are deterministic. The last test runs the real service.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright (never a downloaded browser).
``ADPIPE_UPDATE_SCREENSHOTS=1`` rewrites ``tests/screenshots/dashboard.png`` and ``docs/img/dashboard.png``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from conftest import REPO, blob_frame
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from service_harness import serve

from adpipe.service.dashboard import router

CHROMIUM = Path(os.environ.get("ADPIPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BASELINE = REPO / "tests" / "screenshots" / "dashboard.png"
DOCS_IMAGE = REPO / "docs" / "img" / "dashboard.png"
VIEWPORT = {"width": 1280, "height": 900}
UPDATE = os.environ.get("ADPIPE_UPDATE_SCREENSHOTS") == "1"
XSS = "<img src=x onerror=alert(1)>"

# ----------------------------------------------------------------------------------------- fixture data
COUNTS = [1712, 1104, 706, 452, 301, 198, 139, 96, 70, 52, 41, 30, 24, 19, 14, 11, 8, 0, 6, 17]
DATA: dict[str, Any] = {
    "generated_at": "2026-11-21T10:00:00Z",
    "models": [
        {"name": "fraud", "loaded": True, "versions": [
            {"version": 1, "stages": ["archived"], "created_at": "2026-11-18T09:12:40Z", "detector": "iforest",
             "rows": 4800, "metrics": {"roc_auc": 0.912}},
            {"version": 3, "stages": ["staging"], "created_at": "2026-11-20T16:45:03Z", "detector": "lof",
             "rows": 5000, "metrics": {"roc_auc": 0.941, "average_precision": 0.62}},
            {"version": 2, "stages": ["production"], "created_at": "2026-11-19T11:02:17Z", "detector": "iforest",
             "rows": 5000, "metrics": {"roc_auc": 0.93}},
        ]},
        {"name": "sensors", "loaded": False, "versions": [
            {"version": 1, "stages": [], "created_at": "2026-11-17T08:00:00Z", "detector": "hbos", "rows": 12000,
             "metrics": {}},
        ]},
    ],
    "runs": [
        {"id": "r-0001", "kind": "fit", "model": "fraud@2", "status": "succeeded",
         "started_at": "2026-11-19T11:01:50Z", "finished_at": "2026-11-19T11:02:17Z", "rows_in": 5000,
         "anomalies": 50, "seconds": 26.4, "error": None},
        {"id": "r-0004", "kind": "score_batch", "model": "fraud@2", "status": "succeeded",
         "started_at": "2026-11-21T09:58:12Z", "finished_at": "2026-11-21T09:58:13Z", "rows_in": 10000,
         "anomalies": 97, "seconds": 1.21, "error": None},
        {"id": "r-0003", "kind": "score_batch", "model": "sensors@1", "status": "failed",
         "started_at": "2026-11-21T09:40:00Z", "finished_at": "2026-11-21T09:40:01Z", "rows_in": 250,
         "anomalies": None, "seconds": 0.08, "error": "SchemaMismatchError: column 'temp' is missing"},
        {"id": "r-0005", "kind": "fit", "model": "fraud@3", "status": "running",
         "started_at": "2026-11-21T09:59:30Z", "finished_at": None, "rows_in": 5000, "anomalies": None,
         "seconds": None, "error": None},
    ],
    "anomalies": [
        {"at": "2026-11-21T09:58:13Z", "model": "fraud", "version": 2, "anomaly_score": 0.7132,
         "anomaly_probability": 0.9981, "severity": "critical",
         "record": {"transaction_id": 88121, "amount": 1619.0, "merchant": "ACME Travel", "country": "NZ"}},
        {"at": "2026-11-21T09:58:12Z", "model": "fraud", "version": 2, "anomaly_score": 0.6403,
         "anomaly_probability": 0.9874, "severity": "high",
         "record": {"transaction_id": 88020, "amount": 742.5, "merchant": XSS, "country": "US"}},
        {"at": "2026-11-21T09:58:13.500Z", "model": "fraud", "version": 2, "anomaly_score": 0.5977,
         "anomaly_probability": 0.9742, "severity": "medium",
         "record": {"transaction_id": 88190, "amount": 310.99, "merchant": "Corner Shop", "country": "GB"}},
        {"at": "2026-11-21T09:31:02Z", "model": "fraud", "version": 2, "anomaly_score": 0.5701,
         "anomaly_probability": 0.9711, "severity": "low",
         "record": {"transaction_id": 87011, "amount": 95.0, "merchant": "Fuel 24", "country": "DE"}},
    ],
    "histogram": {"model": "fraud", "version": 2, "n": sum(COUNTS),
                  "edges": [round(i * 0.05, 2) for i in range(21)], "counts": COUNTS, "threshold": 0.97},
    "drift": [
        {"pipeline": "fraud", "run_id": "r-0004", "model_version": "fraud@2", "feature": "amount", "test": "ks",
         "statistic": 0.1842, "threshold": 0.1, "p_value": 3.1e-9,
         "window": {"start_row": 0, "end_row": 9999, "size": 10000, "reference_size": 5000},
         "detail": "KS statistic 0.184 > 0.100", "detected_at": "2026-11-21T09:58:13Z", "severity": "high"},
        {"pipeline": "fraud", "run_id": "r-0002", "model_version": "fraud@2", "feature": "anomaly_score",
         "test": "psi", "statistic": 0.27, "threshold": 0.2, "p_value": None,
         "window": {"start_row": 0, "end_row": 4999, "size": 5000, "reference_size": 5000},
         "detail": "PSI 0.270 > 0.200", "detected_at": "2026-11-20T18:20:00Z", "severity": "medium"},
    ],
}
EMPTY = {"generated_at": "2026-11-21T10:00:00Z", "models": [], "runs": [], "anomalies": [], "histogram": None,
         "drift": []}


def api_error(error: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """The API's error body."""
    return {"error": error, "message": message, "hint": hint}


def fixture_app(data: Any = DATA, *, key: str | None = None, status: int = 200) -> FastAPI:
    """The dashboard router plus a fixed ``/v1/dashboard/data``; with ``key`` the data needs ``X-API-Key``.

    The key ``no-read-role`` gets 403. ``app.state.seen`` records the key of every data request.
    """
    app = FastAPI()
    app.include_router(router)
    app.state.seen = []

    @app.middleware("http")
    async def strict_csp(request: Request, call_next):  # what the service's security middleware sends
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'")
        return response

    @app.get("/v1/dashboard/data")
    def dashboard_data(request: Request):
        given = request.headers.get("x-api-key")
        app.state.seen.append(given)
        if key is not None and given != key:
            if given == "no-read-role":
                return JSONResponse(api_error("forbidden", "the key lacks the read role"), status_code=403)
            return JSONResponse(api_error("unauthorized", "missing or unknown API key"), status_code=401)
        if status != 200:
            return JSONResponse(api_error("internal", "state database is locked", "try again"), status_code=status)
        body = copy.deepcopy(data)
        if isinstance(body, dict) and "generated_at" in body:  # each answer is stamped: request n at 10:00:0n
            body["generated_at"] = f"2026-11-21T10:00:{len(app.state.seen) - 1:02d}Z"
        return body

    return app


# ----------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's browser (`apt-get install chromium`) "
                    "or point ADPIPE_CHROMIUM at one; Playwright's own browser download is not used")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors, page errors, dialogs and CSP violations."""

    def __init__(self, browser: Any, viewport: dict[str, int]):
        self.context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC",
                                           device_scale_factor=1, color_scheme="light")
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                                  "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url: str, state: str = "loaded") -> Any:
        self.page.goto(url + "/dashboard")
        self.wait_state(state)
        return self.page

    def wait_state(self, state: str) -> None:
        self.page.wait_for_function("s => document.body.getAttribute('data-state') === s", arg=state,
                                    timeout=10_000)

    def assert_clean(self, allow: Callable[[str], bool] = lambda s: False) -> None:
        csp = self.page.evaluate("window.__csp")
        assert csp == [], f"CSP violations: {csp}"
        problems = [p for p in self.problems if not allow(p)]
        assert problems == [], problems
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"


@pytest.fixture
def tab(browser) -> Iterator[Callable[..., Page]]:
    made: list[Page] = []

    def make(viewport: dict[str, int] = VIEWPORT) -> Page:
        made.append(Page(browser, viewport))
        return made[-1]

    yield make
    for t in made:
        t.context.close()


def texts(page: Any, selector: str) -> list[str]:
    return [s.strip() for s in page.locator(selector).all_inner_texts()]


def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------- tests
def test_shell_and_assets_are_served_with_a_strict_policy():
    with serve(fixture_app()) as url:
        page = httpx.get(url + "/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<script src=" in page.text and "<style" not in page.text and " style=" not in page.text
        js = httpx.get(url + "/dashboard/static/dashboard.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert ".innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "eval(" not in js.text
        assert httpx.get(url + "/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
        missing = httpx.get(url + "/dashboard/static/nope.js")
        assert missing.status_code == 404 and "nope.js" in missing.json()["detail"]
        for bad in ("/dashboard/static/..%2fdashboard.py", "/dashboard/static/index.html",
                    "/dashboard/static/%2e%2e%2f%2e%2e%2fsettings.py"):
            assert httpx.get(url + bad).status_code == 404, bad


def test_tables_show_the_data_newest_first(tab):
    with serve(fixture_app()) as url:
        t = tab()
        page = t.open(url)
        runs = page.get_by_role("table", name="Recent runs")
        rows = runs.locator("tbody tr")
        assert rows.count() == 4
        by_time = sorted(DATA["runs"], key=lambda r: r["started_at"], reverse=True)
        assert [r.locator("td .mono").inner_text() for r in rows.all()] == [r["model"] for r in by_time]
        first = [c.strip() for c in rows.nth(0).locator("td").all_inner_texts()]
        assert first == ["2026-11-21 09:59:30", "fraud@3\nfit", "running", "5,000", "—"]
        failed = rows.nth(2)
        assert failed.locator(".badge").inner_text() == "failed"
        assert "column 'temp' is missing" in failed.inner_text()
        assert [c.strip() for c in rows.nth(1).locator("td").all_inner_texts()][1:] == \
            ["fraud@2\nscore_batch", "succeeded\n1.21 s", "10,000", "97"]

        models = page.get_by_role("table", name="Models")
        assert models.locator("tbody").count() == 2
        fraud = models.locator("tbody").nth(0)
        assert fraud.locator("tr").count() == 3
        assert "fraud" in fraud.locator("th").inner_text() and "loaded" in fraud.locator("th").inner_text()
        assert [r.locator("td").nth(0).inner_text() for r in fraud.locator("tr").all()] == ["3", "2", "1"]
        assert fraud.locator("tr").nth(1).locator(".badge").inner_text() == "production"
        assert "roc_auc 0.930" in fraud.locator("tr").nth(1).inner_text()
        sensors = models.locator("tbody").nth(1)
        assert "not loaded" in sensors.inner_text() and "hbos" in sensors.inner_text()

        anomalies = page.get_by_role("table", name="Latest anomalies").locator("tbody tr")
        assert anomalies.count() == 4
        assert texts(page, "#anomalies tbody td:nth-child(3)") == ["medium", "critical", "high", "low"]
        assert texts(page, "#anomalies tbody td:nth-child(1)")[:2] == ["2026-11-21 09:58:13", "2026-11-21 09:58:13"]
        assert anomalies.nth(0).get_attribute("class") == "sev-row sev-medium"
        assert anomalies.nth(1).locator(".sev-critical").count() == 1
        critical = [c.strip() for c in anomalies.nth(1).locator("td").all_inner_texts()]
        assert critical[1:5] == ["fraud@2", "critical", "0.9981", "0.7132"]
        kv = texts(page, "#anomalies tbody tr:nth-child(2) .kv")
        assert kv == ["transaction_id=88121", "amount=1619", "merchant=ACME Travel", "country=NZ"]

        drift = page.get_by_role("table", name="Drift events").locator("tbody tr")
        assert drift.count() == 2
        assert [c.strip() for c in drift.nth(0).locator("td").all_inner_texts()] == \
            ["2026-11-21 09:58:13", "amount\nfraud", "ks", "0.184 / 0.100", "3.1e-9", "high"]

        assert texts(page, ".tile-value") == ["2", "4", "4", "2"]
        assert texts(page, ".tile-note") == ["1 loaded", "1 failed", "2 high or critical", "latest: amount"]
        assert page.locator("#generated-at").inner_text() == "2026-11-21 10:00:00 UTC"
        assert page.locator("#error").is_hidden()
        clipped = page.locator(".scroll").evaluate_all(
            "ds => ds.filter(d => d.scrollWidth > d.clientWidth).map(d => d.firstElementChild.id)")
        assert clipped == [], f"tables wider than their cards at 1280 px: {clipped}"
        t.assert_clean()


def test_record_values_are_shown_as_text_never_markup(tab):
    with serve(fixture_app()) as url:
        t = tab()
        page = t.open(url)
        cell = page.locator("#anomalies .kv", has_text="merchant=<img")
        assert cell.inner_text() == f"merchant={XSS}"
        assert page.locator("main img").count() == 0
        t.assert_clean()


def test_histogram_bars_ticks_and_threshold(tab):
    with serve(fixture_app()) as url:
        t = tab()
        page = t.open(url)
        bars = page.locator("#histogram svg rect.bar")
        assert bars.count() == len(COUNTS)
        geo = bars.evaluate_all("bs => bs.map(b => ({x: +b.getAttribute('x'), w: +b.getAttribute('width'), "
                                "h: +b.getAttribute('height'), y: +b.getAttribute('y'), "
                                "title: b.querySelector('title').textContent}))")
        ratios = [g["h"] / c for g, c in zip(geo, COUNTS, strict=True) if c]
        assert max(ratios) - min(ratios) < 1e-9 * max(ratios), "bar heights are not proportional to counts"
        assert geo[COUNTS.index(0)]["h"] == 0
        assert len({round(g["y"] + g["h"], 6) for g in geo}) == 1, "bars do not share a baseline"
        assert all(a["x"] < b["x"] for a, b in zip(geo, geo[1:], strict=False))
        assert geo[0]["title"] == "0.000 – 0.050: 1,712 rows"
        assert [g["title"].rsplit(": ", 1)[1] for g in geo][-3:] == ["0 rows", "6 rows", "17 rows"]

        ticks = dict(page.locator("#histogram line.tick").evaluate_all(
            "ls => ls.map(l => [l.dataset.value, +l.getAttribute('x1')])"))
        assert list(ticks) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        line = page.locator("#histogram g.threshold line")
        x = float(line.get_attribute("x1"))
        expected = ticks["0.0"] + 0.97 * (ticks["1.0"] - ticks["0.0"])
        assert abs(x - expected) < 1e-6 and line.get_attribute("x2") == line.get_attribute("x1")
        # the threshold sits inside the last bin (0.95-1.00), 40% of the way along it
        last = geo[-1]
        assert last["x"] < x < last["x"] + last["w"]
        assert page.locator("#histogram g.threshold text").text_content() == "threshold 0.97"
        assert page.locator("#hist-caption").inner_text() == "fraud@2 · 5,000 scores · threshold 0.97"
        label = page.locator("#histogram svg").get_attribute("aria-label")
        assert label == "Histogram of anomaly_probability for fraud@2: 5,000 scores, threshold 0.97"
        assert page.locator("#histogram svg").get_attribute("data-scale") == "linear"

        page.get_by_label("Log scale").check()  # heights follow log(1 + count); the threshold stays put
        assert page.locator("#histogram svg").get_attribute("data-scale") == "log"
        heights = bars.evaluate_all("bs => bs.map(b => +b.getAttribute('height'))")
        logs = [h / math.log1p(c) for h, c in zip(heights, COUNTS, strict=True) if c]
        assert max(logs) - min(logs) < 1e-9 * max(logs) and heights[COUNTS.index(0)] == 0
        assert heights[-1] > 0.3 * heights[0], "the tail should be visible on the log scale"
        assert float(page.locator("#histogram g.threshold line").get_attribute("x1")) == x
        ticks_y = page.locator("#histogram .y-axis text:not(.axis-title)").all_text_contents()
        assert ticks_y == ["0", "1", "10", "100", "1K", "10K"]
        page.reload()  # remembered for the session
        t.wait_state("loaded")
        assert page.locator("#histogram svg").get_attribute("data-scale") == "log"
        t.assert_clean()


def test_api_key_errors_and_session_storage(tab):
    app = fixture_app(key="s3cret")
    with serve(app) as url:
        t = tab()
        page = t.open(url, state="error-401")
        assert "needs an API key (HTTP 401)" in page.get_by_role("alert").inner_text()
        assert app.state.seen == [None]

        page.get_by_label("API key").fill("wrong")
        page.get_by_role("button", name="Use key").click()
        t.wait_state("error-401")
        until(lambda: "not accepted" in page.get_by_role("alert").inner_text(), "the 401 message")
        assert "The API key was not accepted (HTTP 401)" in page.get_by_role("alert").inner_text()

        page.get_by_label("API key").fill("no-read-role")
        page.keyboard.press("Enter")
        t.wait_state("error-403")
        assert "needs the read role" in page.get_by_role("alert").inner_text()

        page.get_by_label("API key").fill("s3cret")
        page.get_by_role("button", name="Use key").click()
        t.wait_state("loaded")
        assert page.get_by_role("alert").is_hidden()
        assert page.locator("#runs tbody tr").count() == 4
        assert app.state.seen == [None, "wrong", "no-read-role", "s3cret"]

        page.reload()  # the key stays for the browser session
        t.wait_state("loaded")
        assert page.get_by_label("API key").input_value() == "s3cret" and app.state.seen[-1] == "s3cret"
        t.assert_clean(allow=lambda s: "status of 401" in s or "status of 403" in s)


def test_empty_store_shows_empty_states(tab):
    with serve(fixture_app(EMPTY)) as url:
        t = tab()
        page = t.open(url)
        for name in ("runs", "models", "drift", "anomalies"):
            assert page.locator(f"#{name}").is_hidden(), name
        assert texts(page, ".empty") == ["No runs yet.", "No models in the store yet.", "No scores yet.",
                                         "No drift detected.", "No anomalies yet."]
        assert page.locator("#histogram svg").count() == 0
        assert texts(page, ".tile-value") == ["0", "0", "0", "0"]
        t.assert_clean()


def test_bad_payloads_and_server_errors(tab):
    broken = copy.deepcopy(DATA)
    broken["histogram"]["edges"] = broken["histogram"]["edges"][:5]  # edges do not match counts
    broken["runs"] = "not a list"
    broken["anomalies"][0]["record"] = None
    broken["anomalies"][1]["severity"] = "apocalyptic"
    with serve(fixture_app(broken)) as url:
        t = tab()
        page = t.open(url)
        assert page.locator("#hist-empty").is_visible() and page.locator("#runs-empty").is_visible()
        assert page.locator("#anomalies tbody tr").count() == 4
        assert page.locator("#anomalies .badge.sev-none").count() == 1  # an unknown severity is shown as none
        t.assert_clean()
    no_threshold = copy.deepcopy(DATA)
    no_threshold["histogram"]["threshold"] = None
    with serve(fixture_app(no_threshold)) as url:
        t = tab()
        page = t.open(url)
        assert page.locator("#histogram rect.bar").count() == len(COUNTS)
        assert page.locator("#histogram g.threshold").count() == 0
        assert page.locator("#hist-caption").inner_text() == "fraud@2 · 5,000 scores · no threshold"
        t.assert_clean()
    with serve(fixture_app(status=500)) as url:
        t = tab()
        page = t.open(url, state="error-500")
        message = page.get_by_role("alert").inner_text()
        assert message == "Could not load the dashboard data (HTTP 500): state database is locked (try again)"
        t.assert_clean(allow=lambda s: "status of 500" in s)


def test_refresh_button_and_auto_refresh(tab):
    app = fixture_app()
    with serve(app) as url:
        t = tab()
        t.page.clock.install()
        page = t.open(url)
        assert page.locator("#generated-at").inner_text() == "2026-11-21 10:00:00 UTC"
        page.get_by_role("button", name="Refresh").click()
        until(lambda: page.locator("#generated-at").inner_text() == "2026-11-21 10:00:01 UTC", "the refresh")

        page.clock.run_for(10_500)  # auto-refresh is on by default
        until(lambda: page.locator("#generated-at").inner_text() == "2026-11-21 10:00:02 UTC", "the auto-refresh")
        assert page.get_by_role("status").inner_text() == "Up to date · auto-refresh on"

        page.get_by_label("Auto-refresh").uncheck()
        assert page.get_by_role("status").inner_text() == "Up to date"
        page.clock.run_for(35_000)
        page.get_by_role("button", name="Refresh").click()  # a marker: the next answer is request 4
        until(lambda: page.locator("#generated-at").inner_text() == "2026-11-21 10:00:03 UTC", "the refresh")
        assert len(app.state.seen) == 4, "auto-refresh kept fetching after it was switched off"

        page.reload()  # the toggle is remembered for the session
        t.wait_state("loaded")
        assert not page.get_by_label("Auto-refresh").is_checked()
        t.assert_clean()


def test_narrow_screen_has_no_horizontal_page_scroll(tab):
    with serve(fixture_app()) as url:
        t = tab({"width": 390, "height": 844})
        page = t.open(url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        boxes = [page.locator(f"#{s}").bounding_box() for s in ("runs-title", "models-title", "hist-title")]
        assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"], "cards should stack in one column"
        t.assert_clean()


# ----------------------------------------------------------------------------------------- screenshot
def compare_images(actual: Path, expected: Path, diff_path: Path, channel_tolerance: int = 32) -> float:
    """The fraction of pixels differing by more than ``channel_tolerance`` in any channel; writes a diff image."""
    from PIL import Image, ImageChops

    a = Image.open(actual).convert("RGB")
    b = Image.open(expected).convert("RGB")
    if a.size != b.size:
        return 1.0
    diff = ImageChops.difference(a, b)
    mask = Image.eval(_max_channel(diff), lambda v: 255 if v > channel_tolerance else 0)
    changed = mask.histogram()[255]
    overlay = Image.blend(a, Image.new("RGB", a.size, "white"), 0.7)
    overlay.paste(Image.new("RGB", a.size, (220, 0, 0)), mask=mask)
    overlay.save(diff_path)
    return changed / (a.size[0] * a.size[1])


def _max_channel(image: Any) -> Any:
    from PIL import ImageChops

    r, g, b = image.split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def test_screenshot_matches_baseline(tab, tmp_path):
    with serve(fixture_app()) as url:
        t = tab()
        page = t.open(url)
        page.mouse.move(0, 0)
        actual = tmp_path / "dashboard.actual.png"
        page.screenshot(path=str(actual), animations="disabled", caret="hide")
        if UPDATE:
            BASELINE.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(actual, BASELINE)
            DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS_IMAGE), full_page=True, animations="disabled", caret="hide")
        t.assert_clean()
    assert BASELINE.is_file(), f"no baseline at {BASELINE}: run with ADPIPE_UPDATE_SCREENSHOTS=1 to write it"
    diff = tmp_path / "dashboard.diff.png"
    changed = compare_images(actual, BASELINE, diff)
    assert changed < 0.01, (f"the dashboard looks different from {BASELINE} ({changed:.2%} of pixels changed): "
                            f"see {actual} and {diff}; if the change is intended, rerun with "
                            "ADPIPE_UPDATE_SCREENSHOTS=1")


# ----------------------------------------------------------------------------------------- the real service
def test_end_to_end_on_the_real_service(tab, tmp_path):
    try:
        from adpipe.service.app import create_app
    except ImportError as exc:  # the service is optional (the `service` extra)
        pytest.skip(f"the service app is not importable: {exc}")
    import adpipe
    from adpipe.service.settings import ServeSettings

    store = adpipe.ModelStore(tmp_path / "store")
    config = {"name": "blobs", "columns": {"id": ["id"]},
              "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
              "threshold": {"type": "contamination", "contamination": 0.05}}
    stored = store.add(adpipe.Pipeline.from_dict(config).fit(blob_frame(n=300, with_id=True)))
    store.promote("blobs", stored.version, "production")
    app = create_app(ServeSettings(no_auth=True, store=tmp_path / "store", models=["blobs@production"]))
    with serve(app) as url:
        until(lambda: httpx.get(url + "/v1/health/ready").status_code == 200, "the model to load", timeout=60)
        records = blob_frame(n=120, n_outliers=6, seed=3, with_id=True).to_dict("records")
        scored = httpx.post(url + "/v1/models/blobs/score/batch", json={"records": records}, timeout=60)
        assert scored.status_code == 200, scored.text
        batch = scored.json()
        assert batch["rows_scored"] == 120 and batch["anomalies"] > 0

        t = tab()
        page = t.open(url)
        models = page.get_by_role("table", name="Models")
        assert "blobs" in models.locator("tbody th").inner_text()
        assert models.locator("tbody .badge", has_text="production").count() == 1
        runs = page.locator("#runs tbody tr")
        assert runs.count() == 1
        cells = [c.strip() for c in runs.nth(0).locator("td").all_inner_texts()]
        assert cells[1] == "blobs@1\nscore_batch" and cells[2].startswith("succeeded")
        assert cells[3:] == ["120", str(batch["anomalies"])]
        anomalies = page.locator("#anomalies tbody tr")
        assert anomalies.count() == batch["anomalies"]
        flagged_ids = {r["id"] for r, out in zip(records, batch["results"], strict=True) if out["is_anomaly"]}
        shown_ids = {int(kv.split("=")[1]) for kv in texts(page, "#anomalies .kv") if kv.startswith("id=")}
        assert shown_ids == flagged_ids
        bars = page.locator("#histogram rect.bar")
        assert bars.count() == 20
        assert sum(int(c) for c in bars.evaluate_all("bs => bs.map(b => b.dataset.count)")) == 120
        assert page.locator("#histogram g.threshold line").count() == 1
        assert page.locator("#hist-caption").inner_text().startswith("blobs@1 · 120 scores · threshold ")
        t.assert_clean()


def test_real_service_with_api_keys(tab, tmp_path):
    try:
        from adpipe.service.app import create_app
        from adpipe.service.keys import create_key
    except ImportError as exc:
        pytest.skip(f"the service app is not importable: {exc}")
    from adpipe.service.settings import ServeSettings

    keys = tmp_path / "keys.yaml"
    reader, _ = create_key(keys, "dashboard", "read")
    app = create_app(ServeSettings(keys_file=keys, store=tmp_path / "store"))
    with serve(app) as url:
        shell = httpx.get(url + "/dashboard")
        assert shell.status_code == 200 and "default-src 'self'" in shell.headers["content-security-policy"]
        t = tab()
        page = t.open(url, state="error-401")
        assert "needs an API key (HTTP 401)" in page.get_by_role("alert").inner_text()
        page.get_by_label("API key").fill("wrong-" + reader)
        page.get_by_role("button", name="Use key").click()
        until(lambda: "not accepted" in page.get_by_role("alert").inner_text(), "the 401 message")
        page.get_by_label("API key").fill(reader)
        page.get_by_role("button", name="Use key").click()
        t.wait_state("loaded")
        assert page.get_by_role("alert").is_hidden()
        assert texts(page, ".empty") == ["No runs yet.", "No models in the store yet.", "No scores yet.",
                                         "No drift detected.", "No anomalies yet."]
        t.assert_clean(allow=lambda s: "status of 401" in s)
