"""The shop's Telegram bot: linking a chat to a customer, and a small self-service menu.

A customer reaches the bot through a deep link ``https://t.me/<bot>?start=<payload>``
whose payload is a signed token naming them (``Links.telegram_start``), so nobody can
link a chat to someone else's card by guessing ids. ``/start <payload>`` links the chat
(moving it if it was linked to someone else: one Telegram account, one owner), sets the
telegram consent to subscribed and shows a reply-keyboard menu: balance (the loyalty
programme's summary), offers, stop.

Answers go back in the webhook's own HTTP response as a Bot API method call
(``{"method": "sendMessage", ...}``), which Telegram executes for us: no outgoing request,
no token in our logs, and nothing to retry on our side. The price is that we never learn
whether the reply arrived, which is fine for menu replies; marketing messages go through
the outbox and ``TelegramBackend``.

``handle_update`` is the domain: it reads and writes the store and returns the reply and
the events to record; the route records them through the pipeline in the same
transaction (messaging never imports the pipeline).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from pydantic import BaseModel, ConfigDict, Field

from rapport.customers.profile import live_id
from rapport.loyalty.summary import loyalty_summary
from rapport.messaging.channel_config import ChannelsConfig, TelegramConfig
from rapport.messaging.push_subscriptions import Event, opt_in, opt_out
from rapport.messaging.templates.filters import DEFAULT_LOCALE, normalize_locale
from rapport.messaging.tracking import BadToken, Links
from rapport.segments.config import read_setting
from rapport.store.engine import upsert
from rapport.store.tables import customers, products, telegram_chats

CHANNEL = "telegram"
LINKED_EVENT = "Telegram Linked"
SOURCE_START = "telegram-start"
SOURCE_STOP = "telegram-stop"
SOURCE_BLOCKED = "telegram-blocked"
OFFERS = 3


# --- Telegram's Update, as much of it as the bot reads ---------------------------------


class _Tg(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TgUser(_Tg):
    id: int
    username: str | None = None
    language_code: str | None = None


class TgChat(_Tg):
    id: int
    type: str


class TgMessage(_Tg):
    message_id: int
    chat: TgChat
    sender: TgUser | None = Field(None, alias="from")
    text: str | None = None


class TgMemberStatus(_Tg):
    status: str


class TgMemberUpdate(_Tg):
    chat: TgChat
    sender: TgUser = Field(alias="from")
    new_chat_member: TgMemberStatus


class Update(_Tg):
    update_id: int
    message: TgMessage | None = None
    my_chat_member: TgMemberUpdate | None = None


@dataclass
class BotAnswer:
    """The Bot API call to answer the webhook with (None: answer nothing), and the events
    the caller records."""

    reply: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)


# --- Configuration and links -----------------------------------------------------------


def telegram_config(conn: sa.Connection) -> TelegramConfig | None:
    """The bot's settings; None when Telegram is not configured with a real bot (no
    section, or the in-memory backend, which has no bot to receive webhooks)."""
    config = ChannelsConfig.model_validate(read_setting(conn, "channels") or {})
    section = config.telegram
    return section if isinstance(section, TelegramConfig) else None


def secret_matches(config: TelegramConfig, header: str | None) -> bool:
    """Telegram echoes the webhook secret on every call; compared in constant time."""
    return header is not None and secrets.compare_digest(
        header.encode(), config.webhook_secret.encode()
    )


def start_link(bot_username: str, links: Links, customer_id: int) -> str:
    """The deep link a shop shows a customer (a button, a QR code) to connect the bot."""
    return f"https://t.me/{bot_username}?start={links.telegram_start(customer_id)}"


# --- Texts -------------------------------------------------------------------------------

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "welcome": "{hello}Бот магазина подключён: здесь будут заказы, бонусы и предложения. "
        "Выберите в меню, что показать.",
        "hello": "Здравствуйте, {name}! ",
        "welcome_back": "С возвращением! Сообщения снова будут приходить сюда.",
        "menu": "Выберите в меню, что показать.",
        "invalid_link": "Эта ссылка недействительна. Откройте ссылку на бота заново "
        "в личном кабинете магазина.",
        "unknown_chat": "Мы пока не знаем, чей это чат. Откройте ссылку на бота "
        "из личного кабинета или письма магазина.",
        "balance": "Бонусный баланс: {balance} {points}.",
        "tier": "Уровень: {tier}.",
        "pending": "Ожидают начисления: {pending} {pending_points}.",
        "expiring": "Скоро сгорят: {expiring} {expiring_points}.",
        "expiring_first": ", первые — {date}.",
        "orders": "Заказов: {orders}.",
        "offers": "Новинки магазина:",
        "no_offers": "Пока новых предложений нет. Загляните позже!",
        "stopped": "Вы отписались от сообщений в Telegram. Чтобы снова получать их, "
        "нажмите «Подписаться» или отправьте /start.",
        "already_stopped": "Вы уже отписаны. Чтобы снова получать сообщения, отправьте /start.",
        "btn_balance": "💰 Баланс",
        "btn_offers": "🎁 Предложения",
        "btn_stop": "🔕 Отписаться",
        "btn_start": "🔔 Подписаться",
    },
    "en": {
        "welcome": "{hello}The shop's bot is connected: orders, points and offers will come "
        "here. Pick what to show from the menu.",
        "hello": "Hello, {name}! ",
        "welcome_back": "Welcome back! Messages will come here again.",
        "menu": "Pick what to show from the menu.",
        "invalid_link": "This link is not valid. Please open the bot link again from "
        "your account on the shop's site.",
        "unknown_chat": "We don't know whose chat this is yet. Please open the bot link "
        "from your account or an e-mail from the shop.",
        "balance": "Points balance: {balance} {points}.",
        "tier": "Tier: {tier}.",
        "pending": "Pending: {pending} {pending_points}.",
        "expiring": "Expiring soon: {expiring} {expiring_points}.",
        "expiring_first": ", the first on {date}.",
        "orders": "Orders: {orders}.",
        "offers": "New in the shop:",
        "no_offers": "No new offers right now. Check back soon!",
        "stopped": "You have unsubscribed from Telegram messages. To get them again, "
        'press "Subscribe" or send /start.',
        "already_stopped": "You are already unsubscribed. To get messages again, send /start.",
        "btn_balance": "💰 Balance",
        "btn_offers": "🎁 Offers",
        "btn_stop": "🔕 Unsubscribe",
        "btn_start": "🔔 Subscribe",
    },
}
_POINTS = {
    "ru": {"one": "балл", "few": "балла", "many": "баллов", "other": "балла"},
    "en": {"one": "point", "other": "points"},
}
# A menu button sends its label as text; every label, in either language, is its command.
_BUTTONS = {
    TEXTS[loc][f"btn_{cmd}"]: cmd for loc in TEXTS for cmd in ("balance", "offers", "stop", "start")
}


def _points(locale: str, n: float) -> str:
    form = Locale.parse(locale).plural_form(n)
    forms = _POINTS[locale]
    return forms.get(form, forms["other"])


def _menu(locale: str) -> dict[str, Any]:
    t = TEXTS[locale]
    return {
        "keyboard": [
            [{"text": t["btn_balance"]}, {"text": t["btn_offers"]}],
            [{"text": t["btn_stop"]}],
        ],
        "resize_keyboard": True,
        "is_persistent": True,
    }


def _start_menu(locale: str) -> dict[str, Any]:
    return {"keyboard": [[{"text": TEXTS[locale]["btn_start"]}]], "resize_keyboard": True}


def _say(chat_id: int, text: str, markup: dict[str, Any] | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "method": "sendMessage",
        "chat_id": chat_id,
        "text": text,
        "link_preview_options": {"is_disabled": True},
    }
    if markup is not None:
        reply["reply_markup"] = markup
    return reply


# --- Handling an update ------------------------------------------------------------------


def command_of(text: str | None, bot_username: str) -> tuple[str, str] | None:
    """(command, argument) of a message: ``/start abc`` → ("start", "abc"); a menu
    button's label → its command. None for a command addressed to another bot."""
    text = (text or "").strip()
    if text in _BUTTONS:
        return _BUTTONS[text], ""
    if not text.startswith("/"):
        return "", text
    head, _, arg = text.partition(" ")
    command, _, addressee = head[1:].partition("@")
    if addressee and addressee.lower() != bot_username.lower():
        return None
    return command.lower(), arg.strip()


@dataclass
class _Chat:
    chat_id: str
    customer_id: int | None
    stopped: bool


def _chat(conn: sa.Connection, chat_id: str) -> _Chat:
    row = conn.execute(
        sa.select(telegram_chats.c.customer_id, telegram_chats.c.stopped_at).where(
            telegram_chats.c.chat_id == chat_id
        )
    ).first()
    if row is None:
        return _Chat(chat_id, None, False)
    return _Chat(chat_id, _live_customer(conn, int(row.customer_id)), row.stopped_at is not None)


def _live_customer(conn: sa.Connection, customer_id: int) -> int | None:
    """The profile the id lives under, unless it was erased (then nobody owns the chat)."""
    cid = live_id(conn, customer_id)
    if cid is None:
        return None
    erased = conn.execute(
        sa.select(customers.c.erased_at).where(customers.c.id == cid)
    ).scalar_one_or_none()
    return None if erased is not None else cid


def _locale(conn: sa.Connection, customer_id: int | None, user: TgUser | None) -> str:
    """The customer's locale when the card has one, else the Telegram app's language."""
    if customer_id is not None:
        own = conn.execute(
            sa.select(customers.c.locale).where(customers.c.id == customer_id)
        ).scalar_one_or_none()
        if own:
            return normalize_locale(own)
    if user is not None and user.language_code:
        return normalize_locale(user.language_code)
    return DEFAULT_LOCALE


def handle_update(
    conn: sa.Connection, update: Update, links: Links, bot_username: str, now: datetime
) -> BotAnswer:
    if update.my_chat_member is not None:
        return _member_changed(conn, update.my_chat_member, now)
    msg = update.message
    if msg is None or msg.chat.type != "private":
        # Edits, channel posts, groups: the bot serves one person's private chat only.
        return BotAnswer()
    parsed = command_of(msg.text, bot_username)
    if parsed is None:
        return BotAnswer()
    command, arg = parsed
    chat = _chat(conn, str(msg.chat.id))
    if command == "start" and arg:
        return _link(conn, msg, chat, arg, links, now)
    locale = _locale(conn, chat.customer_id, msg.sender)
    t = TEXTS[locale]
    if chat.customer_id is None:
        return BotAnswer(_say(msg.chat.id, t["unknown_chat"]))
    cid = chat.customer_id
    if command == "start":
        return _restart(conn, msg.chat.id, chat, cid, locale, now)
    if command == "stop":
        return _stop(conn, msg.chat.id, chat, cid, locale, now)
    if command == "balance":
        return BotAnswer(_say(msg.chat.id, _balance(conn, cid, locale, now), _menu(locale)))
    if command == "offers":
        return BotAnswer(_say(msg.chat.id, _offers(conn, locale), _menu(locale)))
    return BotAnswer(_say(msg.chat.id, t["menu"], _menu(locale)))


def _link(
    conn: sa.Connection,
    msg: TgMessage,
    chat: _Chat,
    payload: str,
    links: Links,
    now: datetime,
) -> BotAnswer:
    try:
        cid: int | None = _live_customer(conn, links.telegram_customer(payload))
    except BadToken:
        cid = None
    if cid is None:
        # Nothing changes: a forged or stale link must not move a chat that works.
        locale = _locale(conn, chat.customer_id, msg.sender)
        return BotAnswer(_say(msg.chat.id, TEXTS[locale]["invalid_link"]))
    username = msg.sender.username if msg.sender else None
    stmt = upsert(conn, telegram_chats).values(
        chat_id=chat.chat_id, customer_id=cid, username=username, linked_at=now, stopped_at=None
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["chat_id"],
            set_={
                "customer_id": stmt.excluded.customer_id,
                "username": stmt.excluded.username,
                "linked_at": stmt.excluded.linked_at,
                "stopped_at": None,
            },
        )
    )
    properties: dict[str, Any] = {"chat_id": chat.chat_id}
    if username:
        properties["username"] = username
    if chat.customer_id is not None and chat.customer_id != cid:
        properties["moved_from"] = chat.customer_id
    events: list[Event] = [(cid, LINKED_EVENT, properties)]
    events += opt_in(conn, cid, CHANNEL, SOURCE_START, now)
    locale = _locale(conn, cid, msg.sender)
    t = TEXTS[locale]
    name = conn.execute(
        sa.select(customers.c.first_name).where(customers.c.id == cid)
    ).scalar_one_or_none()
    hello = t["hello"].format(name=name) if name else ""
    return BotAnswer(_say(msg.chat.id, t["welcome"].format(hello=hello), _menu(locale)), events)


def _restart(
    conn: sa.Connection, chat_id: int, chat: _Chat, cid: int, locale: str, now: datetime
) -> BotAnswer:
    """``/start`` without a payload (Telegram's Start/Restart button) on a linked chat."""
    if chat.stopped:
        _set_stopped(conn, chat.chat_id, None)
    events = opt_in(conn, cid, CHANNEL, SOURCE_START, now)
    text = TEXTS[locale]["welcome_back" if chat.stopped or events else "menu"]
    return BotAnswer(_say(chat_id, text, _menu(locale)), events)


def _stop(
    conn: sa.Connection, chat_id: int, chat: _Chat, cid: int, locale: str, now: datetime
) -> BotAnswer:
    if chat.stopped:
        return BotAnswer(_say(chat_id, TEXTS[locale]["already_stopped"], _start_menu(locale)))
    _set_stopped(conn, chat.chat_id, now)
    events = opt_out(conn, cid, CHANNEL, SOURCE_STOP, now)
    return BotAnswer(_say(chat_id, TEXTS[locale]["stopped"], _start_menu(locale)), events)


def _member_changed(conn: sa.Connection, change: TgMemberUpdate, now: datetime) -> BotAnswer:
    """A user who blocks the bot has opted out as surely as one who sent /stop; no reply
    is possible (or wanted) then."""
    if change.chat.type != "private" or change.new_chat_member.status != "kicked":
        return BotAnswer()
    chat = _chat(conn, str(change.chat.id))
    if chat.customer_id is None or chat.stopped:
        return BotAnswer()
    _set_stopped(conn, chat.chat_id, now)
    return BotAnswer(events=opt_out(conn, chat.customer_id, CHANNEL, SOURCE_BLOCKED, now))


def _set_stopped(conn: sa.Connection, chat_id: str, when: datetime | None) -> None:
    conn.execute(
        telegram_chats.update().where(telegram_chats.c.chat_id == chat_id).values(stopped_at=when)
    )


def _balance(conn: sa.Connection, cid: int, locale: str, now: datetime) -> str:
    """The programme's summary as of ``now`` (points whose return period just ended count
    as spendable, as at the checkout), and the orders count."""
    t = TEXTS[locale]
    loyalty = loyalty_summary(conn, cid, now)
    balance = loyalty.get("balance") or 0
    lines = [
        t["balance"].format(
            balance=babel_numbers.format_decimal(balance, locale=locale),
            points=_points(locale, balance),
        )
    ]
    if loyalty.get("tier"):
        lines.append(t["tier"].format(tier=loyalty["tier"]))
    pending = loyalty.get("pending") or 0
    if pending:
        lines.append(
            t["pending"].format(
                pending=babel_numbers.format_decimal(pending, locale=locale),
                pending_points=_points(locale, pending),
            )
        )
    expiring = loyalty.get("points_expiring") or 0
    if expiring:
        text = t["expiring"].format(
            expiring=babel_numbers.format_decimal(expiring, locale=locale),
            expiring_points=_points(locale, expiring),
        )
        if loyalty.get("next_expiry") is not None:
            first = babel_dates.format_date(loyalty["next_expiry"], "long", locale=locale)
            text = text.removesuffix(".") + t["expiring_first"].format(date=first)
        lines.append(text)
    orders = conn.execute(
        sa.select(customers.c.orders_count).where(customers.c.id == cid)
    ).scalar_one_or_none()
    lines.append(t["orders"].format(orders=orders or 0))
    return "\n".join(lines)


def _offers(conn: sa.Connection, locale: str) -> str:
    rows = conn.execute(
        sa.select(
            products.c.id, products.c.name, products.c.price, products.c.currency, products.c.url
        )
        .order_by(products.c.created_at.desc(), products.c.id.desc())
        .limit(OFFERS)
    ).all()
    t = TEXTS[locale]
    if not rows:
        return t["no_offers"]
    lines = [t["offers"]]
    for n, row in enumerate(rows, 1):
        line = f"{n}. {row.name or row.id}"
        if row.price is not None:
            price = (
                babel_numbers.format_currency(row.price, row.currency.upper(), locale=locale)
                if row.currency
                else babel_numbers.format_decimal(row.price, locale=locale)
            )
            line += f" — {price}"
        if row.url:
            line += f"\n{row.url}"
        lines.append(line)
    return "\n\n".join(lines)
