"""The communication policy for many small groups of messages decided at one moment.

A worker's round of scenario steps makes its messages group by group (one group per
scenario step reached, often two or three customers each), and :func:`policy.decide`
costs the same handful of queries whatever the size of the group: asked group by group,
the policy was a quarter of the cost of a send. A :class:`PolicyRound` reads, once for
the whole round, what every decision in it needs — the settings, the customers' facts,
and per channel the suppressed addresses, the consents and the frequency-cap counts —
and answers each group from memory with :func:`policy.judge`.

The round's own messages count towards the caps as they are queued: the caller hands
the events :func:`outbox.enqueue` returned to :meth:`PolicyRound.queued`, and each
``Message Queued`` (a row inserted and not skipped, fallbacks included) adds one to its
customer's count on its channel and across channels. So a later group is decided as if
the counts were read again from the outbox, and the answers are those :func:`decide`
would give, in the same order. (Only rows other transactions commit while the round runs
are not seen until the next round, where :func:`decide` might see them.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa

from rapport.messaging.outbox import QUEUED, Event
from rapport.messaging.policy import (
    DEFAULT_RANK,
    Decision,
    checked_request,
    control_refusals,
    judge,
    load_settings,
    needs_consents,
)
from rapport.messaging.policy_facts import (
    Reachable,
    Seen,
    consent_statuses,
    customer_facts,
    recent_counts,
    suppressed_customers,
)


class PolicyRound:
    """Decisions at ``now`` for the customers ``wanted`` on each channel, read at once.

    A customer or channel asked for later that was not in ``wanted`` is read when first
    asked (a few queries, as :func:`decide` would), so the answers never depend on what
    was announced."""

    def __init__(
        self, conn: sa.Connection, now: datetime, wanted: Mapping[str, Iterable[int]]
    ) -> None:
        self.conn = conn
        self.now = now
        self.policy, self.control = load_settings(conn)
        self.facts: dict[int, Reachable] = {}
        self._seen: dict[str, Seen] = {}
        self._read: dict[str, set[int]] = {}  # per channel, the customers read for it
        self._added: Counter[tuple[int, str]] = Counter()  # queued in this round
        self._added_anywhere: Counter[int] = Counter()
        for channel, ids in wanted.items():
            self._read_for(channel, list(dict.fromkeys(int(i) for i in ids)))

    def decide(
        self,
        customer_ids: Sequence[int],
        channel: str,
        priority: str = "marketing",
        *,
        rank: int = DEFAULT_RANK,
    ) -> dict[int, Decision]:
        """What :func:`policy.decide` answers for these customers now, without a query
        when the round read them already."""
        ids = checked_request(customer_ids, channel, priority, rank)
        missing = [cid for cid in ids if cid not in self._read.get(channel, ())]
        if missing:
            self._read_for(channel, missing)
        seen = self._seen[channel]
        counts = {
            cid: (
                seen.counts.get(cid, (0, 0))[0] + self._added[(cid, channel)],
                seen.counts.get(cid, (0, 0))[1] + self._added_anywhere[cid],
            )
            for cid in ids
        }
        now_seen = Seen(seen.facts, seen.in_control, seen.suppressed, seen.consents, counts)
        return judge(ids, channel, self.now, priority, rank, self.policy, now_seen)

    def queued(self, events: Iterable[Event]) -> None:
        """Count the messages just queued (their ``Message Queued`` events) for the caps."""
        for customer_id, name, properties in events:
            if name == QUEUED:
                self._added[(customer_id, str(properties.get("channel")))] += 1
                self._added_anywhere[customer_id] += 1

    def _read_for(self, channel: str, ids: list[int]) -> None:
        """Facts, control group, suppressions, consents and cap counts of ``ids`` on
        ``channel``, added to what the round holds."""
        conn, policy = self.conn, self.policy
        new = [cid for cid in ids if cid not in self.facts]
        if new:
            self.facts.update(customer_facts(conn, new))
        alive = [cid for cid in ids if cid in self.facts]
        rules = policy.rules(channel)
        suppressed = suppressed_customers(conn, channel, {cid: self.facts[cid] for cid in alive})
        consents = consent_statuses(conn, alive, channel) if needs_consents(rules, channel) else {}
        counts: dict[int, tuple[int, int]] = {}
        if rules.cap is not None or policy.global_cap is not None:
            read = recent_counts(conn, alive, channel, self.now, rules.cap, policy.global_cap)
            # What the round queued is in the outbox now, and is added when deciding.
            counts = {
                cid: (mine - self._added[(cid, channel)], total - self._added_anywhere[cid])
                for cid, (mine, total) in read.items()
            }
        before = self._seen.get(channel)
        if before is None:
            before = Seen(self.facts, set(), set(), {}, {})
        self._seen[channel] = Seen(
            self.facts,
            {*before.in_control, *control_refusals(alive, self.control)},
            {*before.suppressed, *suppressed},
            {**before.consents, **consents},
            {**before.counts, **counts},
        )
        self._read.setdefault(channel, set()).update(ids)
