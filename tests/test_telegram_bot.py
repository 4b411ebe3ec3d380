"""The Telegram bot's webhook: deep-link linking, the menu, stop/start, and bad calls."""

from __future__ import annotations

from datetime import timedelta
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rapport.catalog.products import upsert_products
from rapport.clock import SimulatedClock
from rapport.messaging import telegram_bot
from rapport.messaging.channel_config import ChannelsConfig, MemoryConfig, TelegramConfig
from rapport.messaging.recipients import recipient_for
from rapport.public_links import links_of
from rapport.segments.config import write_setting
from rapport.store.engine import writing
from rapport.store.tables import consents, telegram_chats
from tests.conftest import basic, bearer
from tests.helpers import event_rows, live_customers, table_counts

SECRET = "hook-secret_42"
BOT = "ShopBot"
CHAT = 777001
_updates = count(1)


def configure(engine: sa.Engine, clock: SimulatedClock, section: Any | None = None) -> None:
    if section is None:
        section = TelegramConfig(bot_token="123:TOKEN", bot_username=BOT, webhook_secret=SECRET)
    with writing(engine) as conn:
        config = ChannelsConfig(telegram=section)
        write_setting(conn, "channels", config.model_dump(mode="json"), clock.now())


class Bot:
    """Plays Telegram: posts updates to the webhook as Telegram would."""

    def __init__(self, client: TestClient, engine: sa.Engine, write_key: str, secret: str):
        self.client = client
        self.engine = engine
        self.write = basic(write_key)
        self.secret = bearer(secret)

    def post(self, update: Any, secret: str | None = SECRET, status: int = 200) -> Any:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        r = self.client.post("/telegram/webhook", json=update, headers=headers)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def say(
        self, text: str, chat: int = CHAT, language: str | None = None, kind: str = "private"
    ) -> Any:
        sender: dict[str, Any] = {"id": chat, "is_bot": False, "first_name": "Ann"}
        sender["username"] = "ann_tg"
        if language:
            sender["language_code"] = language
        n = next(_updates)
        return self.post(
            {
                "update_id": n,
                "message": {
                    "message_id": n,
                    "date": 1772366400,
                    "chat": {"id": chat, "type": kind},
                    "from": sender,
                    "text": text,
                },
            }
        )

    def customer(self, user: str, **traits: Any) -> int:
        r = self.client.post(
            "/v1/identify", json={"userId": user, "traits": traits}, headers=self.write
        )
        assert r.status_code == 200, r.text
        r = self.client.get("/api/customers", params={"user_id": user}, headers=self.secret)
        [found] = r.json()["customers"]
        return int(found["id"])

    def link(self, customer_id: int) -> str:
        r = self.client.get(f"/api/customers/{customer_id}/telegram-link", headers=self.secret)
        assert r.status_code == 200, r.text
        return str(r.json()["url"])

    def start(self, customer_id: int, chat: int = CHAT, **kwargs: Any) -> Any:
        [payload] = parse_qs(urlsplit(self.link(customer_id)).query)["start"]
        return self.say(f"/start {payload}", chat, **kwargs)

    def chat(self, chat: int = CHAT) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(telegram_chats).where(telegram_chats.c.chat_id == str(chat))
            ).first()

    def consent(self, customer_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(consents.c.status, consents.c.source).where(
                    consents.c.customer_id == customer_id, consents.c.channel == "telegram"
                )
            ).first()


@pytest.fixture
def bot(
    client: TestClient, engine: sa.Engine, clock: SimulatedClock, write_key: str, secret_key: str
) -> Bot:
    configure(engine, clock)
    return Bot(client, engine, write_key, secret_key)


def _buttons(reply: dict[str, Any]) -> list[str]:
    return [b["text"] for row in reply["reply_markup"]["keyboard"] for b in row]


def test_the_deep_link_carries_a_signed_customer_id(bot: Bot, app: Any):
    cid = bot.customer("u1")
    url = bot.link(cid)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "t.me", f"/{BOT}")
    [payload] = parse_qs(parts.query)["start"]
    assert len(payload) <= 64 and payload.replace("-", "").replace("_", "").isalnum()
    assert links_of(app).telegram_customer(payload) == cid


def test_start_with_a_valid_link_links_the_chat_and_opts_in(bot: Bot, clock: SimulatedClock):
    cid = bot.customer("u1", firstName="Анна")
    reply = bot.start(cid)
    assert reply["method"] == "sendMessage" and reply["chat_id"] == CHAT
    assert reply["text"].startswith("Здравствуйте, Анна! Бот магазина подключён")
    assert _buttons(reply) == ["💰 Баланс", "🎁 Предложения", "🔕 Отписаться"]
    chat = bot.chat()
    assert (chat.customer_id, chat.username, chat.linked_at, chat.stopped_at) == (
        cid,
        "ann_tg",
        clock.now(),
        None,
    )
    assert tuple(bot.consent(cid)) == ("subscribed", "telegram-start")
    [linked] = event_rows(bot.engine, name="Telegram Linked")
    assert linked.customer_id == cid
    assert linked.properties == {"chat_id": str(CHAT), "username": "ann_tg"}
    [changed] = event_rows(bot.engine, name="Consent Changed")
    assert changed.properties["channel"] == "telegram"
    with bot.engine.connect() as conn:
        assert recipient_for(conn, cid, "telegram") == str(CHAT)


def test_a_forged_link_links_nothing(bot: Bot, app: Any):
    cid = bot.customer("u1")
    real = links_of(app).telegram_start(cid)
    forged = links_of(app).telegram_start(cid + 1)[:-22] + real[-22:]  # another id, old MAC
    before = table_counts(bot.engine)
    for payload in (forged, "hello", real[:-1] + ("A" if real[-1] != "A" else "B")):
        reply = bot.say(f"/start {payload}")
        assert reply["text"].startswith("Эта ссылка недействительна")
        assert "reply_markup" not in reply
    reply = bot.say(f"/start {forged}", language="en")
    assert reply["text"].startswith("This link is not valid")
    assert table_counts(bot.engine) == before


def test_relinking_a_chat_moves_it_to_the_new_customer(bot: Bot):
    first, second = bot.customer("u1"), bot.customer("u2", locale="en-GB")
    bot.start(first)
    reply = bot.start(second)
    assert reply["text"].startswith("The shop's bot is connected")  # the card's locale wins
    assert bot.chat().customer_id == second
    linked = event_rows(bot.engine, name="Telegram Linked")
    assert [e.customer_id for e in linked] == [first, second]
    assert linked[1].properties["moved_from"] == first
    with bot.engine.connect() as conn:
        assert recipient_for(conn, first, "telegram") is None


def test_an_unknown_chat_is_asked_to_use_the_shop_link(bot: Bot, app: Any):
    links_of(app)  # the signing key is stored on first use, whatever the request
    before = table_counts(bot.engine)
    for text in ("/start", "/balance", "💰 Баланс", "hello"):
        assert bot.say(text)["text"].startswith("Мы пока не знаем, чей это чат")
    assert bot.say("/offers", language="en-US")["text"].startswith("We don't know whose chat")
    assert table_counts(bot.engine) == before


def test_balance_shows_loyalty_and_orders(bot: Bot, monkeypatch: pytest.MonkeyPatch):
    cid = bot.customer("u1")
    bot.start(cid)
    reply = bot.say("💰 Баланс")
    assert reply["text"] == "Бонусный баланс: 0 баллов.\nЗаказов: 0."
    assert _buttons(reply)[0] == "💰 Баланс"
    for oid in ("o-1", "o-2"):
        r = bot.client.post(
            "/v1/track",
            json={
                "userId": "u1",
                "event": "Order Completed",
                "properties": {"order_id": oid, "total": 10},
            },
            headers=bot.write,
        )
        assert r.status_code == 200, r.text

    # The loyalty programme will answer through this one function.
    def loyalty(conn: sa.Connection, customer_id: int, now: Any) -> dict[str, Any]:
        assert customer_id == cid
        return {"balance": 21, "tier": "Gold", "points_expiring": 2}

    monkeypatch.setattr(telegram_bot, "loyalty_summary", loyalty)
    assert bot.say("/balance")["text"] == (
        "Бонусный баланс: 21 балл.\nУровень: Gold.\nСкоро сгорят: 2 балла.\nЗаказов: 2."
    )
    # No locale on the card: the Telegram app's language decides.
    assert bot.say("/balance@ShopBot", language="en")["text"].startswith(
        "Points balance: 21 points."
    )
    assert bot.say("/balance@OtherBot") is None  # addressed to another bot


def test_offers_lists_the_three_newest_products_or_says_there_are_none(
    bot: Bot, engine: sa.Engine, clock: SimulatedClock
):
    cid = bot.customer("u1", locale="en")
    bot.start(cid)
    assert bot.say("/offers")["text"] == "No new offers right now. Check back soon!"
    for i in range(4):
        clock.advance(timedelta(minutes=1))
        item = {"id": f"p{i}", "name": f"Kettle {i}", "price": 1990 + i, "currency": "RUB"}
        if i != 2:
            item["url"] = f"https://shop.example/p{i}"
        with writing(engine) as conn:
            upsert_products(conn, [item], clock.now())
    reply = bot.say("🎁 Offers")
    assert reply["text"] == (
        "New in the shop:\n\n"
        "1. Kettle 3 — RUB1,993.00\nhttps://shop.example/p3\n\n"
        "2. Kettle 2 — RUB1,992.00\n\n"
        "3. Kettle 1 — RUB1,991.00\nhttps://shop.example/p1"
    )
    assert reply["link_preview_options"] == {"is_disabled": True}


def test_stop_and_start_again(bot: Bot, clock: SimulatedClock):
    cid = bot.customer("u1")
    bot.start(cid)
    clock.advance(timedelta(hours=1))
    reply = bot.say("/stop")
    assert reply["text"].startswith("Вы отписались от сообщений в Telegram")
    assert _buttons(reply) == ["🔔 Подписаться"]
    assert bot.chat().stopped_at == clock.now()
    assert tuple(bot.consent(cid)) == ("unsubscribed", "telegram-stop")
    with bot.engine.connect() as conn:
        assert recipient_for(conn, cid, "telegram") is None
    assert bot.say("🔕 Отписаться")["text"].startswith("Вы уже отписаны")

    clock.advance(timedelta(hours=1))
    reply = bot.say("🔔 Подписаться")  # the button sends its label; /start does the same
    assert reply["text"].startswith("С возвращением!")
    assert _buttons(reply)[-1] == "🔕 Отписаться"
    assert bot.chat().stopped_at is None
    assert tuple(bot.consent(cid)) == ("subscribed", "telegram-start")
    statuses = [e.properties["status"] for e in event_rows(bot.engine, name="Consent Changed")]
    assert statuses == ["subscribed", "unsubscribed", "subscribed"]
    # /start on a live chat just shows the menu and records nothing new.
    assert bot.say("/start")["text"] == "Выберите в меню, что показать."
    assert len(event_rows(bot.engine, name="Consent Changed")) == 3


def test_blocking_the_bot_stops_the_chat(bot: Bot):
    cid = bot.customer("u1")
    bot.start(cid)
    update = {
        "update_id": next(_updates),
        "my_chat_member": {
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
            "date": 1772366400,
            "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": True}},
            "new_chat_member": {"status": "kicked", "user": {"id": 1, "is_bot": True}},
        },
    }
    assert bot.post(update) is None  # nothing can be said to someone who blocked us
    assert bot.chat().stopped_at is not None
    assert tuple(bot.consent(cid)) == ("unsubscribed", "telegram-blocked")


def test_the_chat_follows_a_merged_profile(bot: Bot):
    known = bot.customer("u1")
    r = bot.client.post(
        "/v1/track", json={"anonymousId": "anon-9", "event": "Page Viewed"}, headers=bot.write
    )
    assert r.status_code == 200
    anonymous = next(c.id for c in live_customers(bot.engine) if c.id != known)
    bot.start(anonymous)
    r = bot.client.post(
        "/v1/identify", json={"userId": "u1", "anonymousId": "anon-9"}, headers=bot.write
    )
    assert r.status_code == 200
    assert bot.chat().customer_id == known
    assert bot.say("/balance")["text"].startswith("Бонусный баланс")
    # A link made for the merged id still works: it names the survivor.
    bot.start(anonymous, chat=CHAT + 1)
    assert bot.chat(CHAT + 1).customer_id == known


def test_groups_and_other_updates_get_no_answer(bot: Bot, app: Any):
    links_of(app)
    before = table_counts(bot.engine)
    assert bot.say("/balance", kind="group") is None
    assert bot.post({"update_id": next(_updates), "edited_message": {"text": "x"}}) is None
    assert table_counts(bot.engine) == before


def test_the_webhook_checks_the_secret_and_the_configuration(
    bot: Bot, engine: sa.Engine, clock: SimulatedClock
):
    update = {"update_id": 1}
    assert "wrong" in bot.post(update, secret="nope", status=401)["message"]
    assert bot.post(update, secret=None, status=401)["code"] == "unauthorized"
    configure(engine, clock, MemoryConfig())
    answer = bot.post(update, status=404)
    assert answer["message"].startswith("Telegram is not configured")
    with writing(engine) as conn:
        write_setting(conn, "channels", ChannelsConfig().model_dump(mode="json"), clock.now())
    bot.post(update, status=404)


@pytest.mark.parametrize(
    ("update", "where"),
    [
        ({"message": {}}, "update_id"),
        (
            {"update_id": 1, "message": {"message_id": 1, "chat": {"type": "private"}}},
            "message.chat.id",
        ),
        ({"update_id": "x"}, "update_id"),
    ],
)
def test_a_malformed_update_is_refused_and_stores_nothing(
    bot: Bot, app: Any, update: dict[str, Any], where: str
):
    links_of(app)
    before = table_counts(bot.engine)
    answer = bot.post(update, status=400)
    assert where in [e["where"] for e in answer["errors"]], answer
    r = bot.client.post(
        "/telegram/webhook",
        content=b"[1]",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert r.status_code == 400 and "Telegram Update" in r.json()["message"]
    assert table_counts(bot.engine) == before


def test_the_link_endpoint_needs_a_secret_key_a_customer_and_a_bot(
    bot: Bot, engine: sa.Engine, clock: SimulatedClock, write_key: str
):
    cid = bot.customer("u1")
    r = bot.client.get(f"/api/customers/{cid}/telegram-link")
    assert r.status_code == 401
    r = bot.client.get(f"/api/customers/{cid}/telegram-link", headers=bearer(write_key))
    assert r.status_code == 401
    r = bot.client.get(f"/api/customers/{cid + 99}/telegram-link", headers=bot.secret)
    assert r.status_code == 404 and r.json()["message"] == f"customer {cid + 99} does not exist"
    configure(engine, clock, MemoryConfig())
    r = bot.client.get(f"/api/customers/{cid}/telegram-link", headers=bot.secret)
    assert r.status_code == 404 and "Telegram is not configured" in r.json()["message"]
