"""Changing the channel configuration and trying a channel: the two operations both the
management API (``/api/channels``) and the settings page perform, kept here so the two
doors store and send exactly the same way.

A change is computed from the stored configuration, validated, and every backend is built
before anything is written (``backends.check_config``), all in the caller's transaction,
so the caller can write its audit entry beside it. A test sends one message now through
a fresh backend, not through the outbox: for a person waiting on a button.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rapport.messaging.backends import check_config, send_now
from rapport.messaging.channel_config import (
    CHANNEL_NAMES,
    ChannelsConfig,
    dump,
    load_channels,
    save_channels,
)
from rapport.messaging.channels.base import OutgoingMessage, SendResult

DEFAULT_TEST_SUBJECT = "Rapport channel test"
DEFAULT_TEST_TEXT = "This is a test message from Rapport."
TEST_MARK = "[TEST] "


@dataclass(frozen=True)
class ChannelsChange:
    before: ChannelsConfig
    after: ChannelsConfig

    @property
    def changed(self) -> list[str]:
        """The channels whose section differs, in the configuration's order."""
        old, new = dump(self.before), dump(self.after)
        return [c for c in CHANNEL_NAMES if old.get(c) != new.get(c)]

    def audit_entries(self) -> list[tuple[str, str, dict[str, object]]]:
        """One (action, channel, details) per changed channel: ``channel.update`` when it is
        set, ``channel.remove`` when it is no longer configured. The details name the
        backends before and after, never a setting's value: the sections hold secrets."""
        found: list[tuple[str, str, dict[str, object]]] = []
        for channel in self.changed:
            before = getattr(self.before, channel)
            after = getattr(self.after, channel)
            action = "channel.remove" if after is None else "channel.update"
            details: dict[str, object] = {
                "backend": getattr(after, "backend", None),
                "backend_before": getattr(before, "backend", None),
            }
            found.append((action, channel, details))
        return found


def change_channels(
    conn: sa.Connection,
    change: Callable[[ChannelsConfig], ChannelsConfig],
    now: datetime,
) -> ChannelsChange:
    """Apply ``change`` to the stored configuration and store the result.

    ``change`` raises InvalidInput (``parse_channels``, ``with_section``) for a bad
    document; a backend that cannot be made from a valid one is InvalidInput naming its
    channel. Either way nothing is written.
    """
    stored = load_channels(conn).config
    config = change(stored)
    check_config(config)
    save_channels(conn, config, now)
    return ChannelsChange(stored, config)


def outgoing_test_message(
    channel: str,
    to: str,
    subject: str = DEFAULT_TEST_SUBJECT,
    text: str = DEFAULT_TEST_TEXT,
) -> OutgoingMessage:
    return OutgoingMessage(
        id=f"test:{channel}:{uuid.uuid4().hex}",
        channel=channel,
        to=to,
        body_text=text,
        subject=f"{TEST_MARK}{subject}",
    )


def send_test(
    config: ChannelsConfig,
    channel: str,
    to: str,
    subject: str = DEFAULT_TEST_SUBJECT,
    text: str = DEFAULT_TEST_TEXT,
) -> SendResult:
    """Send one test message now through ``config``'s backend for ``channel``.

    Raises ``backends.ChannelNotConfigured`` for a channel without a section; whatever the
    provider says (or a backend error) comes back in the result's status and error. Call it
    from a thread with no running event loop (a plain FastAPI route runs in one).
    """
    return send_now(config, outgoing_test_message(channel, to, subject, text))


def audit_details_of_test(to: str, result: SendResult) -> dict[str, object]:
    """What the audit log keeps of a test (the channel's "last test" on the settings page):
    where it went and what the provider said."""
    return {
        "to": to[:300],
        "status": result.status,
        "provider_id": result.provider_id,
        "error": result.error,
    }
