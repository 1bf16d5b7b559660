"""The ``email`` alert channel: one message per notification over SMTP, text and HTML parts."""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

import adpipe
from adpipe.core.alerting.channel import NotifyChannel
from adpipe.core.alerting.model import DeliveryError, Notification

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

#: the HTML part: a table of the listed alerts (values are escaped: the template is rendered with autoescape)
HTML_TEMPLATE = """<!DOCTYPE html>
<html><body style="font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222">
<h2 style="margin: 0 0 8px 0">{{ n.title }}</h2>
<p>{{ total }} anomal{{ 'y' if total == 1 else 'ies' }} in <b>{{ pipeline }}</b>
{%- if run_id %} (run <code>{{ run_id }}</code>{% if model_version %}, model <code>{{ model_version }}</code>{% endif %})
{%- endif %}.</p>
{% if alerts %}
<table cellpadding="4" cellspacing="0" border="1" style="border-collapse: collapse; border-color: #ccc">
<tr style="background: #f0f0f0"><th align="left">severity</th><th align="right">probability</th>
<th align="right">score</th><th align="left">record</th></tr>
{% for a in alerts %}
<tr><td>{{ a.severity }}</td>
<td align="right">{% if a.record.anomaly_probability is defined and a.record.anomaly_probability is not none %}{{ a.record.anomaly_probability | num(4) }}{% endif %}</td>
<td align="right">{% if a.record.anomaly_score is defined and a.record.anomaly_score is not none %}{{ a.record.anomaly_score | num(4) }}{% endif %}</td>
<td>{% for k, v in a.record.items() if k not in ('anomaly_score', 'anomaly_probability', 'is_anomaly', 'severity', 'model_version', 'run_id') %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% else %}{{ a.annotations.summary | default('') }}{% endfor %}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if truncated %}<p>... and {{ truncated }} more not listed.</p>{% endif %}
{% if results %}<p>Full results: {% if results is string and results.startswith('http') %}<a href="{{ results }}">{{ results }}</a>{% else %}<code>{{ results }}</code>{% endif %}</p>{% endif %}
</body></html>
"""


def _address(value: str) -> str:
    if "@" not in parseaddr(value)[1]:
        raise ValueError(f"{value!r} is not an email address (name@example.com or 'Name <name@example.com>')")
    return value


def message_id(key: str, sender: str) -> str:
    """``<key@sender-domain>``: the same on every retry, so mail systems can drop duplicates."""
    left = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", key)).strip(".")
    if not left:
        return make_msgid(domain="adpipe.invalid")
    domain = re.sub(r"[^A-Za-z0-9.-]", "", parseaddr(sender)[1].rpartition("@")[2]) or "adpipe.invalid"
    return f"<{left}@{domain}>"


class EmailChannel(NotifyChannel):
    """Sends alerts by email over SMTP (STARTTLS or SSL, optional login), with text and HTML parts.

    Each message's Message-ID and X-Idempotency-Key headers are the notification's idempotency key, the
    same on every retry. Retried: connection errors, timeouts, disconnects and 4xx SMTP replies; not
    retried: 5xx replies (login refused, recipient unknown) and TLS certificate errors.
    """

    name = "email"
    default_rate = 0.5
    html_template = HTML_TEMPLATE

    class Params(NotifyChannel.Params):
        host: str = adpipe.Field(..., min_length=1, description="SMTP server host name")
        port: int | None = adpipe.Field(None, ge=1, le=65535, description="SMTP port (default: 587 for starttls, "
                                        "465 for ssl, 25 for none)")
        security: Literal["starttls", "ssl", "none"] = adpipe.Field(
            "starttls", description="starttls: upgrade a plain connection; ssl: TLS from the start; none: plain text")
        username: str | None = adpipe.Field(None, description="login name (no login when not set)")
        password: SecretStr | None = adpipe.Field(None, description="login password, e.g. "
                                                  "\"${oc.env:SMTP_PASSWORD}\" (never printed)")
        sender: str = adpipe.Field(..., description="From address, e.g. 'adpipe <alerts@example.com>'")
        to: list[str] = adpipe.Field(..., min_length=1, description="recipient addresses")
        cc: list[str] = adpipe.Field(default_factory=list, description="copy addresses")
        subject_prefix: str = adpipe.Field("[adpipe] ", description="put before the title in the subject")
        verify: bool = adpipe.Field(True, description="check the server's TLS certificate and host name "
                                    "(turn off only for test servers with self-signed certificates)")

        @field_validator("sender")
        @classmethod
        def _sender(cls, value: str) -> str:
            return _address(value)

        @field_validator("to", "cc")
        @classmethod
        def _recipients(cls, value: list[str]) -> list[str]:
            return [_address(v) for v in value]

        @model_validator(mode="after")
        def _login(self):
            if self.password is not None and not self.username:
                raise ValueError("a password needs a username")
            return self

    # ------------------------------------------------------------------ message
    @property
    def port(self) -> int:
        return self.params.port or DEFAULT_PORTS[self.params.security]

    def message(self, n: Notification) -> EmailMessage:
        p = self.params
        msg = EmailMessage()
        msg["Subject"] = " ".join(f"{p.subject_prefix}{n.title}".split())
        msg["From"] = p.sender
        msg["To"] = ", ".join(p.to)
        if p.cc:
            msg["Cc"] = ", ".join(p.cc)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id(n.idempotency_key, p.sender)
        if n.idempotency_key:
            msg["X-Idempotency-Key"] = n.idempotency_key
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
        msg.set_content(n.body or n.title)
        if n.body_html:
            msg.add_alternative(n.body_html, subtype="html")
        return msg

    # ------------------------------------------------------------------ sending
    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.params.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> smtplib.SMTP:
        p = self.params
        if p.security == "ssl":
            return smtplib.SMTP_SSL(p.host, self.port, timeout=p.timeout, context=self.tls_context())
        smtp = smtplib.SMTP(p.host, self.port, timeout=p.timeout)
        try:
            if p.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp

    def deliver(self, n: Notification) -> None:
        p = self.params
        msg = self.message(n)
        recipients = [addr for _, addr in getaddresses([*p.to, *p.cc])]
        try:
            smtp = self.connect()
            try:
                if p.username:
                    smtp.login(p.username, p.password.get_secret_value() if p.password else "")
                refused = smtp.send_message(msg, from_addr=parseaddr(p.sender)[1], to_addrs=recipients)
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    pass  # the message is already accepted
            finally:
                smtp.close()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a DeliveryError
            raise self.error(exc) from None
        if refused:  # some recipients got it: retrying would send them duplicates
            raise DeliveryError(f"{self.where}: sent to {len(recipients) - len(refused)} of {len(recipients)} "
                                f"recipients; refused: {_refusals(refused)}", retryable=False)

    @property
    def where(self) -> str:
        return f"SMTP server {self.params.host}:{self.port}"

    def error(self, exc: Exception) -> DeliveryError:
        """The DeliveryError for an SMTP, TLS or network failure (4xx and network: retryable; 5xx: not)."""
        where, timeout = self.where, self.params.timeout
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            retryable = all(400 <= code < 500 for code in codes)
            err = DeliveryError(f"{where} refused every recipient: {_refusals(exc.recipients)}", retryable=retryable)
        elif isinstance(exc, smtplib.SMTPResponseException):
            code, text = exc.smtp_code, _text(exc.smtp_error)
            what = "refused the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "answered"
            hint = "; check username and password" if isinstance(exc, smtplib.SMTPAuthenticationError) else ""
            err = DeliveryError(f"{where} {what}: {code} {text}{hint}", retryable=not 500 <= code < 600)
        elif isinstance(exc, smtplib.SMTPServerDisconnected):
            err = DeliveryError(f"{where} closed the connection: {exc}", retryable=True)
        elif isinstance(exc, smtplib.SMTPNotSupportedError):
            err = DeliveryError(f"{where}: {exc} (check `security`, `username`)", retryable=False)
        elif isinstance(exc, smtplib.SMTPException):
            err = DeliveryError(f"{where}: {exc}", retryable=False)
        elif isinstance(exc, ssl.SSLCertVerificationError):
            err = DeliveryError(f"{where}: its TLS certificate is not trusted ({exc.verify_message}); use a trusted "
                                "certificate, or `verify: false` for a test server", retryable=False)
        elif isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            err = DeliveryError(f"{where}: the TLS connection broke: {exc}", retryable=True)
        elif isinstance(exc, ssl.SSLError):
            err = DeliveryError(f"{where}: TLS failed ({exc.reason or exc}); does `security` match the port "
                                "(ssl: usually 465, starttls: 587)?", retryable=False)
        elif isinstance(exc, TimeoutError):
            err = DeliveryError(f"{where} timed out after {timeout:g} s", retryable=True)
        elif isinstance(exc, OSError):
            err = DeliveryError(f"{where}: cannot connect: {exc.strerror or exc}", retryable=True)
        else:  # a header or address the message cannot carry
            err = DeliveryError(f"{where}: cannot send the message: {type(exc).__name__}: {exc}", retryable=False)
        password = self.params.password.get_secret_value() if self.params.password else ""
        if password and password in str(err):
            err = DeliveryError(str(err).replace(password, "***"), retryable=err.retryable)
        return err


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in refused.items())
