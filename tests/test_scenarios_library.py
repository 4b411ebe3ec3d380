"""The playbook library: every file parses with the real model, installs into an empty
store on SQLite and PostgreSQL, re-installs without changing anything, updates what
changed (and only what the library itself installed), renders for a real customer in
ru and en, and the abandoned cart runs through the engine."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import SimulatedClock
from rapport.customers.consents import ConsentChange, set_consents
from rapport.errors import InvalidInput
from rapport.messaging.templates.render import build_context, render
from rapport.messaging.templates.store import all_templates, get_template, update_template
from rapport.pipeline import Pipeline
from rapport.scenarios.engine import Engine, Observed
from rapport.scenarios.index import ScenarioIndex
from rapport.scenarios.library import (
    LIBRARY_DIR,
    Brand,
    install,
    load_library,
)
from rapport.scenarios.model import parse_scenario
from rapport.scenarios.steps import StepContext
from rapport.scenarios.store import all_scenarios, find_scenario, set_status
from rapport.segments.definitions import find_segment, sizes
from rapport.store.engine import writing
from rapport.store.tables import customers, outbox, scenario_runs
from tests.conftest import T0
from tests.helpers import table_counts
from tests.shop_helpers import add_customer

PLAYBOOKS = {
    "welcome",
    "abandoned-cart",
    "abandoned-browse",
    "cross-sell",
    "reactivation",
    "win-back",
    "birthday",
    "opened-not-clicked",
    "service-offer",
    "early-access",
    "bank-application",
    "bank-activation",
    "bank-usage",
    "bank-cross-sell",
    "bank-support",
}


def _install(engine: sa.Engine, **options: Any) -> dict[str, Any]:
    with writing(engine) as conn:
        return {item.key: item for item in install(conn, T0, **options)}


# -- the files --------------------------------------------------------------------------


def test_every_file_is_a_documented_scenario_of_the_real_model() -> None:
    files = sorted(LIBRARY_DIR.glob("*.yaml"))
    assert {f.stem for f in files} == PLAYBOOKS
    for path in files:
        text = path.read_text(encoding="utf-8")
        header = [line for line in text.splitlines() if line.startswith("#")]
        # the marketing logic, the KPIs and what to tune, before any YAML
        assert text.startswith("# "), path.name
        joined = "\n".join(header)
        assert "Why:" in joined and "KPIs" in joined and "Tune:" in joined, path.name
        data = yaml.safe_load(text)
        scenario = parse_scenario(data["scenario"], path.stem)
        assert scenario.name == f"playbook-{path.stem}"
        assert scenario.definition.description
        for template in data["templates"]:
            assert template["name"].startswith("playbook-")
    bank = [p for p in load_library() if p.pack == "bank"]
    events = {p.scenario.trigger.event for p in bank}
    assert events == {
        "Application Submitted",
        "Card Activated",
        "Login",
        "Transaction Made",
        "Support Call",
    }
    # the scoring trait decides somewhere in the pack
    assert any("traits.score" in str(p.scenario.to_json()) for p in bank)


def test_templates_have_both_locales_and_an_unsubscribe_link() -> None:
    for playbook in load_library():
        for template in playbook.templates:
            assert set(template.variants) == {"ru", "en"}, template.name
            assert template.default_locale == "ru"
            for variant in template.variants.values():
                assert "[[" not in variant["body"] and "[[" not in variant["subject"]
                if template.channel == "email":
                    assert "{{ unsubscribe_url }}" in variant["body"]
                    assert variant["subject"]


def test_a_bad_library_names_the_file_and_place(tmp_path: Path) -> None:
    library = _copy_library(tmp_path)
    (library / "welcome.yaml").write_text(
        (library / "welcome.yaml").read_text().replace("then: holdout", "then: nowhere")
    )
    (library / "templates" / "playbook-cart-2.en.mjml").unlink()
    body = library / "templates" / "playbook-browse.ru.mjml"
    body.write_text(body.read_text() + "[[nope]]\n")
    with pytest.raises(InvalidInput) as err:
        load_library(directory=library)
    wheres = {p.where for p in err.value.problems}
    assert "welcome.scenario.steps[0].branch.then" in wheres
    assert "abandoned-cart.templates.playbook-cart-2.en" in wheres
    assert "abandoned-browse.templates.playbook-browse.ru" in wheres


def test_brand_is_checked() -> None:
    with pytest.raises(InvalidInput) as err:
        load_library(Brand(site_url="javascript:alert(1)", name="{{ evil }}"))
    assert {p.where for p in err.value.problems} == {"site_url", "brand"}


# -- installing --------------------------------------------------------------------------


def test_installs_into_an_empty_store_and_reinstall_changes_nothing(engine: sa.Engine) -> None:
    report = _install(engine)
    assert set(report) == PLAYBOOKS
    assert {item.result for item in report.values()} == {"created"}
    assert {item.status for item in report.values()} == {"draft"}
    assert report["early-access"].segments == {"active buyers": "created"}
    assert report["birthday"].trigger == "date birthday -3 d at 10:00 local"
    with engine.connect() as conn:
        stored = all_scenarios(conn)
        names = [t.name for t in all_templates(conn)]
        segment = find_segment(conn, "active buyers")
    assert len(stored) == len(PLAYBOOKS)
    assert len(names) == len(set(names)) == sum(len(p.templates) for p in load_library())
    for scenario in stored:  # what is stored is the library's definition, parsed
        assert scenario.version == 1
        assert scenario.definition == scenario.parsed().to_json()
    assert segment.rules is not None and "lifecycle_stage" in str(segment.rules)

    before = table_counts(engine)
    again = _install(engine)
    assert {item.result for item in again.values()} == {"unchanged"}
    assert {r for item in again.values() for r in item.templates} == {"unchanged"}
    assert again["early-access"].segments == {"active buyers": "kept"}
    after = table_counts(engine)
    assert after == before  # no new rows anywhere: no versions, no duplicates
    with engine.connect() as conn:
        assert {t.version for t in all_templates(conn)} == {1}


def test_active_buyers_is_filled_when_created(engine: sa.Engine) -> None:
    buyer = add_customer(engine, T0, [(5, 100.0), (40, 80.0), (70, 50.0)])
    add_customer(engine, T0, [])
    with writing(engine) as conn:
        conn.execute(
            customers.update().where(customers.c.id == buyer).values(lifecycle_stage="active")
        )
    _install(engine, only=["early-access"])
    with engine.connect() as conn:
        segment = find_segment(conn, "active buyers")
        assert sizes(conn).get(segment.id) == 1


def test_a_changed_file_makes_a_new_version(engine: sa.Engine, tmp_path: Path) -> None:
    library = _copy_library(tmp_path)
    _install(engine, directory=library)
    cart = library / "abandoned-cart.yaml"
    cart.write_text(cart.read_text().replace("timeout: {hours: 2}", "timeout: {hours: 3}"))
    body = library / "templates" / "playbook-welcome-2.en.mjml"
    body.write_text(body.read_text().replace("See the bestsellers", "See what is hot"))
    report = _install(engine, directory=library)
    assert report["abandoned-cart"].result == "updated"
    assert report["abandoned-cart"].templates == {"unchanged": 4}
    assert report["welcome"].result == "unchanged"
    assert report["welcome"].templates == {"updated": 1, "unchanged": 2}
    assert {k for k, item in report.items() if item.result != "unchanged"} == {"abandoned-cart"}
    with engine.connect() as conn:
        scenario = find_scenario(conn, "playbook-abandoned-cart")
        assert scenario.version == 2
        assert scenario.definition["steps"][0]["wait"]["timeout"]["hours"] == 3
        welcome = {t.name: t for t in all_templates(conn)}["playbook-welcome-2"]
        assert welcome.version == 2 and "See what is hot" in welcome.variants["en"]["body"]
    assert {item.result for item in _install(engine, directory=library).values()} == {"unchanged"}


def test_edits_made_in_the_store_are_kept_unless_forced(engine: sa.Engine) -> None:
    _install(engine, only=["win-back"])
    with writing(engine) as conn:
        mine = {t.name: t for t in all_templates(conn)}["playbook-win-back-sms"]
        edited = {**mine.variants, "ru": {"subject": "", "body": "Наш собственный текст"}}
        update_template(conn, mine.id, T0, variants=edited)
    report = _install(engine, only=["win-back"])
    assert report["win-back"].templates == {"kept": 1, "unchanged": 1}
    with engine.connect() as conn:
        assert get_template(conn, mine.id).variants["ru"]["body"] == "Наш собственный текст"
    report = _install(engine, only=["win-back"], force=True)
    assert report["win-back"].templates == {"updated": 1, "unchanged": 1}
    with engine.connect() as conn:
        assert "Наш собственный текст" not in get_template(conn, mine.id).variants["ru"]["body"]


def test_only_activate_and_status_kept(engine: sa.Engine) -> None:
    report = _install(engine, only=["abandoned-cart", "playbook-birthday"], activate=True)
    assert set(report) == {"abandoned-cart", "birthday"}
    assert {item.status for item in report.values()} == {"active"}
    with writing(engine) as conn:
        set_status(conn, find_scenario(conn, "playbook-birthday").id, "paused", T0)
    report = _install(engine, pack="retail")
    assert len(report) == 10 and report["birthday"].status == "paused"
    assert report["welcome"].status == "draft" and report["welcome"].result == "created"
    before = table_counts(engine)
    with pytest.raises(InvalidInput) as err, writing(engine) as conn:
        install(conn, T0, only=["no-such-playbook"])
    assert "abandoned-cart" in err.value.problems[0].reason  # lists what there is
    assert table_counts(engine) == before


def test_brand_fills_links_and_is_remembered(engine: sa.Engine) -> None:
    _install(engine, only=["abandoned-cart"], brand=Brand("https://shop.test", "Ромашка & Co"))
    with engine.connect() as conn:
        found = {t.name: t for t in all_templates(conn)}
    email = found["playbook-cart-1"].variants["ru"]["body"]
    assert 'href="https://shop.test/cart"' in email and "Ромашка &amp; Co" in email
    assert "Ромашка & Co" not in email
    assert "https://shop.test/cart" in found["playbook-cart-telegram"].variants["en"]["body"]
    report = _install(engine, only=["abandoned-cart"])  # no brand given: the remembered one
    assert report["abandoned-cart"].templates == {"unchanged": 4}


def test_a_failing_install_stores_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    library = _copy_library(tmp_path)
    body = library / "templates" / "playbook-win-back.en.mjml"
    body.write_text(body.read_text().replace("{% endif %}</mj-text>", "{% endfi %}</mj-text>"))
    before = table_counts(engine)
    with pytest.raises(InvalidInput) as err, writing(engine) as conn:
        install(conn, T0, directory=library)
    where = err.value.problems[0].where
    assert where.startswith("win-back.templates.playbook-win-back.variants.en.body:")
    assert table_counts(engine) == before


# -- rendering ---------------------------------------------------------------------------

PRODUCTS = [
    {
        "id": "sku-1",
        "name": "Кроссовки «Бег»",
        "price": 5990.0,
        "currency": "RUB",
        "url": "https://shop.example.com/p/1",
        "image_url": "https://cdn.example.com/1.jpg",
    }
]
EVENT = {
    "name": "Sample",
    "properties": {
        "order_id": "A-100",
        "cart_id": "c1",
        "total": 11980.0,
        "currency": "RUB",
        "products": PRODUCTS,
        "name": "Кроссовки «Бег»",
        "price": 5990.0,
        "category": "Обувь",
        "filters": [{"type": "size", "value": "42"}],
        "application_id": "ap-7",
        "product": "Cashback",
        "amount": 45000.0,
    },
}


def test_every_template_renders_for_a_customer_in_ru_and_en(engine: sa.Engine) -> None:
    _install(engine)
    cid = add_customer(engine, T0, [(40, 5990.0), (10, 11980.0)])
    with writing(engine) as conn:
        conn.execute(
            customers.update()
            .where(customers.c.id == cid)
            .values(first_name="Анна", timezone="Asia/Vladivostok", traits={"score": 731})
        )
        conn.execute(
            sa.text("UPDATE customers SET birthday = :b WHERE id = :i"),
            {"b": "1990-03-04", "i": cid},
        )
    with engine.connect() as conn:
        stored = all_templates(conn)
        for template in stored:
            for locale in ("ru", "en"):
                for products, event, loyalty in (
                    (PRODUCTS, EVENT, {"balance": 300, "tier": None, "points_expiring": 0}),
                    ((), None, None),  # nothing but the card: still a sensible message
                ):
                    context = build_context(
                        conn,
                        cid,
                        T0,
                        locale=locale,
                        event=event,
                        products=products,
                        loyalty=loyalty,
                    )
                    assert context is not None
                    context["unsubscribe_url"] = "https://rapport.example/u/token"
                    _, compiled = template.variant(locale)
                    out = render(compiled, context)
                    where = f"{template.name} {locale}"
                    text = out.text
                    assert text.strip(), where
                    assert "None" not in text and "None" not in out.subject, where
                    if template.channel == "email":
                        assert out.subject and out.html, where
                        assert "https://rapport.example/u/token" in out.html, where
                        word = "Отписаться" if locale == "ru" else "Unsubscribe"
                        assert word in text, where
                    if template.channel == "sms":  # five parts at most, in Cyrillic
                        assert len(text) <= 5 * 67, where
                    if template.channel == "sms" or template.channel == "email":
                        cyrillic = any("а" <= ch <= "я" for ch in text.lower().replace("анна", ""))
                        names = any(p["name"] in text for p in PRODUCTS)
                        if locale == "ru":
                            assert cyrillic, where
                        elif not names:
                            assert not cyrillic, where
                    if products and "{% set items" in template.variants[locale]["body"]:
                        assert "5\xa0990" in text or "5,990" in text, where  # money filter
                    if "customer.first_name" in template.variants[locale]["body"]:
                        assert "Анна" in text, where


# -- through the engine -----------------------------------------------------------------


def test_abandoned_cart_through_the_engine(engine: sa.Engine) -> None:
    _install(engine, only=["abandoned-cart"], activate=True)
    cid = add_customer(engine, T0)
    with writing(engine) as conn:
        conn.execute(
            customers.update()
            .where(customers.c.id == cid)
            .values(first_name="Анна", email="anna@example.com")
        )
        set_consents(conn, [ConsentChange(cid, "email", "subscribed", "test", T0)])
    eng = Engine(ScenarioIndex(ttl=0), StepContext(recorder=Pipeline(engine, SimulatedClock(T0))))

    def react(at: Any, event: str, props: dict[str, Any]) -> None:
        with writing(engine) as conn:
            eng.react(conn, [Observed(cid, event, props)], at)

    def tick(at: Any) -> None:
        with writing(engine) as conn:
            eng.run_due(conn, at)

    def keys() -> list[str]:
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(outbox.c.idempotency_key)).scalars())

    hat = {"cart_id": "c1", "name": "Шапка", "price": 1990.0, "url": "https://s/h1"}
    react(T0, "Product Added", hat)
    react(
        T0 + timedelta(hours=1), "Product Added", {"cart_id": "c1", "name": "Шарф", "price": 990.0}
    )
    react(
        T0 + timedelta(hours=1), "Product Added", {"cart_id": "c2", "name": "Носки", "price": 290}
    )
    tick(T0 + timedelta(hours=2, minutes=5))
    assert keys() == []  # another item in c1 an hour later restarted its two hours
    tick(T0 + timedelta(hours=3, minutes=5))
    assert keys() == ["run:1:step:first", "run:2:step:first"]  # c1 and c2, once each
    with engine.connect() as conn:
        first = conn.execute(
            sa.select(outbox).where(outbox.c.idempotency_key == "run:1:step:first")
        ).one()
    assert first.channel == "email" and first.recipient == "anna@example.com"
    assert "Анна" in first.subject and "Шарф" in first.body_text  # the latest item added
    assert "990\xa0₽" in first.body_text  # money, in the customer's locale
    # the order of cart c1 ends c1's run as converted; c2 gets its reminder
    react(T0 + timedelta(hours=5), "Order Completed", {"cart_id": "c1", "order_id": "o1"})
    tick(T0 + timedelta(days=2))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(scenario_runs.c.entity_key, scenario_runs.c.status)).all()
    status = {key: value for key, value in rows}
    assert status["c1"] == "converted"
    assert keys() == ["run:1:step:first", "run:2:step:first", "run:2:step:second"]


# -- the command -------------------------------------------------------------------------


def test_cli_installs_and_reinstalls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    args = ["scenarios", "install-library", "--database-url", url]
    result = runner.invoke(cli, [*args, "--site-url", "https://shop.test", "--brand", "Shop"])
    assert result.exit_code == 0, result.output
    assert "playbook-abandoned-cart" in result.output
    assert f"{len(PLAYBOOKS)} playbooks: {len(PLAYBOOKS)} created." in result.output
    assert "Segments: active buyers (created)" in result.output
    result = runner.invoke(cli, [*args, "--only", "welcome", "--activate"])
    assert result.exit_code == 0, result.output
    assert "1 playbooks: 1 unchanged." in result.output and "active" in result.output
    result = runner.invoke(cli, [*args, "--only", "nope"])
    assert result.exit_code == 1 and "no playbook 'nope'" in result.output
    result = runner.invoke(cli, [*args, "--site-url", "ftp://x"])
    assert result.exit_code == 1 and "site_url" in result.output


def _copy_library(tmp_path: Path) -> Path:
    target = tmp_path / "library"
    shutil.copytree(LIBRARY_DIR, target)
    return target
