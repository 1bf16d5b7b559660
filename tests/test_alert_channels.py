"""Alert channels against real local servers: an HTTP server recording requests, an aiosmtpd SMTP server.

Each channel gets a hand-built Notification, renders it and delivers it once; the tests check what
arrived (payload fields and types, headers, MIME parts) and how failures map to DeliveryError
(retryable or not, Retry-After), and that no secret ends up in an error message.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from email import message_from_bytes, policy
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core.alerting.model import Alert, DeliveryError, Notification
from adpipe.plugins.alerting.email import EmailChannel
from adpipe.plugins.alerting.file import FileChannel
from adpipe.plugins.alerting.http import retry_after
from adpipe.plugins.alerting.slack import SlackChannel
from adpipe.plugins.alerting.webhook import ZERO_TIME, WebhookChannel
from adpipe.testing import check_plugin

TOKEN = "XyZsecretTOKEN123"
PASSWORD = "pa55-w0rd-secret"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must not go through a proxy set in the environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- notifications
def make_alerts(k: int, severity: str = "high") -> list[Alert]:
    alerts = []
    for i in range(k):
        record = {
            "id": np.int64(i), "amount": np.float64(100.5 + i), "when": pd.Timestamp("2024-05-01 12:00", tz="UTC"),
            "missing": float("nan"), "flag": np.bool_(True), "note": "<script>alert(1)</script>",
            "anomaly_score": np.float64(3.5 - i / 1000), "anomaly_probability": np.float64(0.99 - i / 10000),
            "severity": severity,
        }
        alerts.append(Alert(
            labels={"alertname": "anomaly", "pipeline": "fraud", "severity": severity, "record": f"id={i}"},
            annotations={"summary": f"record id={i} is anomalous", "probability": f"{record['anomaly_probability']:.4f}"},
            starts_at="2024-05-01T12:00:00+00:00", record=record))
    return alerts


def make_notification(k: int = 3, total: int | None = None, key: str = "fraud-g1-0001", **kw) -> Notification:
    alerts = make_alerts(k)
    base = dict(channel="ops", receiver="webhook", group_key='{}:{pipeline="fraud"}', group_labels={"pipeline": "fraud"},
                alerts=alerts, total=k if total is None else total, idempotency_key=key,
                context={"pipeline": "fraud", "run_id": "run-42", "model_version": "v7",
                         "results": "https://results.example/fraud/run-42"})
    return Notification(**{**base, **kw})


def deliver(ch, n: Notification) -> Notification:
    ch.render(n)
    ch.deliver(n)
    return n


def failure(ch, n: Notification) -> DeliveryError:
    ch.render(n)
    with pytest.raises(DeliveryError) as err:
        ch.deliver(n)
    return err.value


# --------------------------------------------------------------------------- HTTP server
class Handler(BaseHTTPRequestHandler):
    """Records each POST; answers with the next programmed reply (status, headers, body, delay)."""

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv.requests.append({"path": self.path, "headers": self.headers, "body": body})
        status, headers, text, delay = srv.replies.pop(0) if srv.replies else (200, {}, "ok", 0)
        if delay:
            srv.stop.wait(delay)  # ends early when the test is over
        if "{auth}" in text:  # a server echoing the request's credentials back
            text = text.replace("{auth}", self.headers.get("Authorization", ""))
        data = text.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client gave up (timeout tests): a broken pipe is expected

    def reply(self, status: int, headers: dict | None = None, text: str = "", delay: float = 0) -> None:
        self.replies.append((status, headers or {}, text, delay))

    def url(self, path: str = f"/hooks/T000/{TOKEN}") -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def json(self, i: int = -1) -> dict:
        return json.loads(self.requests[i]["body"])


@pytest.fixture
def http():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.requests, srv.replies, srv.stop = [], [], threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- registration and contract
def test_all_channels_are_registered_and_pass_the_contract_checks(tmp_path):
    names = set(adpipe.get_registry().names("alert_channel"))
    assert {"log", "webhook", "slack", "email", "file"} <= names
    check_plugin(WebhookChannel, {"url": f"https://hooks.example/{TOKEN}"})
    check_plugin(SlackChannel, {"webhook_url": f"https://hooks.slack.com/services/T0/B0/{TOKEN}"})
    check_plugin(EmailChannel, {"host": "smtp.example", "sender": "a@example.com", "to": ["b@example.com"]})
    check_plugin(FileChannel, {"path": str(tmp_path / "alerts.jsonl")})


def test_secrets_are_not_in_repr():
    text = repr(WebhookChannel(url=f"https://hooks.example/{TOKEN}", headers={"Authorization": f"Bearer {TOKEN}"}))
    text += repr(SlackChannel(webhook_url=f"https://hooks.slack.com/services/{TOKEN}"))
    text += repr(EmailChannel(host="h", sender="a@example.com", to=["b@example.com"], username="u", password=PASSWORD))
    assert TOKEN not in text and PASSWORD not in text


def test_email_params_are_checked():
    with pytest.raises(ValueError, match="not an email address"):
        EmailChannel(host="h", sender="a@example.com", to=["nobody"])
    with pytest.raises(ValueError, match="at least 1"):
        EmailChannel(host="h", sender="a@example.com", to=[])
    with pytest.raises(ValueError, match="needs a username"):
        EmailChannel(host="h", sender="a@example.com", to=["b@example.com"], password="x")
    assert EmailChannel(host="h", sender="a@example.com", to=["b@example.com"], security="ssl").port == 465


# --------------------------------------------------------------------------- webhook
def test_webhook_alertmanager_payload(http):
    ch = WebhookChannel(url=http.url(), format="alertmanager", external_url="https://adpipe.example")
    n = deliver(ch, make_notification(k=3, total=5))
    req = http.requests[0]
    assert req["path"] == f"/hooks/T000/{TOKEN}"
    assert req["headers"]["Idempotency-Key"] == "fraud-g1-0001"
    assert req["headers"]["Content-Type"].startswith("application/json")
    body = http.json()
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                         "commonAnnotations", "externalURL", "alerts"}
    assert body["version"] == "4" and body["groupKey"] == n.group_key and body["truncatedAlerts"] == 2
    assert body["status"] == "firing" and body["receiver"] == "webhook"
    assert body["groupLabels"] == {"pipeline": "fraud"}
    assert body["commonLabels"] == {"alertname": "anomaly", "pipeline": "fraud", "severity": "high"}
    assert body["commonAnnotations"] == {}
    assert body["externalURL"] == "https://adpipe.example"
    assert len(body["alerts"]) == 3
    first = body["alerts"][0]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["status"] == "firing"
    assert first["labels"] == {"alertname": "anomaly", "pipeline": "fraud", "severity": "high", "record": "id=0"}
    assert first["annotations"]["summary"] == "record id=0 is anomalous"
    assert first["startsAt"] == "2024-05-01T12:00:00Z" and first["endsAt"] == ZERO_TIME
    assert first["generatorURL"] == "https://results.example/fraud/run-42"
    assert first["fingerprint"] == n.alerts[0].fingerprint and len(first["fingerprint"]) == 16
    for alert in body["alerts"]:
        assert all(isinstance(v, str) for part in ("labels", "annotations") for v in alert[part].values())


def test_webhook_alertmanager_resolved_alert(http):
    n = make_notification(k=1)
    n.alerts[0].ends_at = "2024-05-01T13:00:00"
    deliver(WebhookChannel(url=http.url(), format="alertmanager"), n)
    alert = http.json()["alerts"][0]
    assert alert["status"] == "resolved" and alert["endsAt"] == "2024-05-01T13:00:00Z"
    assert http.json()["externalURL"] == ""


def test_webhook_adpipe_payload_and_headers(http):
    ch = WebhookChannel(url=http.url(), headers={"Authorization": f"Bearer {TOKEN}", "X-Team": "fraud"})
    n = deliver(ch, make_notification(k=2, total=4))
    headers = http.requests[0]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}" and headers["X-Team"] == "fraud"
    assert headers["Idempotency-Key"] == "fraud-g1-0001" and headers["User-Agent"].startswith("adpipe/")
    body = http.json()
    for key in ("title", "body", "status", "pipeline", "run_id", "model_version", "results", "group_labels", "total",
                "truncated", "idempotency_key", "alerts"):
        assert key in body, key
    assert body["title"] == n.title and "fraud" in body["title"] and body["body"] == n.body
    assert (body["pipeline"], body["run_id"], body["model_version"]) == ("fraud", "run-42", "v7")
    assert body["total"] == 4 and body["truncated"] == 2 and body["idempotency_key"] == "fraud-g1-0001"
    assert body["group_labels"] == {"pipeline": "fraud"}
    alert = body["alerts"][0]
    assert {"labels", "annotations", "starts_at", "fingerprint", "record"} <= set(alert)
    record = alert["record"]
    assert record["id"] == 0 and record["amount"] == 100.5 and record["flag"] is True
    assert record["missing"] is None and record["when"] == "2024-05-01T12:00:00+00:00"
    assert record["anomaly_probability"] == pytest.approx(0.99)


def test_webhook_5xx_is_retryable_and_the_retry_carries_the_same_key(http):
    http.reply(500, text="internal error")
    ch = WebhookChannel(url=http.url())
    n = make_notification()
    err = failure(ch, n)
    assert err.retryable and err.retry_after is None
    assert "500" in str(err) and "internal error" in str(err) and TOKEN not in str(err)
    ch.deliver(n)  # the second answer is 200
    keys = [r["headers"]["Idempotency-Key"] for r in http.requests]
    assert keys == ["fraud-g1-0001", "fraud-g1-0001"]
    ch.close()


def test_webhook_429_retry_after_seconds(http):
    http.reply(429, {"Retry-After": "2"}, "slow down")
    err = failure(WebhookChannel(url=http.url()), make_notification())
    assert err.retryable and err.retry_after == 2.0 and "429" in str(err)


def test_webhook_503_retry_after_http_date(http):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    http.reply(503, {"Retry-After": format_datetime(when, usegmt=True)})
    err = failure(WebhookChannel(url=http.url()), make_notification())
    assert err.retryable and 25 <= err.retry_after <= 31


def test_retry_after_parsing():
    now = dt.datetime(2015, 10, 21, 7, 27, 0, tzinfo=dt.timezone.utc)
    assert retry_after("120") == 120.0 and retry_after("0") == 0.0 and retry_after("-5") == 0.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert retry_after("Wed, 21 Oct 2015 07:26:00 GMT", now=now) == 0.0  # in the past
    assert retry_after(None) is None and retry_after("soon") is None


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_webhook_4xx_is_not_retryable(http, status):
    http.reply(status, text="bad token {auth}")
    ch = WebhookChannel(url=http.url(), headers={"Authorization": f"Bearer {TOKEN}"})
    err = failure(ch, make_notification())
    assert not err.retryable and str(status) in str(err) and "bad token" in str(err)
    assert TOKEN not in str(err) and "/hooks/" not in str(err)  # the echoed credentials are scrubbed too


def test_webhook_redirect_is_not_followed(http):
    http.reply(302, {"Location": "https://elsewhere.example/new"})
    err = failure(WebhookChannel(url=http.url()), make_notification())
    assert not err.retryable and "302" in str(err) and len(http.requests) == 1


def test_webhook_connection_refused_is_retryable():
    url = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"
    err = failure(WebhookChannel(url=url, timeout=2), make_notification())
    assert err.retryable and "127.0.0.1" in str(err) and TOKEN not in str(err)


def test_webhook_timeout_is_retryable(http):
    http.reply(200, delay=2)
    ch = WebhookChannel(url=http.url(), timeout=0.3)
    t0 = time.monotonic()
    err = failure(ch, make_notification())
    assert time.monotonic() - t0 < 1.5
    assert err.retryable and "timed out" in str(err) and TOKEN not in str(err)
    ch.close()


def test_webhook_bad_url_is_not_retryable():
    err = failure(WebhookChannel(url=f"ftp://example.com/{TOKEN}"), make_notification())
    assert not err.retryable and TOKEN not in str(err)


def test_webhook_client_is_reused_and_closed(http):
    ch = WebhookChannel(url=http.url())
    deliver(ch, make_notification())
    client = ch.client()
    deliver(ch, make_notification())
    assert ch.client() is client
    ch.close()
    assert client.is_closed
    deliver(ch, make_notification())  # a closed channel opens a new client when used again
    ch.close()
    assert len(http.requests) == 3


# --------------------------------------------------------------------------- slack
def test_slack_blocks(http):
    ch = SlackChannel(webhook_url=http.url(f"/services/T000/B000/{TOKEN}"), channel="#fraud", username="adpipe",
                      icon_emoji=":rotating_light:")
    n = deliver(ch, make_notification(k=3, receiver="slack"))
    assert http.requests[0]["headers"]["Idempotency-Key"] == "fraud-g1-0001"
    body = http.json()
    assert (body["channel"], body["username"], body["icon_emoji"]) == ("#fraud", "adpipe", ":rotating_light:")
    assert body["text"].startswith(n.title) and "3 anomalies in fraud" in body["text"]
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": n.title, "emoji": True}
    assert blocks[1]["text"]["type"] == "mrkdwn" and "3 anomalies in fraud" in blocks[1]["text"]["text"]
    fields = blocks[2]["fields"]
    assert len(fields) == 3 and all(f["type"] == "mrkdwn" for f in fields)
    assert fields[0]["text"].startswith("*high*  p=0.990  score=3.5") and "id=0" in fields[0]["text"]
    context = " ".join(e["text"] for e in blocks[3]["elements"])
    assert "run `run-42`" in context and "model `v7`" in context
    assert "<https://results.example/fraud/run-42|full results>" in context
    assert "<script>" not in json.dumps(body)  # mrkdwn control characters escaped


def test_slack_limits_with_a_thousand_alerts(http):
    ch = SlackChannel(webhook_url=http.url(), max_alerts=1000)
    n = make_notification(k=1000, total=5000, receiver="slack", title="x")
    deliver(ch, n)
    n.title = "T" * 400
    ch.deliver(n)  # a title longer than Slack's header limit
    for body in (http.json(0), http.json(1)):
        blocks = body["blocks"]
        assert len(blocks) <= 50
        assert len(blocks[0]["text"]["text"]) <= 150
        assert len(blocks[1]["text"]["text"]) <= 3000 and blocks[1]["text"]["text"].endswith("…")
        sections = [b for b in blocks if b["type"] == "section" and "fields" in b]
        assert sections and all(len(b["fields"]) <= 10 for b in sections)
        assert all(len(f["text"]) <= 2000 for b in sections for f in b["fields"])
        assert sum(len(b["fields"]) for b in sections) == 20
        context = blocks[-1]
        assert context["type"] == "context" and len(context["elements"]) <= 10
        assert "20 of 5000 listed" in context["elements"][0]["text"]
        assert len(body["text"]) <= 500
    assert http.json(1)["blocks"][0]["text"]["text"] == "T" * 149 + "…"


def test_slack_errors_hide_the_webhook_url(http):
    http.reply(404, text="no_service")
    url = http.url(f"/services/T000/B000/{TOKEN}")
    err = failure(SlackChannel(webhook_url=url), make_notification(receiver="slack"))
    assert not err.retryable and "404" in str(err) and "no_service" in str(err)
    assert TOKEN not in str(err) and "/services" not in str(err) and "127.0.0.1" in str(err)
    http.reply(429, {"Retry-After": "2"})
    err = failure(SlackChannel(webhook_url=url), make_notification(receiver="slack"))
    assert err.retryable and err.retry_after == 2.0


# --------------------------------------------------------------------------- SMTP servers
class Inbox:
    """aiosmtpd handler keeping every message; recipients in ``refuse`` get the given reply."""

    def __init__(self, refuse: dict[str, str] | None = None):
        self.messages: list = []
        self.refuse = refuse or {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted"


def check_login(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def start_smtp(handler, **kwargs):
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp():
    inbox = Inbox(refuse={"later@example.com": "450 4.2.1 mailbox busy", "nobody@example.com": "550 5.1.1 no such user"})
    controller = start_smtp(inbox)
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
def smtp_auth():
    inbox = Inbox()
    controller = start_smtp(inbox, authenticator=check_login, auth_required=True, auth_require_tls=False)
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (a test server's)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def server_tls(tls_files) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    return ctx


def email(port: int, **kw) -> EmailChannel:
    params = dict(host="127.0.0.1", port=port, security="none", sender="adpipe <alerts@example.com>",
                  to=["ops@example.com", "Oncall <oncall@example.com>"], cc=["lead@example.com"], timeout=5)
    return EmailChannel(**{**params, **kw})


def parsed(envelope):
    return message_from_bytes(envelope.content, policy=policy.default)


# --------------------------------------------------------------------------- email
def test_email_text_and_html_parts(smtp):
    n = deliver(email(smtp.port), make_notification(k=2, total=3, receiver="email"))
    assert len(smtp.messages) == 1
    env = smtp.messages[0]
    assert env.mail_from == "alerts@example.com"
    assert env.rcpt_tos == ["ops@example.com", "oncall@example.com", "lead@example.com"]
    msg = parsed(env)
    assert msg["Subject"] == f"[adpipe] {n.title}"
    assert msg["To"] == "ops@example.com, Oncall <oncall@example.com>" and msg["Cc"] == "lead@example.com"
    assert msg["From"] == "adpipe <alerts@example.com>"
    assert msg["Message-ID"] == "<fraud-g1-0001@example.com>" and msg["X-Idempotency-Key"] == "fraud-g1-0001"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "3 anomalies in fraud" in text and "id=0" in text
    assert "<table" in html and "<td>high</td>" in html and "0.99" in html and "... and 1 more" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'href="https://results.example/fraud/run-42"' in html


def test_email_refused_recipients(smtp):
    err = failure(email(smtp.port, to=["later@example.com"], cc=[]), make_notification())
    assert err.retryable and "450" in str(err)  # 4xx: try again later
    err = failure(email(smtp.port, to=["nobody@example.com"], cc=[]), make_notification())
    assert not err.retryable and "550" in str(err)
    err = failure(email(smtp.port, to=["ops@example.com", "nobody@example.com"], cc=[]), make_notification())
    assert not err.retryable and "sent to 1 of 2" in str(err)  # a retry would duplicate ops's copy
    assert len(smtp.messages) == 1


AUTH_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@AUTH_WITHOUT_TLS
def test_email_login(smtp_auth):
    deliver(email(smtp_auth.port, username="alerts", password=PASSWORD), make_notification())
    assert len(smtp_auth.messages) == 1


@AUTH_WITHOUT_TLS
def test_email_wrong_password_is_not_retryable(smtp_auth):
    err = failure(email(smtp_auth.port, username="alerts", password=PASSWORD + "x"), make_notification())
    assert not err.retryable and "535" in str(err) and PASSWORD not in str(err)
    assert smtp_auth.messages == []


def test_email_server_down_is_retryable():
    err = failure(email(free_port(), username="alerts", password=PASSWORD), make_notification())
    assert err.retryable and "127.0.0.1" in str(err) and PASSWORD not in str(err)


def test_email_starttls_not_offered_is_not_retryable(smtp):
    err = failure(email(smtp.port, security="starttls"), make_notification())
    assert not err.retryable and "STARTTLS" in str(err)


def test_email_starttls_with_a_self_signed_certificate(tls_files):
    inbox = Inbox()
    controller = start_smtp(inbox, tls_context=server_tls(tls_files), require_starttls=True)
    try:
        err = failure(email(controller.port, security="starttls"), make_notification())
        assert not err.retryable and "certificate" in str(err)
        deliver(email(controller.port, security="starttls", verify=False), make_notification())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_email_ssl(tls_files):
    inbox = Inbox()
    controller = start_smtp(inbox, ssl_context=server_tls(tls_files))
    try:
        deliver(email(controller.port, security="ssl", verify=False), make_notification())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


# --------------------------------------------------------------------------- file
def test_file_appends_json_lines(tmp_path):
    path = tmp_path / "audit" / "alerts.jsonl"
    ch = FileChannel(path=path)
    deliver(ch, make_notification(k=2, key="k1"))
    deliver(ch, make_notification(k=1, key="k2"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["idempotency_key"] == "k1" and second["idempotency_key"] == "k2"
    assert len(first["alerts"]) == 2 and first["alerts"][0]["record"]["when"] == "2024-05-01T12:00:00+00:00"
    assert first["title"] and first["pipeline"] == "fraud"


def test_file_errors(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    err = failure(FileChannel(path=folder), make_notification())
    assert not err.retryable and str(folder) in str(err)
    Path(tmp_path / "blocker").write_text("")
    err = failure(FileChannel(path=tmp_path / "blocker" / "alerts.jsonl"), make_notification())
    assert not err.retryable
