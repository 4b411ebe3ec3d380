"""The playbook library's files: what a playbook file holds, read, checked and filled.

Each playbook is one plain YAML file in ``scenarios/library/``, reviewed like code: a
comment header with the marketing logic, the KPIs it moves and what to tune; ``pack``;
the ``segments`` it needs; the ``templates`` it sends (name, channel, kind, subject and
inbox preview per locale); and the ``scenario`` in exactly the form
:func:`~rapport.scenarios.model.parse_scenario` reads.

Template sources sit beside the YAML as ``templates/<name>.<locale>.mjml`` (e-mail) or
``.txt`` (SMS, push, Telegram), one per locale. E-mails are poured into one shared layout
(``templates/layout.<locale>.mjml``: header, footer, unsubscribe link), so a footer fix is
made once, and blocks many e-mails share (the product grid) are partials,
``templates/_<name>.<locale>.mjml``. A few *install-time* slots in double square brackets
are filled here: ``[[site_url]]`` and ``[[brand]]`` (the business's own), the layout's
``[[content]]`` and ``[[preview]]``, and ``[[<partial>]]``. Everything inside ``{{ }}``
and ``{% %}`` stays Jinja and is rendered per recipient at send time. (Jinja's own
``include`` is refused by the template sandbox, which is why sharing happens here, once,
rather than at render time.)

Loading touches no store: every problem of every file is reported at once, with the
file's name in its path, before the installer (``scenarios/library.py``) writes anything.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rapport.errors import InvalidInput, Problem
from rapport.messaging.templates.filters import LOCALES
from rapport.scenarios.model import Scenario, parse_scenario
from rapport.segments.problems import pydantic_problems

LIBRARY_DIR = Path(__file__).parent / "library"
DEFAULT_LOCALE = "ru"
PACKS = ("retail", "bank")
EXTENSIONS = {"mjml": "mjml", "text": "txt"}
SLOT = re.compile(r"\[\[\s*([a-z_]+)\s*\]\]")
# Safe to paste anywhere in a template, inside a Jinja string literal or an attribute.
SITE_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~\-/%]*)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Strict):
    """A segment the playbook needs (e.g. a schedule trigger's audience)."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    rules: dict[str, Any]


class TemplateSpec(_Strict):
    """A template's header; its bodies are files named after it, one per locale."""

    name: str = Field(min_length=1, max_length=200)
    channel: str
    kind: Literal["mjml", "text"]
    subject: dict[str, str] = Field(default_factory=dict)
    preview: dict[str, str] = Field(default_factory=dict)  # the inbox preheader (e-mail)


class PlaybookFile(_Strict):
    pack: Literal["retail", "bank"]
    segments: list[SegmentSpec] = Field(default_factory=list)
    templates: list[TemplateSpec] = Field(min_length=1)
    scenario: dict[str, Any]


@dataclass(frozen=True)
class Brand:
    """The business the library's messages speak for; filled into ``[[…]]`` slots."""

    site_url: str = "https://shop.example.com"
    name: str = "Example Shop"

    def problems(self) -> list[Problem]:
        found = []
        if not SITE_URL.match(self.site_url):
            found.append(Problem("site_url", "an http(s) URL of letters, digits and . - / _ ~ %"))
        if not (0 < len(self.name) <= 100) or re.search(r"[{}\[\]\\\n\r]", self.name):
            found.append(Problem("brand", "1 to 100 characters, without { } [ ] \\ or newlines"))
        return found

    def as_json(self) -> dict[str, str]:
        return {"site_url": self.site_url, "name": self.name}


@dataclass(frozen=True)
class LibraryTemplate:
    name: str
    channel: str
    kind: str
    default_locale: str
    variants: dict[str, dict[str, str]]

    def content(self) -> dict[str, Any]:
        """What decides whether the stored template is this one (the name aside)."""
        return {
            "channel": self.channel,
            "kind": self.kind,
            "default_locale": self.default_locale,
            "variants": self.variants,
        }


@dataclass(frozen=True)
class Playbook:
    key: str  # the file's stem: what ``--only`` takes besides the scenario's name
    pack: str
    segments: tuple[SegmentSpec, ...]
    templates: tuple[LibraryTemplate, ...]
    scenario: Scenario

    @property
    def name(self) -> str:
        return self.scenario.name


# -- loading ------------------------------------------------------------------------------


def load_library(brand: Brand | None = None, directory: Path = LIBRARY_DIR) -> list[Playbook]:
    """Every playbook in ``directory``, checked and filled; ``InvalidInput`` lists every
    problem of every file at once, each prefixed with the file's name."""
    brand = brand or Brand()
    brand = Brand(brand.site_url.rstrip("/"), brand.name.strip())  # links add their own /
    problems = brand.problems()
    if problems:
        raise InvalidInput(problems)
    folder = directory / "templates"
    layouts = {loc: _read(folder / f"layout.{loc}.mjml", problems) for loc in LOCALES}
    partials = {loc: _partials(folder, loc, brand, problems) for loc in LOCALES}
    found: list[Playbook] = []
    names: dict[tuple[str, str], str] = {}
    for path in sorted(directory.glob("*.yaml")):
        playbook = _load_one(path, brand, layouts, partials, problems)
        if playbook is None:
            continue
        items = [("scenario", playbook.name), *(("template", t.name) for t in playbook.templates)]
        for kind, item in items:
            if (kind, item) in names:
                other = names[kind, item]
                problems.append(Problem(path.name, f"{kind} {item!r} is also defined in {other}"))
            names[kind, item] = path.name
        found.append(playbook)
    if problems:
        raise InvalidInput(problems)
    return found


def _read(path: Path, problems: list[Problem]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(path.name, f"cannot read: {exc.strerror or exc}"))
        return ""


def _html_slots(brand: Brand) -> dict[str, str]:
    return {"site_url": brand.site_url, "brand": html.escape(brand.name)}


def _partials(folder: Path, locale: str, brand: Brand, problems: list[Problem]) -> dict[str, str]:
    """``_<name>.<locale>.mjml`` blocks (a product grid) that e-mails use as ``[[name]]``."""
    found = {}
    for path in sorted(folder.glob(f"_*.{locale}.mjml")):
        name = path.name[1 : -len(f".{locale}.mjml")]
        found[name] = _fill(_read(path, problems), _html_slots(brand), path.name, problems)
    return found


def _load_one(
    path: Path,
    brand: Brand,
    layouts: Mapping[str, str],
    partials: Mapping[str, Mapping[str, str]],
    problems: list[Problem],
) -> Playbook | None:
    where = path.stem
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = PlaybookFile.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        problems.append(Problem(path.name, str(exc)))
        return None
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, where))
        return None
    before = len(problems)
    made = [
        _template(path.parent, where, t, brand, layouts, partials, problems) for t in spec.templates
    ]
    try:
        scenario = parse_scenario(spec.scenario, f"{where}.scenario")
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return None
    if len(problems) > before:
        return None
    return Playbook(where, spec.pack, tuple(spec.segments), tuple(made), scenario)


def _template(
    directory: Path,
    where: str,
    spec: TemplateSpec,
    brand: Brand,
    layouts: Mapping[str, str],
    partials: Mapping[str, Mapping[str, str]],
    problems: list[Problem],
) -> LibraryTemplate:
    at = f"{where}.templates.{spec.name}"
    html_safe = _html_slots(brand)
    plain = {"site_url": brand.site_url, "brand": brand.name}
    for field_name, per_locale in (("subject", spec.subject), ("preview", spec.preview)):
        for loc in sorted(set(per_locale) - set(LOCALES)):
            problems.append(Problem(f"{at}.{field_name}.{loc}", f"locale is one of {LOCALES}"))
    variants: dict[str, dict[str, str]] = {}
    for loc in LOCALES:
        file = directory / "templates" / f"{spec.name}.{loc}.{EXTENSIONS[spec.kind]}"
        if not file.exists():
            problems.append(Problem(f"{at}.{loc}", f"no file templates/{file.name}"))
            continue
        body = file.read_text(encoding="utf-8")
        subject = _fill(spec.subject.get(loc, ""), plain, f"{at}.subject.{loc}", problems)
        if spec.kind == "mjml":
            content = _fill(body, {**partials[loc], **html_safe}, f"{at}.{loc}", problems)
            preview = _fill(spec.preview.get(loc, ""), html_safe, f"{at}.preview", problems)
            slots = {**html_safe, "content": content.strip("\n"), "preview": preview}
            body = _fill(layouts[loc], slots, f"layout.{loc}", problems)
        else:
            body = _fill(body, plain, f"{at}.{loc}", problems)
        variants[loc] = {"subject": subject, "body": body}
    return LibraryTemplate(spec.name, spec.channel, spec.kind, DEFAULT_LOCALE, variants)


def _fill(text: str, values: Mapping[str, str], where: str, problems: list[Problem]) -> str:
    """Fill ``[[slot]]``s; an unknown slot is a problem, not a silent blank."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            problems.append(Problem(where, f"unknown slot [[{name}]]"))
            return match.group(0)
        return values[name]

    return SLOT.sub(one, text)


def select(
    playbooks: Sequence[Playbook], only: Iterable[str] = (), pack: str | None = None
) -> list[Playbook]:
    """The playbooks ``--only`` (file stem or scenario name) and ``--pack`` ask for."""
    wanted = list(only)
    problems: list[Problem] = []
    if pack is not None and pack not in PACKS:
        problems.append(Problem("pack", f"one of {', '.join(PACKS)}"))
    known = {p.key for p in playbooks} | {p.name for p in playbooks}
    for name in wanted:
        if name not in known:
            choices = ", ".join(p.key for p in playbooks)
            problems.append(Problem("only", f"no playbook {name!r}; the library has {choices}"))
    if problems:
        raise InvalidInput(problems)
    return [
        p
        for p in playbooks
        if (not wanted or p.key in wanted or p.name in wanted) and (pack in (None, p.pack))
    ]
