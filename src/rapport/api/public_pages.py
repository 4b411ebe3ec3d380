"""The few HTML pages Rapport shows to the people it writes to, not to marketers.

Unsubscribe confirmation, the preference page and their error pages are opened from a
message by anyone, on any device, with no login: so they are small, server-rendered from
the package's ``pages/`` templates with autoescaping, work without JavaScript, and are
served in Russian or English. The signed token in their URL is the only credential, which
is why every page is sent with ``Referrer-Policy: no-referrer`` (the token must not leak
to another site), ``no-store`` (personal data stays out of shared caches), ``noindex``
and a CSP that forbids framing (nobody can overlay the unsubscribe button).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from rapport.messaging.templates.filters import DEFAULT_LOCALE, LOCALES, normalize_locale

_ENV = Environment(
    loader=PackageLoader("rapport.api", "pages"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "unsubscribe_title": "Отписка",
        "unsubscribe_confirm": "Вы больше не будете получать от нас сообщения по каналу «{channel}».",
        "unsubscribe_button": "Отписаться",
        "unsubscribe_done": "Готово: вы отписались от канала «{channel}».",
        "unsubscribe_already": "Вы уже отписаны от канала «{channel}».",
        "manage": "Настроить подписки",
        "preferences_title": "Настройки подписок",
        "preferences_intro": "Выберите, где вы хотите получать наши сообщения.",
        "preferences_for": "Подписки для {address}",
        "preferences_empty": "У нас нет ваших контактов для рассылок.",
        "save": "Сохранить",
        "saved": "Настройки сохранены.",
        "unsubscribe_all": "Отписаться от всего",
        "status_subscribed": "подписаны",
        "status_unsubscribed": "отписаны",
        "status_pending": "ждёт подтверждения",
        "status_none": "не выбрано",
        "bad_link_title": "Ссылка не работает",
        "bad_link": "Ссылка повреждена или неполна. Откройте её из письма ещё раз.",
        "bad_request": "Запрос не похож на отписку в один клик.",
        "bad_form": "Форма не распознана. Откройте страницу настроек ещё раз.",
        "not_found_title": "Не найдено",
        "not_found": "Мы не нашли получателя этой ссылки.",
        "gone_title": "Данные удалены",
        "gone": "Данные этого получателя удалены по его просьбе. Сообщений больше не будет.",
        "channel_email": "Электронная почта",
        "channel_sms": "SMS",
        "channel_push": "Push-уведомления в приложении",
        "channel_webpush": "Уведомления в браузере",
        "channel_telegram": "Telegram",
        "channel_whatsapp": "WhatsApp",
        "channel_viber": "Viber",
        "channel_call": "Звонки",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_confirm": "You will no longer receive our messages by {channel}.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribe_done": "Done: you are unsubscribed from {channel}.",
        "unsubscribe_already": "You are already unsubscribed from {channel}.",
        "manage": "Manage subscriptions",
        "preferences_title": "Subscription preferences",
        "preferences_intro": "Choose where you would like to hear from us.",
        "preferences_for": "Subscriptions for {address}",
        "preferences_empty": "We have no contact details of yours to write to.",
        "save": "Save",
        "saved": "Your preferences are saved.",
        "unsubscribe_all": "Unsubscribe from everything",
        "status_subscribed": "subscribed",
        "status_unsubscribed": "unsubscribed",
        "status_pending": "awaiting confirmation",
        "status_none": "not chosen",
        "bad_link_title": "This link does not work",
        "bad_link": "The link is damaged or incomplete. Please open it from the message again.",
        "bad_request": "This request is not a one-click unsubscribe.",
        "bad_form": "The form could not be read. Please open the preference page again.",
        "not_found_title": "Not found",
        "not_found": "We could not find whom this link was made for.",
        "gone_title": "Data erased",
        "gone": "This recipient's data was erased at their request. No more messages will be sent.",
        "channel_email": "email",
        "channel_sms": "SMS",
        "channel_push": "app notifications",
        "channel_webpush": "browser notifications",
        "channel_telegram": "Telegram",
        "channel_whatsapp": "WhatsApp",
        "channel_viber": "Viber",
        "channel_call": "phone calls",
    },
}


def _accepted(header: str) -> str | None:
    """The best supported language of an Accept-Language header (RFC 9110 §12.5.4)."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = tag.strip().replace("_", "-").split("-")[0].lower()
        if lang in LOCALES and quality > 0:
            key = (quality, -position, lang)
            if best is None or key > best:
                best = key
    return None if best is None else best[2]


def choose_lang(request: Request, customer_locale: str | None = None) -> str:
    """``?lang=`` if given, else the card's locale (the language the message was written
    in), else the browser's Accept-Language, else the default."""
    asked = request.query_params.get("lang", "").replace("_", "-").split("-")[0].lower()
    if asked in LOCALES:
        return asked
    if customer_locale:
        return normalize_locale(customer_locale)
    return _accepted(request.headers.get("accept-language", "")) or DEFAULT_LOCALE


def channel_name(lang: str, channel: str) -> str:
    return TEXTS[lang].get(f"channel_{channel}", channel)


def render_page(name: str, lang: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(lang=lang, t=TEXTS[lang], **context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def problem_page(lang: str, status_code: int, title: str, message: str) -> HTMLResponse:
    """An error page: ``title`` and ``message`` are keys of TEXTS."""
    t = TEXTS[lang]
    return render_page("problem.html", lang, status_code, title=t[title], message=t[message])


def mask_email(address: str) -> str:
    """``anna.petrova@example.com`` → ``a***a@example.com``: recognisable to its owner,
    of little use to someone who was forwarded the message. The fixed run of stars hides
    the length of the name."""
    local, at, domain = address.rpartition("@")
    if not at:
        return mask_phone(address)
    if len(local) <= 2:
        return f"{local[:1]}***@{domain}"
    return f"{local[0]}***{local[-1]}@{domain}"


def mask_phone(number: str) -> str:
    """``+79991234567`` → ``+7••••••4567``: the country code and the last four digits."""
    if len(number) <= 6:
        return "•" * len(number)
    head = 2 if number.startswith("+") else 1
    return number[:head] + "•" * (len(number) - head - 4) + number[-4:]
