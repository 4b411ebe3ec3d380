"""Ingest lanes: the queued-ingest inbox split so that several appliers run side by side.

One applier spends about half of each event in Python and half waiting for the database,
one event after another. Appliers in separate processes overlap the two, but two appliers
taking whole requests raced for the same new customers (both create the profile of one
anonymous id; one fails on the unique identity and the group is redone). So the server
splits each request at acknowledgement by customer: a message goes to the lane of its
``userId`` (else its ``anonymousId``, else an alias's ``previousId``), hashed, and each
applier takes its own lanes. Messages with the same identifier stay in one lane, in their
order.

What lanes give up: a customer's messages under *different* identifiers (anonymous
browsing, then signed-in events that carry only the user id) may be applied in another
order or at the same time. Identity resolution joins them into one card either way (a
merge where one transaction would have attached), and a race on a new identifier is
retried by the pipeline. One lane (the default) keeps the arrival order of everything.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from rapport.ingest.incoming import Incoming

# Lanes a server may split into; an applier's share is a set of lane numbers below this.
MAX_LANES = 16


def lane_of(msg: Incoming, lanes: int) -> int:
    """The lane of a message: the same for every message with its identifier."""
    key = msg.user_id or msg.anonymous_id or msg.previous_id or ""
    return zlib.crc32(key.encode()) % lanes


def split(batch: Sequence[Incoming], lanes: int) -> list[tuple[int, list[Incoming]]]:
    """The non-empty lanes of a batch, each with its messages in the batch's order."""
    if lanes <= 1:
        return [(0, list(batch))] if batch else []
    out: dict[int, list[Incoming]] = {}
    for msg in batch:
        out.setdefault(lane_of(msg, lanes), []).append(msg)
    return sorted(out.items())


def share(applier: int, appliers: int) -> list[int]:
    """The lanes applier number ``applier`` of ``appliers`` takes: every lane whose number
    is ``applier`` modulo ``appliers``, so any number of appliers covers any split (the
    server's ``ingest_lanes`` and the appliers' count need not agree; they overlap best
    when they do)."""
    if not 0 <= applier < appliers <= MAX_LANES:
        raise ValueError(
            f"applier {applier} of {appliers}: needs 0 ≤ applier < appliers ≤ {MAX_LANES}"
        )
    return list(range(applier, MAX_LANES, appliers))
