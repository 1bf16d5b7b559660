"""Running an endless source: a bounded read buffer, graceful stop on signals, idle ticks.

The runner scores what :class:`Feed` yields. A reader thread pulls batches from the source into a
buffer bounded by ``stream.buffer_rows``. When it is full the reader waits (``overflow: block``, the
broker keeps the records) or sheds a batch to the source's dead-letter destination (``drop_oldest`` /
``drop_newest``); a shed batch is acknowledged in order, after the ones before it. When nothing
arrives the feed yields empty batches so the runner can check its clocks and the stop flag.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from typing import Callable, Iterator

import pandas as pd

from adpipe.core.config import StreamSpec
from adpipe.core.plugin import Batch, Source
from adpipe.core.schema import REJECT_REASON

log = logging.getLogger("adpipe.stream")
TICK_SECONDS = 0.2


class Feed:
    """Batches from ``source`` through a bounded buffer filled by a reader thread."""

    def __init__(self, source: Source, batch_rows: int, spec: StreamSpec,
                 on_buffer: Callable[[int, int], None] | None = None):
        self.source, self.batch_rows, self.spec = source, batch_rows, spec
        self.capacity = spec.buffer_rows
        self.on_buffer = on_buffer or (lambda rows, cap: None)
        self.queue: collections.deque[Batch] = collections.deque()
        self.rows = 0  # rows waiting in the buffer
        self.shed = 0  # records sent to the dead-letter destination by the overflow policy
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.done = False
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._warned = False

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Stop reading; what is still buffered is not scored and not acknowledged (it is read again)."""
        self.stopping.set()
        self.source.stop()
        with self.cond:
            self.cond.notify_all()

    def __iter__(self) -> Iterator[Batch]:
        """Start the reader thread and return the batches as they come (empty ones when idle)."""
        self._thread = threading.Thread(target=self._read, name="adpipe-reader", daemon=True)
        self._thread.start()
        return self._batches()

    def _batches(self) -> Iterator[Batch]:
        while True:
            with self.cond:
                if not self.queue and not self.done and not self.stopping.is_set():
                    self.cond.wait(TICK_SECONDS)
                if self.error is not None:
                    raise self.error
                if self.stopping.is_set() or (self.done and not self.queue):
                    return
                batch = self.queue.popleft() if self.queue else None
                if batch is not None:
                    self.rows -= len(batch.data)
                    self.cond.notify_all()
            self.on_buffer(self.rows, self.capacity)
            yield batch if batch is not None else Batch(pd.DataFrame())

    def join(self, timeout: float = 10) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ reader thread
    def _read(self) -> None:
        try:
            for batch in self.source.batches(self.batch_rows):
                if self.stopping.is_set():
                    break
                if len(batch.data) or batch.meta:
                    self._put(batch)
        except BaseException as exc:  # handed to the scoring thread
            with self.cond:
                self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _put(self, batch: Batch) -> None:
        n = len(batch.data)
        with self.cond:
            while n and self.rows and self.rows + n > self.capacity and not self.stopping.is_set():
                if self.spec.overflow == "block" or not self._shed(batch):
                    self.cond.wait(TICK_SECONDS)
                    continue
                if self.spec.overflow == "drop_newest":
                    return  # shed: its acknowledgement marker is queued
                # drop_oldest: room was made; loop to check again
            self.queue.append(batch)
            self.rows += n
            self.cond.notify_all()
        self.on_buffer(self.rows, self.capacity)

    def _shed(self, incoming: Batch) -> bool:
        """Send one batch to the dead-letter destination; False when the source has none."""
        if self.spec.overflow == "drop_newest":
            victim, at = incoming, None
        else:
            at = next((i for i, b in enumerate(self.queue) if len(b.data)), None)
            if at is None:
                return False
            victim = self.queue[at]
        reason = f"buffer overflow: more than {self.capacity:,} records waiting ({self.spec.overflow})"
        rejected = victim.data.assign(**{REJECT_REASON: reason})
        if not self.source.dead_letter(victim, rejected):
            if not self._warned:
                log.warning("the buffer is full and the source has no dead-letter destination: waiting instead "
                            "of shedding records")
                self._warned = True
            return False
        marker = Batch(victim.data.iloc[:0], {**victim.meta, "shed": len(victim.data)})
        self.shed += len(victim.data)
        if at is None:
            self.queue.append(marker)
        else:
            self.queue[at] = marker
            self.rows -= len(victim.data)
        return True


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT call ``stop`` (finish the batch, commit, exit 0); a second SIGINT interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Clock:
    """``due()`` is True once every ``seconds`` (never when ``seconds`` is None)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        if self.seconds is None or time.monotonic() - self.last < self.seconds:
            return False
        self.last = time.monotonic()
        return True
