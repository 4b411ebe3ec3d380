"""The template editor's form: one subject and body per locale (ru and en), as typed.

A locale left entirely empty is not part of the template (a template may be Russian
only); the rest is checked by the store exactly as the API's are (``compile_all``), so
an error comes back as ``variants.ru.body:6:4`` and is shown beside the Russian body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rapport.messaging.templates.store import StoredTemplate

EDIT_LOCALES = ("ru", "en")
# Which kinds each channel may use (the store refuses the others with a clear problem).
KINDS_BY_CHANNEL = {"email": ("mjml", "html", "text")}
TEXT_ONLY = ("text",)


def kinds_for(channel: str) -> tuple[str, ...]:
    return KINDS_BY_CHANNEL.get(channel, TEXT_ONLY)


@dataclass
class TemplateForm:
    name: str = ""
    channel: str = "email"
    kind: str = "mjml"
    default_locale: str = "ru"
    subjects: dict[str, str] = field(default_factory=lambda: dict.fromkeys(EDIT_LOCALES, ""))
    bodies: dict[str, str] = field(default_factory=lambda: dict.fromkeys(EDIT_LOCALES, ""))

    def default_for(self, variants: Mapping[str, Any]) -> str:
        """The chosen default language if the template has it, else the one it has: a
        template written in one language only needs no choice."""
        if self.default_locale in variants or not variants:
            return self.default_locale
        return next(iter(variants))

    def variants(self) -> dict[str, dict[str, str]]:
        """The locales that have anything in them, as the store takes them."""
        return {
            loc: {"subject": self.subjects[loc], "body": self.bodies[loc]}
            for loc in EDIT_LOCALES
            if self.subjects[loc].strip() or self.bodies[loc].strip()
        }


def _text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def form_from_post(form: Mapping[str, Any]) -> TemplateForm:
    """Fields ``name``, ``channel``, ``kind``, ``default_locale``, ``<locale>-subject`` and
    ``<locale>-body``; bodies keep their spacing (line numbers must match the author's)."""
    return TemplateForm(
        name=_text(form, "name").strip(),
        channel=_text(form, "channel", "email").strip(),
        kind=_text(form, "kind", "mjml").strip(),
        default_locale=_text(form, "default_locale", "ru").strip(),
        subjects={loc: _text(form, f"{loc}-subject") for loc in EDIT_LOCALES},
        # Browsers send textarea lines as CRLF; the author counts lines, not characters.
        bodies={loc: _text(form, f"{loc}-body").replace("\r\n", "\n") for loc in EDIT_LOCALES},
    )


def form_from_template(tpl: StoredTemplate) -> TemplateForm:
    return TemplateForm(
        name=tpl.name,
        channel=tpl.channel,
        kind=tpl.kind,
        default_locale=tpl.default_locale,
        subjects={loc: str(tpl.variants.get(loc, {}).get("subject", "")) for loc in EDIT_LOCALES},
        bodies={loc: str(tpl.variants.get(loc, {}).get("body", "")) for loc in EDIT_LOCALES},
    )
