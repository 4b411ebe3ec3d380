"""Generated codes: an alphabet nobody misreads, and inserts that never collide.

Codes are read off receipts and typed on phones, so the alphabet has no 0/O, 1/I/L.
Uniqueness is the store's (a unique index on ``coupon_codes.code``): each batch is
inserted with ON CONFLICT DO NOTHING, and the codes that lost a collision are drawn again,
so two processes generating at once cannot hand out the same code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rapport.loyalty.coupons.errors import CouponError
from rapport.loyalty.coupons.model import SeriesSettings
from rapport.store.engine import upsert
from rapport.store.fast import db_time, is_sqlite
from rapport.store.tables import coupon_codes

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
BATCH = 5_000
MAX_GENERATE = 1_000_000
# One web or API request makes at most this many (the command line, MAX_GENERATE).
MAX_PER_REQUEST = 100_000
# At most one code in this many possible ones is handed out: a guessed code then hits a
# real one with a chance below 1/GUESS_RATIO, and random draws rarely collide.
GUESS_RATIO = 10_000

_UNBIASED = 256 - 256 % len(ALPHABET)
_TO_LETTER = bytes(ord(ALPHABET[b % len(ALPHABET)]) if b < _UNBIASED else 0 for b in range(256))
_DROP = bytes(range(_UNBIASED, 256))


def normalize_code(text: str) -> str:
    """What a person typed, as codes are stored: no surrounding spaces, upper case."""
    return text.strip().upper()


def stored_key(key: str) -> str:
    """An idempotency key as stored (200 characters at most): a longer one by its hash."""
    if not key:
        raise ValueError("key: an idempotency key is required")
    if len(key) <= 200:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def random_code(settings: SeriesSettings) -> str:
    return random_codes(settings, 1)[0]


def random_codes(settings: SeriesSettings, count: int) -> list[str]:
    """``count`` codes from the system's CSPRNG, drawn in bulk: a byte below
    ``_UNBIASED`` maps to a letter without bias, the rest are dropped (in C, by
    ``bytes.translate``), so 100,000 codes take milliseconds."""
    need = count * settings.length
    drawn = b""
    while len(drawn) < need:
        chunk = os.urandom((need - len(drawn)) * 9 // 8 + 16)
        drawn += chunk.translate(_TO_LETTER, _DROP)
    text = drawn[:need].decode("ascii")
    n = settings.length
    return [settings.prefix + text[i * n : (i + 1) * n] for i in range(count)]


def capacity(settings: SeriesSettings) -> int:
    """How many codes of this prefix and length may exist before guessing gets easy."""
    return int(len(ALPHABET) ** settings.length // GUESS_RATIO)


def check_room(conn: sa.Connection, settings: SeriesSettings, count: int) -> None:
    """Refuse a generation that would make codes guessable (422, saying what to change)."""
    if count < 1 or count > MAX_GENERATE:
        raise CouponError(422, f"count: give 1 to {MAX_GENERATE:,} codes, not {count:,}")
    existing = conn.execute(
        sa.select(sa.func.count())
        .select_from(coupon_codes)
        .where(
            coupon_codes.c.code.startswith(settings.prefix, autoescape=True),
            sa.func.length(coupon_codes.c.code) == len(settings.prefix) + settings.length,
        )
    ).scalar_one()
    room = capacity(settings) - int(existing)
    if count > room:
        raise CouponError(
            422,
            f"count: codes of {settings.length} characters after {settings.prefix or 'no'} "
            f"prefix have room for {max(room, 0):,} more; raise the series' length",
        )


def code_expiry(settings: SeriesSettings, issued_at: datetime) -> datetime | None:
    """A code's own end: N days after issue, never after the series' end."""
    if settings.valid_days is None:
        return None
    end = issued_at + timedelta(days=settings.valid_days)
    if settings.valid_until is not None:
        end = min(end, settings.valid_until)
    return end


def insert_codes(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[str]:
    """Insert the rows whose code (and issue key) is free; the codes that went in."""
    if not rows:
        return []
    stmt = upsert(conn, coupon_codes).on_conflict_do_nothing().returning(coupon_codes.c.code)
    return [str(c) for c in conn.execute(stmt, rows).scalars().all()]


def _insert_printed(
    conn: sa.Connection,
    series_id: int,
    codes: list[str],
    expires_at: datetime | None,
    now: datetime,
) -> list[str]:
    """One INSERT per batch, straight to the driver (as store/fast.py does): PostgreSQL
    gets the codes as one array to unnest, SQLite one multi-row VALUES."""
    ends, made = db_time(conn, expires_at), db_time(conn, now)
    tail = " ON CONFLICT DO NOTHING RETURNING code"
    head = "INSERT INTO coupon_codes (series_id, code, expires_at, created_at, uses) "
    if not is_sqlite(conn):
        sql = head + "SELECT %s, c, %s, %s, 0 FROM unnest(%s::text[]) AS c" + tail
        return [str(r[0]) for r in conn.exec_driver_sql(sql, (series_id, ends, made, codes))]
    sql = head + "VALUES " + ", ".join(["(?, ?, ?, ?, 0)"] * len(codes)) + tail
    params = tuple(v for code in codes for v in (series_id, code, ends, made))
    return [str(r[0]) for r in conn.exec_driver_sql(sql, params)]


def generate_codes(
    conn: sa.Connection,
    series_id: int,
    settings: SeriesSettings,
    count: int,
    now: datetime,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """``count`` new printed codes of a unique series, in the caller's transaction.

    Set-based: batches of ``BATCH`` rows per statement; a batch's losers to a collision
    are drawn again in the next one. Printed codes belong to nobody; with ``valid_days``
    they end that many days after generation.
    """
    if settings.codes != "unique":
        raise CouponError(422, "codes: a shared series has its one code; generate needs unique")
    check_room(conn, settings, count)
    expires_at = code_expiry(settings, now)
    made: list[str] = []
    draws = 0
    while len(made) < count:
        want = min(BATCH, count - len(made))
        batch = sorted(set(random_codes(settings, want)))
        draws += 1
        if draws > 10 * (count // BATCH + 1):  # only a nearly full code space gets here
            raise CouponError(409, "codes: too many collisions; raise the series' length")
        made.extend(_insert_printed(conn, series_id, batch, expires_at, now))
        if on_progress is not None:
            on_progress(len(made))
    return made
