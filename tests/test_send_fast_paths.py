"""The fast paths of sending agree with the general ones they replace.

A campaign composes and sends each message once per recipient, so Rapport writes MIME
directly, signs DKIM with OpenSSL and reads the cards of a batch with set-based queries
(bench/send.py). Each fast path is checked here against the general path it stands in
for: the standard library's ``EmailMessage``, dkimpy's canonicalization and signatures
(verified by dkimpy), and ``build_context``/``compose`` one customer at a time.
"""

from __future__ import annotations

import base64
import email
import itertools
from datetime import timedelta
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import dkim
import nacl.encoding
import nacl.signing
import pytest
import sqlalchemy as sa
from babel import Locale
from babel.numbers import format_currency
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.runtime import Context

from rapport.customers.merge import merge_customers
from rapport.messaging.channels.base import OutgoingMessage
from rapport.messaging.channels.email_mime import (
    DkimKey,
    DkimKeyError,
    _library_mime,
    build_email,
    relaxed_body,
)
from rapport.messaging.compose import Recipient, Tracking, compose, compose_many
from rapport.messaging.outbox import claim_due
from rapport.messaging.suppressions import normalize_address
from rapport.messaging.templates.compile import HTML_ENV
from rapport.messaging.templates.filters import money, plural
from rapport.messaging.templates.render import build_context, build_contexts
from rapport.messaging.templates.store import create_template
from rapport.messaging.tracking import Links
from rapport.store.engine import writing
from rapport.store.tables import cart_items, carts, consents, customers, outbox
from tests.conftest import T0

SENDER = "Shop <news@shop.example>"


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def outgoing(**kw: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "id": "campaign:1:customer:2",
        "channel": "email",
        "to": "anna@example.com",
        "subject": "Скидка для вас",
        "body_text": "Привет, Анна!\nВаша скидка 10 %.",
        "body_html": "<p>Привет, <b>Анна</b>!</p>",
    }
    return OutgoingMessage(**(base | kw))


def reference(msg: OutgoingMessage, fast: bytes) -> EmailMessage:
    """What the standard library makes of the same headers and parts."""
    mine = parsed(fast)
    headers = [
        ("From", msg.headers.get("From") or SENDER),
        ("To", msg.to),
        ("Subject", msg.subject or ""),
        ("Date", str(mine["Date"])),
        ("Message-ID", str(mine["Message-ID"])),
    ]
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post"):
        if mine[name] is not None:
            headers.append((name, str(mine[name])))
    headers += [(k, v) for k, v in msg.headers.items() if k != "From"]
    return parsed(_library_mime(headers, msg.body_text or "", msg.body_html or None))


def parts(mime: EmailMessage) -> dict[str, str]:
    found = [mime] if not mime.is_multipart() else list(mime.iter_parts())
    return {
        p.get_content_type(): p.get_content().replace("\r\n", "\n")  # type: ignore[attr-defined]
        for p in found
    }


CASES = [
    outgoing(),
    outgoing(body_html=None),
    outgoing(subject="", body_text=""),
    outgoing(subject="A plain ASCII subject that is long enough to be folded somewhere " * 3),
    outgoing(subject="Смешанный subject with =?utf-8?q?lookalike?= and " + "слова " * 30),
    outgoing(headers={"From": 'Магазин "Лучший" <news@shop.example>', "X-Campaign": "7"}),
    outgoing(headers={"From": '"Shop, Inc." <news@shop.example>', "Reply-To": "Help <h@s.ex>"}),
    outgoing(
        data={
            "unsubscribe_url": "https://crm.shop.example/u/" + "A" * 120,
            "unsubscribe_mailto": "unsub@shop.example",
        }
    ),
    outgoing(
        body_text=".\n.leading dot\nFrom the start\ntrailing spaces   \n\ttab\n\n\n",
        body_html="<p>" + "x" * 3000 + "</p>\n<pre>  two  spaces\t</pre>\n.\n",
    ),
    outgoing(body_text="ascii only\nshort lines\n", body_html="<p>ascii</p>"),
    outgoing(body_text="Ж" * 5000, body_html="<p>" + "Ж" * 5000 + "</p>"),
]


@pytest.mark.parametrize("msg", CASES, ids=range(len(CASES)))
def test_direct_mime_reads_like_the_standard_librarys(msg: OutgoingMessage) -> None:
    raw = build_email(msg, sender=SENDER, id_domain="shop.example")
    assert raw.isascii(), "never 8bit: a relay's downgrade would break DKIM"
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    mine, ref = parsed(raw), reference(msg, raw)
    for name in ("From", "To", "Subject", "Message-ID", "Reply-To", "X-Campaign"):
        assert str(mine[name] or "") == str(ref[name] or ""), name
    assert mine["List-Unsubscribe"] == ref["List-Unsubscribe"]
    assert mine["List-Unsubscribe-Post"] == ref["List-Unsubscribe-Post"]
    assert mine["MIME-Version"] == "1.0"
    assert mine.get_content_type() == ref.get_content_type()
    assert parts(mine) == parts(ref)


def test_unusual_values_take_the_general_path() -> None:
    for msg in (outgoing(to="анна@пример.рф"), outgoing(subject="a =?utf-8?q?b?= c")):
        raw = build_email(msg, sender=SENDER, id_domain="shop.example")
        assert raw.isascii()
        assert b"===============" in raw  # the standard library's boundary
    raw = build_email(
        outgoing(to="Anna Example <anna@example.com>"), sender=SENDER, id_domain="x.example"
    )
    assert parsed(raw)["To"].addresses[0].addr_spec == "anna@example.com"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nBcc: victim@example.com"}, {"X-Evil": "a\nb"}, {"Bad Name": "x"}],
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build_email(outgoing(headers=headers), sender=SENDER, id_domain="shop.example")


# -- DKIM ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"  ", b"\r\n", b"a", b".", b"\r", b"\n"])))
def test_relaxed_body_is_dkimpys(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


def _keys() -> tuple[tuple[DkimKey, ...], dict[bytes, bytes]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed = nacl.signing.SigningKey.generate()
    keys = (
        DkimKey("shop.example", "r", pem, "rsa"),
        DkimKey("shop.example", "e", ed.encode(encoder=nacl.encoding.Base64Encoder), "ed25519"),
    )
    dns = {
        b"r._domainkey.shop.example.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public),
        b"e._domainkey.shop.example.": b"v=DKIM1; k=ed25519; p="
        + ed.verify_key.encode(encoder=nacl.encoding.Base64Encoder),
    }
    return keys, dns


@pytest.mark.parametrize(
    "msg", [CASES[0], CASES[5], CASES[8], outgoing(to="анна@пример.рф")], ids=range(4)
)
def test_openssl_signatures_verify_with_dkimpy(msg: OutgoingMessage) -> None:
    keys, dns = _keys()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return dns.get(name, b"")

    raw = build_email(msg, sender=SENDER, id_domain="shop.example", keys=keys)
    for idx in range(2):
        assert dkim.DKIM(raw).verify(idx=idx, dnsfunc=dnsfunc), idx
    tampered = raw.replace(b"To: ", b"To: x", 1)
    assert not dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc)


def test_a_key_openssl_cannot_read_is_signed_by_dkimpy() -> None:
    """dkimpy takes the bare base64 body of a PEM key; such a key still signs."""
    keys, dns = _keys()
    pem = keys[0].private_key
    odd = DkimKey("shop.example", "r", pem.replace(b"RSA PRIVATE KEY", b"PRIVATE KEY"), "rsa")
    raw = build_email(CASES[0], sender=SENDER, id_domain="shop.example", keys=(odd,))
    assert dkim.DKIM(raw).verify(dnsfunc=lambda name, timeout=5: dns.get(name, b""))


# -- a batch of cards ------------------------------------------------------------------

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ customer.first_name }} ({{ customer.city }}), {{ customer.orders_count }}:
{% for p in products %}<a href="{{ p.url }}">{{ p.name }}</a> {% endfor %}
{% if customer.cart %}{{ customer.cart["items"]|length }} in cart{% endif %}
{% for c in customer.consents %}{{ c.channel }}={{ c.status }} {% endfor %}
{{ event.name }} {{ loyalty.balance }}</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>"""


def _customer(conn: sa.Connection, **values: Any) -> int:
    row = {"created_at": T0, "updated_at": T0, "traits": {"vip": True}} | values
    return int(
        conn.execute(customers.insert().values(**row).returning(customers.c.id)).scalar_one()
    )


def _cart(conn: sa.Connection, cid: int, name: str, age_days: int, items: int) -> None:
    at = T0 - timedelta(days=age_days)
    pk = conn.execute(
        carts.insert()
        .values(customer_id=cid, cart_id=name, status="open", created_at=at, updated_at=at)
        .returning(carts.c.id)
    ).scalar_one()
    for i in range(items):
        conn.execute(
            cart_items.insert().values(
                cart_pk=pk, product_id=f"p{i}", quantity=i + 1, price=9.5, updated_at=at
            )
        )


def _people(engine: sa.Engine) -> list[int]:
    with writing(engine) as conn:
        plain = _customer(conn, first_name="Анна", email="anna@example.com", city="Казань")
        rich = _customer(
            conn,
            first_name="Bob",
            email="bob@example.com",
            locale="en-GB",
            timezone="Europe/London",
            orders_count=3,
            revenue=120.0,
            last_order_at=T0 - timedelta(days=10),
        )
        conn.execute(
            consents.insert(),
            [
                {"customer_id": rich, "channel": c, "status": s, "source": "t", "updated_at": T0}
                for c, s in (("sms", "unsubscribed"), ("email", "subscribed"))
            ],
        )
        _cart(conn, rich, "old", 5, 1)
        _cart(conn, rich, "new", 1, 2)
        survivor = _customer(conn, first_name="Vera", email="vera@example.com")
        merged = _customer(conn, first_name="V.", email="v@example.com")
        merge_customers(conn, survivor, merged, "test", T0)
        no_email = _customer(conn, first_name="Ivan")
    return [plain, rich, merged, no_email, 999_999]


def test_build_contexts_is_build_context_for_each(engine: sa.Engine) -> None:
    ids = _people(engine)
    products = {ids[0]: [{"name": "Socks", "url": "https://shop.example/p/1"}]}
    with engine.connect() as conn:
        batch = build_contexts(conn, ids, T0, products=products, loyalty={ids[1]: {"balance": 5}})
        for cid in ids:
            loyalty = {"balance": 5} if cid == ids[1] else None
            one = build_context(conn, cid, T0, products=products.get(cid, ()), loyalty=loyalty)
            assert batch.get(cid) == one, cid
    assert batch[ids[2]]["customer"]["first_name"] == "Vera"  # a merged id reads its survivor
    assert ids[-1] not in batch
    assert [i["product_id"] for i in batch[ids[1]]["customer"]["cart"]["items"]] == ["p0", "p1"]


def test_compose_many_is_compose_for_each(engine: sa.Engine) -> None:
    ids = _people(engine)
    links = Links("https://crm.shop.example", b"k" * 32)
    with writing(engine) as conn:
        template = create_template(
            conn,
            name="digest",
            channel="email",
            kind="mjml",
            default_locale="ru",
            variants={"ru": {"subject": "{{ customer.first_name }}", "body": MJML}},
            now=T0,
        )
    products = [{"name": "Шапка <вязаная>", "url": "https://shop.example/p/2"}]
    batch = [
        Recipient(ids[0], "k0", products=products),
        Recipient(ids[1], "k1", event={"name": "Cart Abandoned"}, loyalty={"balance": 7}),
        Recipient(ids[2], "k2"),
        Recipient(ids[3], "k3"),
        Recipient(ids[3], "k3b", recipient="ivan@example.com", data={"x": 1}),
        Recipient(ids[4], "k4", recipient="ghost@example.com"),
    ]
    with engine.connect() as conn:
        many = compose_many(conn, template, batch, now=T0, tracking=Tracking(links))
        one = [
            compose(
                conn,
                template,
                r.customer_id,
                key=r.key,
                now=T0,
                tracking=Tracking(links),
                products=r.products,
                event=r.event,
                loyalty=r.loyalty,
                recipient=r.recipient,
                data=r.data,
            )
            for r in batch
        ]
    assert many == one
    assert [m.skip_reason for m in many] == [
        None,
        None,
        "no email address",  # a merged profile's own row keeps no address
        "no email address",
        None,
        "customer does not exist",
    ]
    assert "Шапка &lt;вязаная&gt;" in (many[0].body_html or "")
    assert "2 in cart" in (many[1].body_html or "") and "Cart Abandoned 7" in many[1].body_text


def test_a_bad_signing_domain_is_a_configuration_error_not_a_bad_message() -> None:
    keys, _ = _keys()
    bad = DkimKey("shop.example; h=from", "r", keys[0].private_key, "rsa")
    with pytest.raises(DkimKeyError):
        build_email(CASES[0], sender=SENDER, id_domain="shop.example", keys=(bad,))


# -- headers with non-ASCII text ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*"ab XY?_=-!.,\tжЁё中é", "😀"]), min_size=1, max_size=150
    ).filter(lambda s: not s.isascii() and "=?" not in s)
)
def test_encoded_word_subjects_read_like_the_standard_librarys(subject: str) -> None:
    msg = outgoing(subject=subject)
    raw = build_email(msg, sender=SENDER, id_domain="shop.example")
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    subject_lines = head.split("Subject: ", 1)[1].split("\r\n")
    lines = [subject_lines[0], *itertools.takewhile(lambda x: x[:1] == " ", subject_lines[1:])]
    assert all(len(line) <= 76 for line in lines)
    assert str(parsed(raw)["Subject"]) == subject  # exactly, leading white space too
    # The library's own encoding can leave a run of white space between two encoded words,
    # where a decoder drops it (RFC 2047, 6.2): past the white space, the texts agree.
    assert _unspaced(str(reference(msg, raw)["Subject"])) == _unspaced(subject)


def _unspaced(text: str) -> str:
    return "".join(text.split())


# -- the suppression list's address form --------------------------------------------------


def _normal_by_parseaddr(address: str) -> str:
    text = address.strip()
    return (parseaddr(text)[1] or text).strip("<> ").lower()


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ09_+-.@ <>\"',;:()[]\\ж")), max_size=30))
def test_bare_addresses_normalise_as_parseaddr_does(address: str) -> None:
    assert normalize_address("email", address) == _normal_by_parseaddr(address)
    bare = f"{address.strip(' .@')}x@example.com"
    assert normalize_address("email", bare) == _normal_by_parseaddr(bare)


# -- filters: remembered answers are Babel's ---------------------------------------------


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_money_and_plural_are_babels_answers_every_time(locale: str) -> None:
    ctx = Context(HTML_ENV, {"locale": locale}, "t", {})
    for _ in range(2):  # computed, then remembered
        for amount in ("0", "1", "1.5", "4990", "4990.00", "1234567.891", "-12.5"):
            for currency in ("RUB", "usd", "EUR"):
                for digits in (None, 0, 2):
                    fmt = None
                    if digits == 0:
                        fmt = Locale.parse(locale).currency_formats["standard"].pattern
                        fmt = fmt.replace(".00", "")
                    want = format_currency(
                        Decimal(amount),
                        currency.upper(),
                        format=fmt,
                        locale=locale,
                        currency_digits=digits != 0,
                    )
                    assert money(ctx, amount, currency, digits) == want
        for n in ("0", "1", "2", "5", "11", "21", "1.5", "101"):
            category = Locale.parse(locale).plural_form(Decimal(n))
            word = plural(ctx, n, "one", "few", "many")
            assert word == {"one": "one", "few": "few", "many": "many"}.get(
                category, "few" if locale == "ru" else "many"
            )


# -- claiming: the oldest due rows over every status -------------------------------------


def test_claim_takes_the_oldest_due_rows_whatever_their_status(engine: sa.Engine) -> None:
    """Queued, failed and lease-expired rows are found one status at a time and merged:
    the rows claimed are the oldest due ones overall, never one that is not due."""
    now = T0 + timedelta(hours=1)
    plan: list[tuple[str, int, int | None]] = []  # status, minutes before now, lease
    for i in range(60):
        status = ("queued", "failed", "sending", "sent", "dead", "skipped")[i % 6]
        minutes = (i * 7) % 50 - 10  # some in the future: not due yet
        lease = None if status != "sending" else (-1 if i % 4 else 1)
        plan.append((status, minutes, lease))
    base = {
        "channel": "email",
        "recipient": "a@example.com",
        "body_text": "x",
        "headers": {},
        "data": {},
        "fallback": [],
        "attempts": 1,
        "created_at": T0,
        "updated_at": T0,
    }
    with writing(engine) as conn:
        for i, (status, minutes, lease) in enumerate(plan):
            conn.execute(
                outbox.insert().values(
                    **base,
                    idempotency_key=f"claim-order-{i}",
                    status=status,
                    next_attempt_at=now - timedelta(minutes=minutes),
                    claimed_until=None if lease is None else now + timedelta(minutes=lease),
                )
            )
        conn.execute(  # another channel is never taken
            outbox.insert().values(
                **(base | {"channel": "sms"}),
                idempotency_key="claim-order-sms",
                status="queued",
                next_attempt_at=T0,
            )
        )
    with engine.connect() as conn:
        everything = conn.execute(sa.select(outbox).where(outbox.c.channel == "email")).all()
    due = sorted(
        (
            r
            for r in everything
            if (r.status in ("queued", "failed") and r.next_attempt_at <= now)
            or (r.status == "sending" and r.claimed_until < now)
        ),
        key=lambda r: (r.next_attempt_at, r.id),
    )
    assert {r.status for r in due} == {"queued", "failed", "sending"}
    order = [r.id for r in due]
    when = {r.id: r.next_attempt_at for r in due}
    assert len(order) > 12
    left = set(order)
    for n in range(0, len(order) + 6, 6):  # the last claim finds nothing left
        with writing(engine) as conn:
            claimed = claim_due(conn, "email", 6, now, "w", now + timedelta(minutes=5))
        assert all(r.status == "sending" and r.claimed_by == "w" for r in claimed)
        ids = {r.id for r in claimed}
        assert len(ids) == min(6, len(left)) and ids <= left
        left -= ids
        # The oldest first; rows due at the same instant in the index's order, which on
        # SQLite is by id.
        assert all(when[i] <= when[j] for i in ids for j in left)
        if engine.dialect.name == "sqlite":
            assert ids == set(order[n : n + 6])
    assert not left
