"""Series in the store: create, read, change, pause; and looking a code up.

Every write runs in the caller's transaction and checks everything first, so a refused
change stores nothing. A series keeps its name (scenarios refer to it) and its code mode
once it has codes (the codes would no longer fit it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rapport.analytics.export import to_csv
from rapport.errors import InvalidInput, Problem
from rapport.loyalty.coupons.errors import CouponError
from rapport.loyalty.coupons.model import (
    SeriesSettings,
    parse_settings,
    settings_from_store,
)
from rapport.store.tables import (
    categories,
    coupon_codes,
    coupon_redemptions,
    coupon_series,
)


@dataclass(frozen=True)
class Series:
    id: int
    name: str
    settings: SeriesSettings
    paused: bool
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.settings.model_dump(mode="json"),
            "paused": self.paused,
            "offer": self.settings.describe(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _series(row: Any) -> Series:
    return Series(
        id=int(row.id),
        name=row.name,
        settings=settings_from_store(row.name, row.settings),
        paused=bool(row.paused),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _unknown_categories(conn: sa.Connection, settings: SeriesSettings, where: str) -> list[Problem]:
    """Category ids the catalog does not have: a typo would make the coupon useless."""
    wanted = set(settings.include_categories) | set(settings.exclude_categories)
    if not wanted:
        return []
    known = set(
        conn.execute(sa.select(categories.c.id).where(categories.c.id.in_(wanted))).scalars()
    )
    at = (where + ".") if where else ""
    problems = []
    for field in ("include_categories", "exclude_categories"):
        for i, cid in enumerate(getattr(settings, field)):
            if cid not in known:
                problems.append(Problem(f"{at}{field}[{i}]", f"no category {cid!r} in the catalog"))
    return problems


def _code_owner(conn: sa.Connection, code: str) -> str | None:
    row = conn.execute(
        sa.select(coupon_series.c.name)
        .join(coupon_codes, coupon_codes.c.series_id == coupon_series.c.id)
        .where(coupon_codes.c.code == code)
    ).first()
    return None if row is None else str(row.name)


def create_series(
    conn: sa.Connection, settings: SeriesSettings, now: datetime, where: str = "series"
) -> Series:
    """A new series; a shared one gets its promo code row at once."""
    problems = _unknown_categories(conn, settings, where)
    if problems:
        raise InvalidInput(problems)
    taken = conn.execute(
        sa.select(coupon_series.c.id).where(coupon_series.c.name == settings.name)
    ).first()
    if taken is not None:
        raise CouponError(409, f"a coupon series named {settings.name!r} already exists")
    if settings.shared_code is not None:
        owner = _code_owner(conn, settings.shared_code)
        if owner is not None:
            raise CouponError(
                409, f"the code {settings.shared_code} already exists (series {owner})"
            )
    series_id = conn.execute(
        coupon_series.insert()
        .values(
            name=settings.name,
            settings=settings.stored(),
            paused=False,
            created_at=now,
            updated_at=now,
        )
        .returning(coupon_series.c.id)
    ).scalar_one()
    if settings.shared_code is not None:
        conn.execute(
            coupon_codes.insert().values(
                series_id=series_id, code=settings.shared_code, uses=0, created_at=now
            )
        )
    return get_series(conn, settings.name)


def get_series(conn: sa.Connection, name: str) -> Series:
    row = conn.execute(sa.select(coupon_series).where(coupon_series.c.name == name)).first()
    if row is None:
        raise CouponError(404, f"no coupon series named {name!r}")
    return _series(row)


def series_by_id(conn: sa.Connection, series_id: int) -> Series:
    row = conn.execute(sa.select(coupon_series).where(coupon_series.c.id == series_id)).one()
    return _series(row)


def all_series(conn: sa.Connection) -> list[Series]:
    rows = conn.execute(sa.select(coupon_series).order_by(coupon_series.c.name))
    return [_series(r) for r in rows]


def series_counts(conn: sa.Connection, series_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per series: codes, codes issued to customers, uses (not given back)."""
    found: dict[int, dict[str, int]] = {
        sid: {"codes": 0, "issued": 0, "uses": 0} for sid in series_ids
    }
    if not series_ids:
        return found
    c = coupon_codes.c
    for row in conn.execute(
        sa.select(c.series_id, sa.func.count(), sa.func.count(c.customer_id))
        .where(c.series_id.in_(series_ids))
        .group_by(c.series_id)
    ):
        found[int(row[0])].update(codes=int(row[1]), issued=int(row[2]))
    r = coupon_redemptions.c
    for row in conn.execute(
        sa.select(r.series_id, sa.func.count())
        .where(r.series_id.in_(series_ids), r.released_at.is_(None))
        .group_by(r.series_id)
    ):
        found[int(row[0])]["uses"] = int(row[1])
    return found


def update_series(
    conn: sa.Connection, name: str, changes: dict[str, Any], now: datetime, where: str = "body"
) -> Series:
    """Change some settings; the result is checked as a whole, as at creation."""
    current = get_series(conn, name)
    at = (where + ".") if where else ""
    if "name" in changes and changes["name"] != name:
        raise InvalidInput([Problem(f"{at}name", "a series keeps its name (scenarios use it)")])
    merged = {**current.settings.model_dump(mode="json"), **changes, "name": name}
    settings = parse_settings(merged, where)
    problems = _unknown_categories(conn, settings, where)
    if problems:
        raise InvalidInput(problems)
    codes = conn.execute(
        sa.select(sa.func.count())
        .select_from(coupon_codes)
        .where(coupon_codes.c.series_id == current.id)
    ).scalar_one()
    if settings.codes != current.settings.codes and codes:
        raise InvalidInput(
            [
                Problem(
                    f"{at}codes",
                    f"the series has {codes:,} codes: its mode stays {current.settings.codes}",
                )
            ]
        )
    if settings.shared_code is not None and settings.shared_code != current.settings.shared_code:
        owner = _code_owner(conn, settings.shared_code)
        if owner is not None:
            raise CouponError(
                409, f"the code {settings.shared_code} already exists (series {owner})"
            )
        if current.settings.shared_code is None:
            conn.execute(
                coupon_codes.insert().values(
                    series_id=current.id, code=settings.shared_code, uses=0, created_at=now
                )
            )
        else:
            conn.execute(
                coupon_codes.update()
                .where(
                    coupon_codes.c.series_id == current.id,
                    coupon_codes.c.code == current.settings.shared_code,
                )
                .values(code=settings.shared_code)
            )
    conn.execute(
        coupon_series.update()
        .where(coupon_series.c.id == current.id)
        .values(settings=settings.stored(), updated_at=now)
    )
    return get_series(conn, name)


def set_paused(conn: sa.Connection, name: str, paused: bool, now: datetime) -> Series:
    """A paused series refuses every code at the checkout and issues none."""
    current = get_series(conn, name)
    conn.execute(
        coupon_series.update()
        .where(coupon_series.c.id == current.id)
        .values(paused=paused, updated_at=now)
    )
    return get_series(conn, name)


CODE_COLUMNS = ["code", "customer_id", "issued_at", "expires_at", "uses"]


def series_codes_csv(conn: sa.Connection, name: str) -> str:
    """Every code of the series with its owner, issue time, end and uses, as CSV: for
    printing, or a shop's own import. The API and the UI answer with this same text."""
    series = get_series(conn, name)
    c = coupon_codes.c
    rows = conn.execute(
        sa.select(*(c[k] for k in CODE_COLUMNS)).where(c.series_id == series.id).order_by(c.id)
    ).mappings()
    return to_csv([dict(r) for r in rows], CODE_COLUMNS)
