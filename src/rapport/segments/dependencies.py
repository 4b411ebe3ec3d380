"""What a rule reads, so the real-time step re-evaluates only the segments an event can touch.

An event can change a segment's membership only if the rule reads that event's name, a
customer field the event updates, a consent channel, another segment, or the loyalty
account (a ledger entry); and a rule whose
answer moves with time alone (sliding windows, days since, relative dates, anniversaries)
needs the sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rapport.segments.rules import Rule


@dataclass(frozen=True)
class Dependencies:
    """``events`` is every event name read; ``counter_events`` are read from the per-day
    counters and ``logged_events`` from the event log (property filters need it).
    ``customer_fields`` are columns of ``customers`` (``traits`` for any trait, with the
    trait names in ``traits``). ``every_event`` is true when the rule reads a field that
    every event changes (``events_count``, ``last_seen_at``, …).
    """

    events: frozenset[str] = frozenset()
    counter_events: frozenset[str] = frozenset()
    logged_events: frozenset[str] = frozenset()
    # For each logged event name, how many days back any condition reads it (None: all of
    # history), so the real-time loader fetches only that much of the log.
    logged_windows: Mapping[str, int | None] = field(default_factory=dict)
    # The same for the per-day counters: each name's widest window (None: every day).
    counter_windows: Mapping[str, int | None] = field(default_factory=dict)
    customer_fields: frozenset[str] = frozenset()
    traits: frozenset[str] = frozenset()
    consent_channels: frozenset[str] = frozenset()
    segments: frozenset[int] = frozenset()
    time_dependent: bool = False
    every_event: bool = False
    # Loyalty conditions: the account (tier, balance, pending) and, for expiring points,
    # the lots; a ledger change (a ``loyalty`` touch) re-checks the rule.
    loyalty: bool = False
    loyalty_lots: bool = False


@dataclass
class Collector:
    """Filled by each condition's ``collect``; frozen into ``Dependencies`` at the end."""

    counter_events: set[str] = field(default_factory=set)
    logged_events: set[str] = field(default_factory=set)
    logged_windows: dict[str, int | None] = field(default_factory=dict)
    counter_windows: dict[str, int | None] = field(default_factory=dict)
    customer_fields: set[str] = field(default_factory=set)
    traits: set[str] = field(default_factory=set)
    consent_channels: set[str] = field(default_factory=set)
    segments: set[int] = field(default_factory=set)
    time_dependent: bool = False
    every_event: bool = False
    loyalty: bool = False
    loyalty_lots: bool = False

    def read_log(self, name: str, days: int | None) -> None:
        """A condition reads event ``name`` from the log ``days`` back (None: ever)."""
        self.logged_events.add(name)
        _widen(self.logged_windows, name, days)

    def read_counters(self, name: str, days: int | None) -> None:
        """A condition reads the day counters of ``name`` ``days`` back (None: every day)."""
        self.counter_events.add(name)
        _widen(self.counter_windows, name, days)

    def freeze(self) -> Dependencies:
        return Dependencies(
            events=frozenset(self.counter_events | self.logged_events),
            counter_events=frozenset(self.counter_events),
            logged_events=frozenset(self.logged_events),
            logged_windows=dict(self.logged_windows),
            counter_windows=dict(self.counter_windows),
            customer_fields=frozenset(self.customer_fields),
            traits=frozenset(self.traits),
            consent_channels=frozenset(self.consent_channels),
            segments=frozenset(self.segments),
            time_dependent=self.time_dependent,
            every_event=self.every_event,
            loyalty=self.loyalty,
            loyalty_lots=self.loyalty_lots,
        )


def _widen(windows: dict[str, int | None], name: str, days: int | None) -> None:
    """Keep the widest reach per name: None (all of history) wins over any number."""
    if name in windows:
        known = windows[name]
        days = None if known is None or days is None else max(known, days)
    windows[name] = days


def dependencies(rule: Rule) -> Dependencies:
    collector = Collector()
    rule.collect(collector)
    return collector.freeze()
