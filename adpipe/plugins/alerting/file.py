"""The ``file`` alert channel: an append-only JSON Lines audit trail of notifications."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import adpipe
from adpipe.core.alerting.channel import NotifyChannel
from adpipe.core.alerting.model import DeliveryError, Notification
from adpipe.plugins.alerting.http import dumps
from adpipe.plugins.alerting.webhook import adpipe_payload

#: errors no retry fixes
PERMANENT = {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EROFS, errno.ENAMETOOLONG}


class FileChannel(NotifyChannel):
    """Appends each notification as one JSON line to a file (an audit trail of alerts).

    Each line is the webhook channel's adpipe-format payload, written in one append and synced to
    disk. A retried notification may appear twice: its idempotency_key tells the copies apart.
    """

    name = "file"
    default_rate = 1000.0

    class Params(NotifyChannel.Params):
        path: Path = adpipe.Field(..., description="the JSON Lines file (created with its folder; relative "
                                  "paths resolve against the config file's folder)")

    _lock = threading.Lock()

    def deliver(self, n: Notification) -> None:
        path = self.params.path
        line = dumps(adpipe_payload(n)) + b"\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(line)
                    while view:  # one write call for a line in practice; loop on a short write
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise DeliveryError(f"cannot append to the alert file {path}: {exc.strerror or exc}",
                                retryable=exc.errno not in PERMANENT) from None
