"""Identity resolution: which profile does each message belong to.

The rules (docs/identity.md has them with examples):

1. A ``userId`` names one profile. An ``anonymousId`` seen with it joins that profile; if the
   anonymous profile was still anonymous it is merged in.
2. An email or phone that already belongs to another profile merges the two, unless both
   profiles carry different user ids: then the identifier stays with its owner and the
   conflict is noted in the event's ``context.rapport.identity_conflicts``. A message with
   no user id and a new anonymous id joins the profile that owns its email or phone.
3. In a merge the profile with a user id survives; between equals, the older one.
4. ``alias`` is an explicit instruction: the ``previousId`` profile is merged into the
   ``userId`` one even when both are known.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from rapport.customers.merge import merge_customers
from rapport.customers.profile import attach_identities, create_customers
from rapport.ingest.messages import Incoming
from rapport.store.fast import fetch, is_sqlite, key_test

Key = tuple[str, str]


class _Resolver:
    def __init__(self, conn: sa.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.owner: dict[Key, int] = {}
        self.user_of: dict[int, str | None] = {}
        self.redirect: dict[int, int] = {}
        self.pending: list[tuple[int, str, str]] = []
        self._next_placeholder = 0

    def load(self, keys: Iterable[Key]) -> None:
        """One query: who owns each identifier, and the user id of each owner."""
        wanted = set(keys)
        values = sorted({v for _, v in wanted})
        kinds = sorted({k for k, _ in wanted})
        step = 500 if is_sqlite(self.conn) else len(values) or 1  # SQLite's variable limit
        for start in range(0, len(values), step):
            # Both columns of the unique index, so it is searched, not scanned.
            kind_test, kind_params = key_test(self.conn, "i.kind", kinds, "text")
            value_test, value_params = key_test(
                self.conn, "i.value", values[start : start + step], "text"
            )
            rows = fetch(
                self.conn,
                "SELECT i.kind, i.value, i.customer_id, u.value FROM identities AS i "
                "LEFT JOIN identities AS u ON u.customer_id = i.customer_id "
                f"AND u.kind = 'user_id' WHERE {kind_test} AND {value_test}",
                [*kind_params, *value_params],
            )
            for kind, value, cid, user_id in rows:
                if (kind, value) in wanted:
                    self.owner[(kind, value)] = cid
                    if self.user_of.get(cid) is None:
                        self.user_of[cid] = user_id

    def follow(self, cid: int) -> int:
        while cid in self.redirect:
            cid = self.redirect[cid]
        return cid

    def find(self, kind: str, value: str) -> int | None:
        cid = self.owner.get((kind, value))
        return None if cid is None else self.follow(cid)

    def create(self) -> int:
        """A new profile, written only at the end (see ``materialize``): a negative id."""
        self._next_placeholder -= 1
        cid = self._next_placeholder
        self.user_of[cid] = None
        return cid

    def attach(self, cid: int, kind: str, value: str) -> None:
        self.pending.append((cid, kind, value))
        self.owner[(kind, value)] = cid
        if kind == "user_id" and self.user_of.get(cid) is None:
            self.user_of[cid] = value

    def merge(self, a: int, b: int, reason: str) -> int:
        """Merge two profiles; returns the survivor (rule 3).

        A profile born in this batch has nothing stored yet, so it simply folds into the
        other one: the result is the same person with the same identifiers.
        """
        if a < 0 or b < 0:
            survivor, loser = (b, a) if a < 0 and (b > 0 or a < b) else (a, b)
        else:
            ua, ub = self.user_of.get(a), self.user_of.get(b)
            if (ua is None) != (ub is None):
                survivor, loser = (a, b) if ua is not None else (b, a)
            else:
                survivor, loser = min(a, b), max(a, b)
            merge_customers(self.conn, survivor, loser, reason, self.now)
        self.redirect[loser] = survivor
        self.user_of[survivor] = self.user_of.get(survivor) or self.user_of.get(loser)
        return survivor

    def materialize(self) -> None:
        """Write the batch's new profiles and identifiers with one statement each."""
        # Only profiles still standing: one folded into another in this batch is not created.
        placeholders = sorted(
            {self.follow(cid) for cid, _, _ in self.pending if self.follow(cid) < 0},
            reverse=True,
        )
        if placeholders:
            new_ids = create_customers(self.conn, len(placeholders), self.now)
            real = dict(zip(placeholders, new_ids, strict=True))
            for cid, target in real.items():
                self.redirect[cid] = target
        rows = []
        for cid, kind, value in self.pending:
            rows.append(
                {
                    "customer_id": self.follow(cid),
                    "kind": kind,
                    "value": value,
                    "created_at": self.now,
                }
            )
        attach_identities(self.conn, rows)
        self.pending.clear()

    def can_merge(self, a: int, b: int) -> bool:
        ua, ub = self.user_of.get(a), self.user_of.get(b)
        return ua is None or ub is None or ua == ub

    def resolve_one(self, msg: Incoming) -> int:
        conflicts: list[str] = []
        target = self.find("user_id", msg.user_id) if msg.user_id else None

        if msg.anonymous_id:
            anon = self.find("anonymous_id", msg.anonymous_id)
            if anon is not None and anon != target:
                if target is None:
                    if msg.user_id is None or self.user_of.get(anon) is None:
                        target = anon
                    else:
                        conflicts.append(f"anonymous_id {msg.anonymous_id} belongs to another user")
                elif self.can_merge(anon, target):
                    target = self.merge(target, anon, "anonymous id seen with user id")
                else:
                    conflicts.append(f"anonymous_id {msg.anonymous_id} belongs to another user")

        if msg.type == "alias" and msg.previous_id:
            previous = self.find("user_id", msg.previous_id) or self.find(
                "anonymous_id", msg.previous_id
            )
            if previous is not None and previous != target:
                target = previous if target is None else self.merge(target, previous, "alias")

        if target is None and msg.user_id is None:
            # A new anonymous id with a known email or phone (a call matched by number)
            # belongs to that profile at once, rather than to a new one merged into it.
            target = next(
                (
                    owner
                    for kind, values in (("email", msg.emails), ("phone", msg.phones))
                    for value in values
                    if (owner := self.find(kind, value)) is not None
                ),
                None,
            )
        if target is None:
            target = self.create()
        if msg.user_id and self.find("user_id", msg.user_id) is None:
            self.attach(target, "user_id", msg.user_id)
        if msg.anonymous_id and self.find("anonymous_id", msg.anonymous_id) is None:
            self.attach(target, "anonymous_id", msg.anonymous_id)

        for kind, values in (("email", msg.emails), ("phone", msg.phones)):
            for value in values:
                owner = self.find(kind, value)
                if owner is None:
                    self.attach(target, kind, value)
                elif owner != target:
                    if self.can_merge(owner, target):
                        target = self.merge(target, owner, f"same {kind}")
                    else:
                        conflicts.append(f"{kind} {value} belongs to another user")
        if conflicts:
            msg.context = {**msg.context, "rapport": {"identity_conflicts": conflicts}}
        return target


def _keys(msg: Incoming) -> Iterable[Key]:
    if msg.user_id:
        yield ("user_id", msg.user_id)
    if msg.anonymous_id:
        yield ("anonymous_id", msg.anonymous_id)
    if msg.previous_id:
        yield ("user_id", msg.previous_id)
        yield ("anonymous_id", msg.previous_id)
    for email in msg.emails:
        yield ("email", email)
    for phone in msg.phones:
        yield ("phone", phone)


def resolve(conn: sa.Connection, batch: list[Incoming], now: datetime) -> list[int]:
    """The customer id of each message, creating and merging profiles as the rules say."""
    resolver = _Resolver(conn, now)
    resolver.load(key for msg in batch for key in _keys(msg))
    found = [resolver.resolve_one(msg) for msg in batch]
    resolver.materialize()
    return [resolver.follow(cid) for cid in found]
