"""What the Kafka source and sink share: client settings, secret masking, error wording."""

from __future__ import annotations

import threading
import time
from typing import Any

import adpipe

INSTALL_HINT = "pip install 'adpipe[stream]'"
#: librdkafka settings whose values are secrets (never printed)
SECRET_WORDS = ("password", "secret", "token", "key")


class ClientParams(adpipe.Params):
    """Connection settings of the Kafka source and sink."""

    bootstrap_servers: str = adpipe.Field(min_length=1, description="host:port[,host:port...] of the brokers")
    client_config: dict[str, str | int | float | bool] = adpipe.Field(
        default_factory=dict, description="more librdkafka settings passed through as-is: security.protocol, "
        "sasl.mechanisms, sasl.username, sasl.password, ssl.ca.location, ... (secret values are never printed)"
    )
    broker_timeout_seconds: float = adpipe.Field(
        60, gt=0, description="fail with a clear error when no broker has answered for this long"
    )


def settings(params: ClientParams, **defaults: Any) -> dict[str, Any]:
    """librdkafka settings: our defaults, then the user's client_config, then the bootstrap servers."""
    return {**defaults, **params.client_config, "bootstrap.servers": params.bootstrap_servers}


def masked(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in conf.items()}


class BrokerWatch:
    """Counts how long every broker has been unreachable (fed by librdkafka's error callback)."""

    def __init__(self, servers: str, timeout: float):
        self.servers, self.timeout = servers, timeout
        self.down_since: float | None = None
        self.last_error = ""
        self.fatal: str | None = None
        self._lock = threading.Lock()

    def error_cb(self, err) -> None:  # runs on librdkafka's thread
        from confluent_kafka import KafkaError

        with self._lock:
            self.last_error = err.str()
            if err.fatal():
                self.fatal = err.str()
            elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
                if self.down_since is None:
                    self.down_since = time.monotonic()

    def alive(self) -> None:
        """A broker answered (a message or metadata arrived)."""
        with self._lock:
            self.down_since = None

    def check(self, what: str) -> None:
        """Raise :class:`adpipe.SourceError` / SinkError-style errors when brokers stay unreachable."""
        with self._lock:
            fatal, down = self.fatal, self.down_since
        if fatal:
            raise adpipe.SourceError(f"The Kafka {what} hit a fatal error: {fatal}",
                                     hint="check the client settings (security, SASL, SSL) and the broker logs")
        if down is not None and time.monotonic() - down > self.timeout:
            raise adpipe.SourceError(
                f"No Kafka broker at {self.servers} has answered the {what} for {self.timeout:.0f} s "
                f"(last error: {self.last_error}).",
                hint="check that the brokers are up and reachable; records not yet committed are read again "
                     "after a restart, so nothing is lost",
            )
