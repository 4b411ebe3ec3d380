"""Group commit for ingest: requests that arrive together share one transaction.

Parsing and validation happen on the request; only valid batches are queued. One writer
thread drains the queue and stores everything waiting in a single transaction, so the
commit cost is paid once per group instead of once per request. If a group fails, each
request in it is retried alone so one bad request cannot fail its neighbours.

With queued ingest the group is appended to the inbox instead of applied: the same group
commit, a far cheaper transaction, and the applier (``rapport.inbox_applier``) is woken.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from rapport.ingest import inbox
from rapport.ingest.incoming import Incoming
from rapport.pipeline import IngestResult, Pipeline
from rapport.store.engine import writing

_STOP = object()


class IngestWriter:
    def __init__(
        self,
        pipeline: Pipeline,
        max_group_messages: int = 2000,
        *,
        queued: bool = False,
        on_appended: Callable[[], None] = lambda: None,
    ) -> None:
        self.pipeline = pipeline
        self.max_group = max_group_messages
        self.queued = queued
        self.on_appended = on_appended
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rapport-ingest", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._started = False

    def submit(
        self, batch: list[Incoming], entries: list[inbox.Entry] | None = None
    ) -> Future[IngestResult]:
        """Store a validated batch; with queued ingest, ``entries`` (the request as the
        inbox keeps it, a row per lane) are what gets stored, and the future resolves once
        they are in the inbox."""
        future: Future[IngestResult] = Future()
        if not self._started:
            future.set_exception(RuntimeError("the ingest writer is not running"))
            return future
        if self.queued and entries is None:
            future.set_exception(RuntimeError("queued ingest needs the request's inbox entries"))
            return future
        self._queue.put(((entries if self.queued else batch), future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            group = [item]
            size = _size(item[0])  # type: ignore[index]
            stop = False
            while size < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
                size += _size(nxt[0])  # type: ignore[index]
            if self.queued:
                self._append(group)  # type: ignore[arg-type]
            else:
                self._store(group)  # type: ignore[arg-type]
            if stop:
                return

    def _store(self, group: list[tuple[list[Incoming], Future[IngestResult]]]) -> None:
        if len(group) > 1:
            combined = [msg for batch, _ in group for msg in batch]
            try:
                result = self.pipeline.ingest(combined)
            except Exception:  # retried one by one below, so each gets its own answer
                pass
            else:
                start = 0
                for batch, future in group:
                    part = result.customer_ids[start : start + len(batch)]
                    start += len(batch)
                    future.set_result(
                        IngestResult(
                            stored=sum(1 for c in part if c is not None),
                            duplicates=sum(1 for c in part if c is None),
                            customer_ids=part,
                        )
                    )
                return
        for batch, future in group:
            try:
                future.set_result(self.pipeline.ingest(batch))
            except Exception as exc:
                future.set_exception(exc)

    def _append(self, group: list[tuple[list[inbox.Entry], Future[IngestResult]]]) -> None:
        try:
            with writing(self.pipeline.engine) as conn:
                inbox.append(conn, [entry for entries, _ in group for entry in entries])
        except Exception:  # one by one below, so each request gets its own answer
            for entries, future in group:
                try:
                    with writing(self.pipeline.engine) as conn:
                        inbox.append(conn, entries)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(IngestResult())
        else:
            for _, future in group:
                future.set_result(IngestResult())
        self.on_appended()


def _size(work: list[Incoming] | list[inbox.Entry]) -> int:
    """Messages in a queued item: a batch, or a request's inbox rows (their counts)."""
    if work and isinstance(work[0], inbox.Entry):
        return sum(e.messages for e in work)
    return len(work)
