"""The global control group: a stable share of customers kept out of all marketing.

Comparing them with everyone else measures what CRM as a whole earns (its incremental
revenue), which no single campaign's control group can: those customers still get every
other campaign and scenario. Membership is a hash of the customer id and a salt, the
segments' bucket arithmetic (``segments.bucket``) run twice, as campaigns draw their own
control group, but into 10,000 slots so the share can be set to 0.01 %::

    x = (id mod P + S) mod P                 S = sha256("global_control:" + salt) mod P
    x = mix(mix(x))                          mix(x) = ((x * x mod P) * 48271 + 16807) mod P
    member  ⇔  x mod 10000 < round(percent * 100)

The same arithmetic runs in Python (:func:`in_global_control`) and SQL
(:func:`in_global_control_sql`, SQLite and PostgreSQL alike), so every sender agrees. A
customer's membership never changes while ``percent`` and ``salt`` stay; raising the share
only adds customers (the threshold moves, the slots do not), lowering it only releases
some. A new salt draws a new group: the measurement starts again.

The policy (``messaging.policy.decide``) refuses marketing messages to members with the
reason ``global_control``; transactional messages still go.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from rapport.errors import InvalidInput, Problem
from rapport.segments.bucket import P, salt_number
from rapport.segments.config import read_setting, write_setting

SETTING = "global_control"
REASON = "global_control"  # the skip reason and the campaign audience status
MAX_PERCENT = 50.0
SLOTS = 10_000  # resolution 0.01 %
_A = 48_271  # segments.bucket's multiplier and increment
_C = 16_807
_MAX_SALT = 100


@dataclass(frozen=True)
class GlobalControl:
    """``percent`` 0 (off) to 50; ``salt`` picks which customers form the group."""

    percent: float
    salt: str

    @property
    def enabled(self) -> bool:
        return self.percent > 0

    def as_dict(self) -> dict[str, Any]:
        return {"percent": self.percent, "salt": self.salt}


OFF = GlobalControl(0.0, "")


def _threshold(control: GlobalControl) -> int:
    return round(control.percent * SLOTS / 100)


def _salt(control: GlobalControl) -> int:
    return salt_number(f"global_control:{control.salt}")


def slot_of(customer_id: int, control: GlobalControl) -> int:
    """The customer's slot 0…9999 under this salt."""
    x = (customer_id % P + _salt(control)) % P
    for _ in range(2):
        x = ((x * x % P) * _A + _C) % P
    return x % SLOTS


def in_global_control(customer_id: int, control: GlobalControl) -> bool:
    """Is this customer kept out of all marketing?"""
    return control.enabled and slot_of(customer_id, control) < _threshold(control)


def in_global_control_sql(
    customer_id: ColumnElement[int], control: GlobalControl
) -> ColumnElement[bool]:
    """:func:`in_global_control` as a SQL condition on a customer id column."""
    if not control.enabled:
        return sa.false()

    def lit(n: int) -> ColumnElement[Any]:
        return sa.literal_column(str(int(n)), sa.BigInteger)

    x: ColumnElement[Any] = (customer_id % lit(P) + lit(_salt(control))) % lit(P)
    for _ in range(2):
        x = ((x * x % lit(P)) * lit(_A) + lit(_C)) % lit(P)
    return x % lit(SLOTS) < lit(_threshold(control))


# -- settings ------------------------------------------------------------------------


def global_control(conn: sa.Connection) -> GlobalControl:
    """The stored setting; off when never set."""
    return control_from(read_setting(conn, SETTING))


def control_from(stored: Any) -> GlobalControl:
    """The setting from its stored document (None when never set: off)."""
    if not isinstance(stored, Mapping):
        return OFF
    return GlobalControl(float(stored.get("percent") or 0.0), str(stored.get("salt") or ""))


def parse_global_control(doc: Any, where: str = "global_control") -> GlobalControl:
    """A ``{"percent": 5, "salt": "..."}`` document; InvalidInput names each bad field.

    ``salt`` may be left out (or empty): :func:`save_global_control` keeps the stored one,
    or draws one when the group is first enabled.
    """
    if isinstance(doc, GlobalControl):
        doc = doc.as_dict()
    if not isinstance(doc, Mapping):
        raise InvalidInput([Problem(where, "an object with percent (0–50) and salt")])
    problems: list[Problem] = []
    for key in doc:
        if key not in ("percent", "salt"):
            problems.append(Problem(f"{where}.{key}", "unknown field (percent, salt)"))
    percent = doc.get("percent", 0)
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        problems.append(Problem(f"{where}.percent", "must be a number from 0 to 50"))
        percent = 0.0
    elif not math.isfinite(percent) or not 0 <= percent <= MAX_PERCENT:
        problems.append(Problem(f"{where}.percent", f"{percent} is not from 0 to 50"))
    salt = doc.get("salt") or ""
    if not isinstance(salt, str):
        problems.append(Problem(f"{where}.salt", "must be a string"))
        salt = ""
    elif len(salt) > _MAX_SALT or salt.strip() != salt:
        problems.append(
            Problem(f"{where}.salt", f"at most {_MAX_SALT} characters, no surrounding spaces")
        )
    if problems:
        raise InvalidInput(problems)
    return GlobalControl(float(percent), salt)


def save_global_control(conn: sa.Connection, control: Any, now: datetime) -> GlobalControl:
    """Validate and store; returns what is stored (with the salt it will use).

    Without a salt the stored one is kept, so changing the share keeps the group's
    members (raising it only adds); the first time the group is enabled a random salt is
    drawn, so no two installations hold out the same ids.
    """
    wanted = parse_global_control(control)
    salt = wanted.salt or global_control(conn).salt
    if not salt and wanted.enabled:
        salt = secrets.token_hex(8)
    saved = GlobalControl(wanted.percent, salt)
    write_setting(conn, SETTING, saved.as_dict(), now)
    return saved
