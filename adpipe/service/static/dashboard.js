/* adpipe dashboard: fetches v1/dashboard/data and renders it with DOM calls only.
 *
 * Every value from the server goes into the page through textContent or setAttribute on a fixed attribute
 * name, never through innerHTML, so record values cannot inject markup. No inline scripts or styles: the page
 * runs under Content-Security-Policy default-src 'self'.
 */
(function () {
  "use strict";

  var DATA_URL = "v1/dashboard/data";   // relative: works behind a path prefix too
  var KEY_STORE = "adpipe.dashboard.apiKey";
  var AUTO_STORE = "adpipe.dashboard.autoRefresh";
  var REFRESH_MS = 10000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var SEVERITIES = ["none", "low", "medium", "high", "critical"];
  var intFmt = new Intl.NumberFormat("en-US");
  var compactFmt = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

  var inflight = false;
  var again = false;   // a load was asked for while one was under way (e.g. a new key): run it after
  var lastHistogram = null;
  var LOG_STORE = "adpipe.dashboard.logScale";

  // ------------------------------------------------------------------ small DOM helpers
  function $(id) { return document.getElementById(id); }

  /** Element with attributes (fixed names chosen here) and children (strings become text nodes). */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) { return; }
    Object.keys(attrs).forEach(function (name) {
      if (attrs[name] !== null && attrs[name] !== undefined) { node.setAttribute(name, String(attrs[name])); }
    });
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function list(value) { return Array.isArray(value) ? value : []; }

  function text(value) {
    if (value === null || value === undefined || value === "") { return "—"; }
    if (typeof value === "object") { return JSON.stringify(value); }
    return String(value);
  }

  // ------------------------------------------------------------------ formatting
  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function fmtInt(x) { return isNum(x) ? intFmt.format(x) : "—"; }
  function fmtNum(x, digits) { return isNum(x) ? x.toFixed(digits) : "—"; }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /** ISO time -> "YYYY-MM-DD HH:MM:SS" in UTC (the same on every machine), inside a <time> element. */
  function fmtTime(iso) {
    var d = new Date(iso || "");
    if (isNaN(d.getTime())) { return text(iso); }
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function timeEl(iso) {
    return iso ? el("time", { datetime: String(iso) }, fmtTime(iso)) : "—";
  }

  /** Just the UTC date; the full time is in the tooltip. */
  function dateEl(iso) {
    return iso ? el("time", { datetime: String(iso), title: fmtTime(iso) + " UTC" }, fmtTime(iso).slice(0, 10)) : "—";
  }

  function timeValue(iso) {
    var t = new Date(iso || "").getTime();
    return isNaN(t) ? -Infinity : t;
  }

  function newestFirst(rows, field) {
    return rows.slice().sort(function (a, b) { return timeValue(b[field]) - timeValue(a[field]); });
  }

  function badge(kind, value) {
    var word = text(value);
    return el("span", { "class": "badge " + kind + "-" + word.toLowerCase().replace(/[^a-z0-9_-]/g, "") }, word);
  }

  function severityOf(value) {
    var s = String(value || "none").toLowerCase();
    return SEVERITIES.indexOf(s) >= 0 ? s : "none";
  }

  // ------------------------------------------------------------------ sections
  function fillTable(tableId, emptyId, rows) {
    var tbody = $(tableId).tBodies[0];
    clear(tbody);
    rows.forEach(function (row) { tbody.appendChild(row); });
    $(tableId).hidden = rows.length === 0;
    $(emptyId).hidden = rows.length !== 0;
  }

  function renderRuns(runs) {
    var rows = newestFirst(runs, "started_at").map(function (run) {
      var status = el("td", null, badge("status", run.status));
      if (run.error) {
        status.appendChild(el("span", { "class": "sub run-error", title: text(run.error) }, text(run.error)));
      } else if (isNum(run.seconds)) {
        status.appendChild(el("span", { "class": "sub" }, fmtNum(run.seconds, 2) + " s"));
      }
      return el("tr", { title: "run " + text(run.id) },
        el("td", null, timeEl(run.started_at)),
        el("td", null, el("span", { "class": "mono" }, text(run.model)),
          el("span", { "class": "sub" }, text(run.kind))),
        status,
        el("td", { "class": "num" }, fmtInt(run.rows_in)),
        el("td", { "class": "num" }, fmtInt(run.anomalies)));
    });
    fillTable("runs", "runs-empty", rows);
    var failed = runs.filter(function (r) { return r.status === "failed"; }).length;
    $("tile-runs").textContent = fmtInt(runs.length);
    $("tile-runs-note").textContent = runs.length === 0 ? "none yet" :
      failed ? fmtInt(failed) + " failed" : "none failed";
  }

  function metricsText(metrics) {
    if (!metrics || typeof metrics !== "object") { return "—"; }
    var names = Object.keys(metrics).slice(0, 3);
    if (!names.length) { return "—"; }
    return names.map(function (k) {
      var v = metrics[k];
      return k + " " + (isNum(v) ? v.toFixed(3) : text(v));
    }).join(", ");
  }

  function renderModels(models) {
    var table = $("models");
    Array.prototype.slice.call(table.tBodies).forEach(function (b) { table.removeChild(b); });
    models.forEach(function (model) {
      var versions = list(model.versions).slice().sort(function (a, b) { return (b.version || 0) - (a.version || 0); });
      var tbody = el("tbody");
      var head = el("th", { scope: "rowgroup", rowspan: Math.max(versions.length, 1) },
        el("span", { "class": "model-name" }, text(model.name)),
        el("span", { "class": "badge " + (model.loaded ? "loaded" : "not-loaded") },
          model.loaded ? "loaded" : "not loaded"));
      if (!versions.length) {
        tbody.appendChild(el("tr", null, head, el("td", { colspan: 6, "class": "muted" }, "no versions")));
      }
      versions.forEach(function (v, i) {
        var stages = list(v.stages);
        var row = el("tr", null,
          i === 0 ? head : null,
          el("td", { "class": "num" }, text(v.version)),
          el("td", null, stages.length ? stages.map(function (s) { return badge("stage", s); }) : "—"),
          el("td", null, text(v.detector)),
          el("td", { "class": "num" }, fmtInt(v.rows)),
          el("td", { "class": "small" }, metricsText(v.metrics)),
          el("td", null, dateEl(v.created_at)));
        tbody.appendChild(row);
      });
      table.appendChild(tbody);
    });
    table.hidden = models.length === 0;
    $("models-empty").hidden = models.length !== 0;
    var loaded = models.filter(function (m) { return m.loaded; }).length;
    $("tile-models").textContent = fmtInt(models.length);
    $("tile-models-note").textContent = models.length ? fmtInt(loaded) + " loaded" : "store is empty";
  }

  function recordCell(record) {
    var cell = el("td", { "class": "record" });
    if (!record || typeof record !== "object") { cell.textContent = text(record); return cell; }
    Object.keys(record).forEach(function (key) {
      cell.appendChild(el("span", { "class": "kv" }, el("span", { "class": "k" }, key + "="),
        el("span", { "class": "v" }, text(record[key]))));
    });
    return cell;
  }

  function renderAnomalies(anomalies) {
    var rows = newestFirst(anomalies, "at").map(function (a) {
      var sev = severityOf(a.severity);
      var model = text(a.model) + (a.version !== null && a.version !== undefined ? "@" + a.version : "");
      return el("tr", { "class": "sev-row sev-" + sev },
        el("td", null, timeEl(a.at)),
        el("td", { "class": "mono" }, model),
        el("td", null, el("span", { "class": "badge sev-" + sev }, sev)),
        el("td", { "class": "num" }, fmtNum(a.anomaly_probability, 4)),
        el("td", { "class": "num" }, fmtNum(a.anomaly_score, 4)),
        recordCell(a.record));
    });
    fillTable("anomalies", "anomalies-empty", rows);
    var severe = anomalies.filter(function (a) {
      var s = severityOf(a.severity); return s === "high" || s === "critical";
    }).length;
    $("tile-anomalies").textContent = fmtInt(anomalies.length);
    $("tile-anomalies-note").textContent = anomalies.length ? fmtInt(severe) + " high or critical" : "none yet";
  }

  function renderDrift(events) {
    var rows = newestFirst(events, "detected_at").map(function (d) {
      var stat = fmtNum(d.statistic, 3) + (isNum(d.threshold) ? " / " + fmtNum(d.threshold, 3) : "");
      return el("tr", { title: d.detail ? text(d.detail) : null },
        el("td", null, timeEl(d.detected_at)),
        el("td", null, el("span", { "class": "mono" }, text(d.feature)),
          el("span", { "class": "sub" }, text(d.pipeline))),
        el("td", null, text(d.test)),
        el("td", { "class": "num" }, stat),
        el("td", { "class": "num" }, isNum(d.p_value) ? d.p_value.toExponential(1) : "—"),
        el("td", null, el("span", { "class": "badge sev-" + severityOf(d.severity) }, severityOf(d.severity))));
    });
    fillTable("drift", "drift-empty", rows);
    $("tile-drift").textContent = fmtInt(events.length);
    var latest = newestFirst(events, "detected_at")[0];
    $("tile-drift-note").textContent = latest ? "latest: " + text(latest.feature) : "none detected";
  }

  // ------------------------------------------------------------------ histogram (SVG)
  function niceStep(span, parts) {
    var raw = span / parts;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  }

  function tickLabel(v, step) {
    var digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return v.toFixed(digits);
  }

  function validHistogram(h) {
    if (!h || typeof h !== "object") { return false; }
    var edges = list(h.edges), counts = list(h.counts);
    return counts.length > 0 && edges.length === counts.length + 1 && edges.every(isNum) && counts.every(isNum) &&
      edges[edges.length - 1] > edges[0];
  }

  function renderHistogram(h) {
    var box = $("histogram");
    clear(box);
    var total = validHistogram(h) ? h.counts.reduce(function (a, b) { return a + b; }, 0) : 0;
    $("hist-empty").hidden = total > 0;
    box.hidden = total === 0;
    $("log-scale").parentNode.hidden = total === 0;
    if (total === 0) { $("hist-caption").textContent = ""; return; }

    var edges = h.edges, counts = h.counts;
    var W = 560, H = 250, L = 52, R = 14, T = 26, B = 40;
    var pw = W - L - R, ph = H - T - B;
    var lo = edges[0], hi = edges[edges.length - 1];
    var maxCount = Math.max.apply(null, counts);
    var log = $("log-scale").checked;   // log scale: the few rows near 1.0 stay visible
    var yStep = niceStep(maxCount || 1, 4);
    var yMax = log ? Math.pow(10, Math.max(1, Math.ceil(Math.log10(maxCount || 1))))
      : Math.max(yStep, Math.ceil(maxCount / yStep) * yStep);
    var yTicks = [0];
    for (var v = log ? 1 : yStep; v <= yMax * 1.000001; v = log ? v * 10 : v + yStep) { yTicks.push(v); }
    var x = function (v) { return L + (v - lo) / (hi - lo) * pw; };
    var y = log ? function (c) { return T + ph - Math.log10(1 + c) / Math.log10(1 + yMax) * ph; }
      : function (c) { return T + ph - c / yMax * ph; };
    var thr = isNum(h.threshold) ? h.threshold : null;
    var model = text(h.model) + (h.version !== null && h.version !== undefined ? "@" + h.version : "");
    var label = "Histogram of anomaly_probability for " + model + ": " + fmtInt(total) + " scores" +
      (thr !== null ? ", threshold " + thr : "");

    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, "class": "hist", role: "img", "aria-label": label,
      "data-scale": log ? "log" : "linear" });
    var grid = svg("g", { "class": "grid" });
    var yAxis = svg("g", { "class": "axis y-axis" });
    yTicks.forEach(function (v) {
      grid.appendChild(svg("line", { x1: L, x2: L + pw, y1: y(v), y2: y(v) }));
      yAxis.appendChild(svg("text", { x: L - 6, y: y(v), "text-anchor": "end", "dominant-baseline": "middle" },
        compactFmt.format(v)));
    });
    chart.appendChild(grid);

    if (thr !== null && thr >= lo && thr <= hi) {
      chart.appendChild(svg("rect", { "class": "over-zone", x: x(thr), y: T, width: x(hi) - x(thr), height: ph }));
    }

    var bars = svg("g", { "class": "bars" });
    counts.forEach(function (c, i) {
      var x0 = x(edges[i]), x1 = x(edges[i + 1]);
      var gap = Math.min(1, (x1 - x0) / 4);
      var over = thr !== null && edges[i] >= thr;
      bars.appendChild(svg("rect", {
        "class": "bar" + (over ? " over" : ""), x: x0 + gap / 2, y: y(c), width: Math.max(x1 - x0 - gap, 0.5),
        height: T + ph - y(c), "data-count": c, "data-lo": edges[i], "data-hi": edges[i + 1]
      }, svg("title", null, edges[i].toFixed(3) + " – " + edges[i + 1].toFixed(3) + ": " + fmtInt(c) + " rows")));
    });
    chart.appendChild(bars);

    var xAxis = svg("g", { "class": "axis x-axis" });
    xAxis.appendChild(svg("line", { "class": "baseline", x1: L, x2: L + pw, y1: T + ph, y2: T + ph }));
    var xStep = niceStep(hi - lo, 5);
    for (var t = Math.ceil(lo / xStep - 1e-9) * xStep; t <= hi + xStep * 1e-6; t += xStep) {
      var tv = Math.round(t / xStep) * xStep;
      xAxis.appendChild(svg("line", { "class": "tick", "data-value": tickLabel(tv, xStep), x1: x(tv), x2: x(tv),
        y1: T + ph, y2: T + ph + 5 }));
      xAxis.appendChild(svg("text", { x: x(tv), y: T + ph + 18, "text-anchor": "middle" }, tickLabel(tv, xStep)));
    }
    xAxis.appendChild(svg("text", { "class": "axis-title", x: L + pw / 2, y: H - 4, "text-anchor": "middle" },
      "anomaly_probability"));
    yAxis.appendChild(svg("text", { "class": "axis-title", x: 12, y: T + ph / 2, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (T + ph / 2) + ")" }, log ? "rows (log scale)" : "rows"));
    chart.appendChild(xAxis);
    chart.appendChild(yAxis);

    if (thr !== null && thr >= lo && thr <= hi) {
      var tx = x(thr), right = tx > L + pw * 0.7;
      chart.appendChild(svg("g", { "class": "threshold" },
        svg("line", { x1: tx, x2: tx, y1: T - 8, y2: T + ph }),
        svg("text", { x: right ? tx - 6 : tx + 6, y: T - 12, "text-anchor": right ? "end" : "start" },
          "threshold " + thr),
        svg("title", null, "threshold " + thr)));
    }
    box.appendChild(chart);

    $("hist-caption").textContent = model + " · " + fmtInt(isNum(h.n) ? h.n : total) + " scores" +
      (thr !== null ? " · threshold " + thr : " · no threshold");
  }

  // ------------------------------------------------------------------ loading
  function showError(message) {
    var box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function render(data) {
    $("generated-at").setAttribute("datetime", text(data.generated_at));
    $("generated-at").textContent = data.generated_at ? fmtTime(data.generated_at) + " UTC" : "—";
    renderRuns(list(data.runs));
    renderModels(list(data.models));
    lastHistogram = data.histogram;
    renderHistogram(lastHistogram);
    renderDrift(list(data.drift));
    renderAnomalies(list(data.anomalies));
  }

  function errorMessage(status, detail, hasKey) {
    if (status === 401) {
      return hasKey ? "The API key was not accepted (HTTP 401). Check the key and press \u201cUse key\u201d again."
        : "This server needs an API key (HTTP 401). Enter a key with the read role above.";
    }
    if (status === 403) { return "This API key may not read the dashboard (HTTP 403): it needs the read role."; }
    if (status === 429) { return "Too many requests (HTTP 429): the dashboard will try again shortly."; }
    return "Could not load the dashboard data (HTTP " + status + ")" + (detail ? ": " + detail : ".");
  }

  function detailOf(body) {
    if (!body || typeof body !== "object") { return ""; }
    if (typeof body.message === "string") {  // the API's error shape: {"error", "message", "hint"}
      return body.message + (typeof body.hint === "string" && body.hint ? " (" + body.hint + ")" : "");
    }
    var d = body.detail !== undefined ? body.detail : body.error;
    return d === undefined ? "" : (typeof d === "string" ? d : JSON.stringify(d));
  }

  function load() {
    if (inflight) { again = true; return Promise.resolve(); }
    inflight = true;
    again = false;
    var key = sessionStorage.getItem(KEY_STORE) || "";
    var headers = { Accept: "application/json" };
    if (key) { headers["X-API-Key"] = key; }
    $("status").textContent = "Loading…";
    document.body.setAttribute("aria-busy", "true");
    return fetch(DATA_URL, { headers: headers, cache: "no-store", credentials: "same-origin" })
      .then(function (resp) {
        return resp.json().catch(function () { return null; }).then(function (body) {
          if (!resp.ok) {
            showError(errorMessage(resp.status, detailOf(body), !!key));
            $("status").textContent = "Not loaded";
            document.body.setAttribute("data-state", "error-" + resp.status);
            return;
          }
          if (!body || typeof body !== "object") { throw new Error("the server sent no JSON object"); }
          render(body);
          showError("");
          $("status").textContent = "Up to date" + ($("auto-refresh").checked ? " · auto-refresh on" : "");
          document.body.setAttribute("data-state", "loaded");
        });
      })
      .catch(function (err) {
        showError("Could not reach the adpipe service: " + (err && err.message ? err.message : err));
        $("status").textContent = "Not loaded";
        document.body.setAttribute("data-state", "error-network");
      })
      .then(function () {
        inflight = false;
        document.body.removeAttribute("aria-busy");
        if (again) { load(); }
      });
  }

  function start() {
    var keyInput = $("api-key"), auto = $("auto-refresh");
    keyInput.value = sessionStorage.getItem(KEY_STORE) || "";
    auto.checked = sessionStorage.getItem(AUTO_STORE) !== "off";
    $("log-scale").checked = sessionStorage.getItem(LOG_STORE) === "on";
    $("log-scale").addEventListener("change", function () {
      sessionStorage.setItem(LOG_STORE, $("log-scale").checked ? "on" : "off");
      renderHistogram(lastHistogram);
    });
    $("controls").addEventListener("submit", function (event) {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORE, keyInput.value.trim());
      load();
    });
    $("refresh").addEventListener("click", function () { load(); });
    auto.addEventListener("change", function () {
      sessionStorage.setItem(AUTO_STORE, auto.checked ? "on" : "off");
      if ($("status").textContent.indexOf("Up to date") === 0) {
        $("status").textContent = "Up to date" + (auto.checked ? " · auto-refresh on" : "");
      }
    });
    setInterval(function () {
      if (auto.checked && !document.hidden) { load(); }
    }, REFRESH_MS);
    load();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
