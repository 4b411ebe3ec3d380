"""The channel settings form: one form per backend, made from the same Pydantic models the
API validates with (``messaging.channel_config``), and turned back into the section
document ``PUT /api/channels`` would take.

Secrets never go to the browser. A secret's input is always empty and says whether a value
is stored ("set" / "not set"); left empty, the stored value is kept (taken here, on the
server, from the stored section of the same backend; a DKIM key is kept for the row with
the same domain and selector). A secret typed into a form that is then rejected is not
shown again either: it has to be typed again.

Problems come back from the model with the API's paths (``email.port``,
``email.dkim[1].private_key``); :func:`place` says which input of the form each belongs
to, so the page shows it there, with its path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from rapport.errors import InvalidInput, Problem
from rapport.messaging.channel_config import (
    ChannelsConfig,
    DkimConfig,
    dump,
    with_section,
)
from rapport.web.i18n import N_

CHANNEL_LABELS = {
    "email": N_("Email"),
    "sms": N_("SMS"),
    "webpush": N_("Web push"),
    "push": N_("Mobile push"),
    "telegram": N_("Telegram"),
    "webhook": N_("Webhooks"),
}
BACKEND_LABELS = {
    "smtp": N_("SMTP server"),
    "http": N_("HTTP SMS gateway"),
    "smpp": N_("SMPP (SMS centre)"),
    "webpush": N_("Web push with VAPID keys"),
    "fcm": N_("Firebase Cloud Messaging"),
    "telegram": N_("Telegram bot"),
    "webhook": N_("Signed webhooks"),
    "memory": N_("In memory (tests and the demo: nothing leaves Rapport)"),
}
# What the test button sends to, per channel.
TEST_TARGETS = {
    "email": N_("Email address"),
    "sms": N_("Phone number (E.164, +7…)"),
    "webpush": N_("Push subscription (the browser's JSON)"),
    "push": N_("Device token"),
    "telegram": N_("Chat id"),
    "webhook": N_("Receiver URL (https://…)"),
}

# What a test's status means, in words.
TEST_STATUS = {
    "sent": N_("Sent: the provider accepted it."),
    "failed": N_("Failed: a problem that may pass (real messages are retried)."),
    "rejected": N_("Rejected: the provider refused it for this recipient."),
}

# The secrets of each backend, as the form shows them; channel_config keeps its own list
# (what the API redacts), and tests/test_web_channels.py checks the two agree.
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "smtp": frozenset({"password"}),
    "smpp": frozenset({"password"}),
    "webpush": frozenset({"vapid_private_key"}),
    "telegram": frozenset({"bot_token", "webhook_secret"}),
    "webhook": frozenset({"secret"}),
    "fcm": frozenset({"service_account"}),
}
# Secrets that run over several lines (PEM keys, a service account's JSON).
MULTILINE_SECRETS = frozenset({"vapid_private_key", "service_account"})
SHARED_LIMITS = frozenset({"rate", "burst"})
DKIM_PARTS = ("domain", "selector", "algorithm")
DKIM_ALGORITHMS = tuple(str(a) for a in get_args(DkimConfig.model_fields["algorithm"].annotation))
# Rows of DKIM keys a form may send (a domain has a handful of selectors at most).
MAX_DKIM_ROWS = 100


@dataclass(frozen=True)
class FormField:
    """One setting of a backend and how the form asks for it.

    ``kind``: text, number, choice, json (an object typed as YAML or JSON), secret (a
    password input), secret_text (a secret over several lines), header (``auth_header``:
    a name and a secret value) or dkim (rows of signing keys).
    """

    name: str
    kind: str
    required: bool
    default: Any = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # may be left unset (None)

    @property
    def secret(self) -> bool:
        return self.kind in ("secret", "secret_text", "header", "dkim")


@dataclass
class ChannelForm:
    """What the form shows: the values of its inputs (never a secret) and, for each secret,
    whether one is stored."""

    channel: str
    backend: str
    fields: list[FormField]
    values: dict[str, str] = field(default_factory=dict)
    stored_secrets: dict[str, bool] = field(default_factory=dict)
    dkim_rows: int = 1
    # Problems by the input they belong to ("" for the form as a whole).
    problems: dict[str, list[Problem]] = field(default_factory=dict)


def backends_of(channel: str) -> dict[str, type[BaseModel]]:
    """The backends a channel may use, by name, in the model's order."""
    annotation = ChannelsConfig.model_fields[channel].annotation
    return {str(m.model_fields["backend"].default): m for m in _models(annotation)}


def _models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        else:
            found += _models(arg)
    return found


def _plain(annotation: Any) -> tuple[Any, bool]:
    """The type without ``| None``, and whether None was allowed."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def form_fields(backend: str, model: type[BaseModel]) -> list[FormField]:
    fields: list[FormField] = []
    for name, info in model.model_fields.items():
        if name == "backend":
            continue
        kind_of, optional = _plain(info.annotation)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        choices: tuple[str, ...] = ()
        if name == "dkim":
            kind = "dkim"
        elif name == "auth_header":
            kind = "header"
        elif name in SECRET_FIELDS.get(backend, ()):
            kind = "secret_text" if name in MULTILINE_SECRETS else "secret"
        elif get_origin(kind_of) is Literal:
            kind, choices = "choice", tuple(str(c) for c in get_args(kind_of))
        elif kind_of is dict or get_origin(kind_of) is dict:
            kind = "json"
        elif kind_of in (int, float):
            kind = "number"
        else:
            kind = "text"
        fields.append(FormField(name, kind, info.is_required(), default, choices, optional))
    # The sending limits every backend shares come after the backend's own settings.
    return sorted(fields, key=lambda f: f.name in SHARED_LIMITS)


def stored_section(config: ChannelsConfig, channel: str, backend: str) -> dict[str, Any]:
    """The stored settings of ``channel`` if it uses ``backend``, else nothing."""
    section = dump(config).get(channel)
    if isinstance(section, dict) and section.get("backend") == backend:
        return section
    return {}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def _secrets_of(fields: list[FormField], section: Mapping[str, Any]) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for f in fields:
        if f.kind in ("secret", "secret_text"):
            found[f"f-{f.name}"] = section.get(f.name) not in (None, "")
        elif f.kind == "header":
            found["f-auth_header-value"] = bool(section.get("auth_header"))
        elif f.kind == "dkim":
            for i, key in enumerate(section.get("dkim") or []):
                found[f"f-dkim-{i}-private_key"] = bool(key.get("private_key"))
    return found


def blank_form(config: ChannelsConfig, channel: str, backend: str) -> ChannelForm:
    """The form filled with the stored settings (secrets only as set / not set)."""
    fields = form_fields(backend, backends_of(channel)[backend])
    section = stored_section(config, channel, backend)
    values: dict[str, str] = {}
    for f in fields:
        if f.kind in ("text", "number", "choice", "json"):
            values[f"f-{f.name}"] = _text(
                section.get(f.name, f.default if f.kind == "choice" else None)
            )
        elif f.kind == "header" and section.get("auth_header"):
            values["f-auth_header-name"] = str(section["auth_header"][0])
        elif f.kind == "dkim":
            for i, key in enumerate(section.get("dkim") or []):
                for part in DKIM_PARTS:
                    values[f"f-dkim-{i}-{part}"] = str(key.get(part, ""))
    rows = len(section.get("dkim") or []) + 1
    return ChannelForm(channel, backend, fields, values, _secrets_of(fields, section), rows)


def _rows(form: Mapping[str, str]) -> int:
    try:
        return max(1, min(int(form.get("dkim_rows", "1")), MAX_DKIM_ROWS))
    except ValueError:
        return 1


def _lines(text: str) -> str:
    """What was typed, without the browser's CRLF line ends or surrounding blanks."""
    return text.replace("\r\n", "\n").strip()


def _object(text: str, where: str, problems: list[Problem]) -> dict[str, Any] | None:
    """An object typed as YAML or JSON (JSON is YAML)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(Problem(where, f"neither YAML nor JSON: {exc}".splitlines()[0]))
        return None
    if not isinstance(value, dict):
        problems.append(Problem(where, "must be an object (name: value pairs)"))
        return None
    return value


def section_from_form(
    config: ChannelsConfig, channel: str, backend: str, form: Mapping[str, str]
) -> tuple[dict[str, Any], list[int], list[Problem]]:
    """The section document the form describes, with stored secrets kept where the form
    left them empty; the form row of each DKIM key in it; problems the form itself has."""
    fields = form_fields(backend, backends_of(channel)[backend])
    stored = stored_section(config, channel, backend)
    doc: dict[str, Any] = {"backend": backend}
    problems: list[Problem] = []
    dkim_rows: list[int] = []
    for f in fields:
        given = str(form.get(f"f-{f.name}", ""))
        if f.kind in ("text", "number", "choice"):
            if given.strip():
                doc[f.name] = given.strip()
        elif f.kind == "json":
            if given.strip():
                doc[f.name] = _object(given, f"{channel}.{f.name}", problems)
        elif f.kind in ("secret", "secret_text"):
            if f.optional and form.get(f"clear-{f.name}"):
                doc[f.name] = None
            elif given.strip():
                value = _lines(given)
                if f.name == "service_account":
                    doc[f.name] = _object(value, f"{channel}.{f.name}", problems)
                else:
                    doc[f.name] = value
            elif stored.get(f.name) is not None:
                doc[f.name] = stored[f.name]
        elif f.kind == "header":
            name = str(form.get("f-auth_header-name", "")).strip()
            value = str(form.get("f-auth_header-value", "")).strip()
            kept = stored.get("auth_header") or [None, None]
            if name and not form.get("clear-auth_header"):
                doc["auth_header"] = [name, value or kept[1]]
        elif f.kind == "dkim":
            doc["dkim"], dkim_rows = _dkim(form, stored.get("dkim") or [])
    return doc, dkim_rows, problems


def _dkim(form: Mapping[str, str], stored: list[dict[str, Any]]) -> tuple[list[Any], list[int]]:
    keys: list[Any] = []
    rows: list[int] = []
    for i in range(_rows(form)):
        parts = {p: str(form.get(f"f-dkim-{i}-{p}", "")).strip() for p in DKIM_PARTS}
        key = _lines(str(form.get(f"f-dkim-{i}-private_key", "")))
        if form.get(f"f-dkim-{i}-remove") or not (parts["domain"] or parts["selector"] or key):
            continue
        item: dict[str, Any] = {p: v for p, v in parts.items() if v}
        if not key:
            same = [
                s["private_key"]
                for s in stored
                if (s.get("domain"), s.get("selector")) == (parts["domain"], parts["selector"])
            ]
            key = same[0] if same else ""
        if key:
            item["private_key"] = key
        keys.append(item)
        rows.append(i)
    return keys, rows


def apply_form(
    config: ChannelsConfig, channel: str, backend: str, form: Mapping[str, str], rows: list[int]
) -> ChannelsConfig:
    """The whole configuration with this channel's section replaced by the form's, checked
    by the API's model; InvalidInput with the API's paths otherwise (every problem at once).
    ``rows`` receives the form row of each DKIM key, to place their problems."""
    doc, found_rows, problems = section_from_form(config, channel, backend, form)
    rows[:] = found_rows
    try:
        changed = with_section(config, channel, doc, merge=False)
    except InvalidInput as exc:
        seen = {p.where for p in problems}
        problems += [p for p in exc.problems if p.where not in seen]
    if problems:
        raise InvalidInput(problems)
    return changed


_INDEX = re.compile(r"^dkim\[(\d+)\]")


def place(problems: list[Problem], channel: str, dkim_rows: list[int]) -> dict[str, list[Problem]]:
    """Each problem under the input it is about: ``port``, ``dkim.2`` (a form row), or ""
    for the form as a whole (a backend that cannot be made from valid settings)."""
    placed: dict[str, list[Problem]] = {}
    for p in problems:
        where = p.where.removeprefix(channel).removeprefix(".")
        key = ""
        found = _INDEX.match(where)
        if found and int(found[1]) < len(dkim_rows):
            key = f"dkim.{dkim_rows[int(found[1])]}"
        elif where:
            key = re.split(r"[.\[]", where, maxsplit=1)[0]
        placed.setdefault(key, []).append(p)
    return placed


def refilled(
    config: ChannelsConfig, channel: str, backend: str, form: Mapping[str, str]
) -> ChannelForm:
    """The form as it was sent, for a 422 answer: every input but the secrets."""
    shown = blank_form(config, channel, backend)
    secrets = {f"f-{f.name}" for f in shown.fields if f.kind in ("secret", "secret_text")}
    secrets.add("f-auth_header-value")
    shown.values = {
        k: str(v)
        for k, v in form.items()
        if k.startswith("f-") and k not in secrets and not k.endswith("-private_key")
    }
    shown.dkim_rows = _rows(form)
    stored = stored_section(config, channel, backend).get("dkim") or []
    pairs = {(s.get("domain"), s.get("selector")) for s in stored}
    for i in range(shown.dkim_rows):
        pair = tuple(shown.values.get(f"f-dkim-{i}-{p}", "").strip() for p in DKIM_PARTS[:2])
        shown.stored_secrets[f"f-dkim-{i}-private_key"] = pair in pairs
    return shown


def summary(config: ChannelsConfig, channel: str) -> list[dict[str, Any]]:
    """The channel's settings for the list: each value, or for a secret whether it is set."""
    section = dump(config).get(channel)
    if not isinstance(section, dict):
        return []
    backend = str(section["backend"])
    rows: list[dict[str, Any]] = []
    for f in form_fields(backend, backends_of(channel)[backend]):
        value = section.get(f.name)
        if f.kind in ("secret", "secret_text"):
            rows.append({"name": f.name, "secret": True, "set": value not in (None, "")})
        elif f.kind == "header":
            if value:
                rows.append({"name": f"{f.name} ({value[0]})", "secret": True, "set": True})
        elif f.kind == "dkim":
            for key in value or []:
                label = f"dkim {key['selector']}._domainkey.{key['domain']} ({key['algorithm']})"
                rows.append({"name": label, "secret": True, "set": bool(key.get("private_key"))})
        elif value not in (None, "", {}, []):
            rows.append({"name": f.name, "secret": False, "value": _text(value)})
    return rows
