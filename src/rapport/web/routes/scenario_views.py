"""What the Scenarios pages show, gathered from the domain functions the API uses.

Kept apart from the routes (``scenarios.py``) so each stays small: the list's figures
(``stats.summaries`` of every scenario for the last 30 days, ``stats.live_runs``, and the
attributed orders and revenue of ``message_metrics(..., "scenario_step")``), a scenario's
page (its journey map in the page's language, with the figures of a period and version),
the playbook library (read once per process), and the dry-run form (checked here, run by
``scenarios.dry_run``). Nothing is counted here that the API does not count the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
import yaml

from rapport.analytics.message_metrics import MessageFilter, message_metrics
from rapport.analytics.periods import Period, parse_period
from rapport.errors import InvalidInput
from rapport.scenarios import library, stats, store
from rapport.scenarios.diagram import KIND_WORDS, Formats, journey_map, trigger_words
from rapport.scenarios.dry_run import DryRunError, DryRunReport, dry_run
from rapport.scenarios.dry_run_sandbox import SandboxError
from rapport.scenarios.model import Scenario, parse_scenario
from rapport.web.i18n import N_, environment, translations
from rapport.web.routes.dashboard import DEFAULT_PERIOD, PERIODS

LIST_PERIOD = "last_30_days"  # the list's "entered", "sent" and revenue
MAX_SAMPLE = 100_000  # the most customers a dry run from the page replays
SAMPLE_SHOWN = 10  # customers in the report's sample table

# The journey map's words (scenarios.diagram_words.WORDS), marked for the UI's catalog;
# tests/test_web_scenarios.py checks that the two lists agree.
DIAGRAM_WORDS = (
    N_("Trigger"),
    N_("Send"),
    N_("Wait"),
    N_("Condition"),
    N_("Split"),
    N_("Action"),
    N_("Exit"),
    N_("End"),
    N_("The run ends"),
    N_("Journey map: %(name)s"),
    N_("Entered %(n)s"),
    N_(" · now %(n)s"),
    N_("In flight %(n)s"),
    N_("Converted %(n)s (%(rate)s)"),
    N_("Completed %(n)s"),
    N_("Sent %(n)s"),
    N_(" · skipped %(n)s"),
    N_("Opened %(n)s (%(rate)s)"),
    N_("Clicked %(n)s (%(rate)s)"),
    N_("Orders attributed %(n)s"),
    N_("Exited %(exited)s · failed %(failed)s"),
    N_("Goal: %(event)s within %(days)s d"),
    N_("yes"),
    N_("no"),
    N_("control"),
    N_("after %(time)s"),
    N_("conv. %(rate)s"),
    N_("%(n)s d"),
    N_("%(n)s h"),
    N_("%(n)s min"),
    N_("transactional"),
    N_("until %(window)s, local time"),
    N_("until %(event)s, at most %(time)s"),
    N_("opened %(step)s?"),
    N_("clicked %(step)s?"),
    N_("delivered %(step)s?"),
    N_("if %(rule)s"),
    N_("%(paths)s · control %(share)s"),
    N_("set %(attribute)s"),
    N_("add %(n)s points"),
    N_("issue a coupon %(series)s"),
    N_("call a webhook"),
    N_("add to list %(list)s"),
    N_("remove from list %(list)s"),
    N_("task: %(text)s"),
    N_("the run ends here"),
    N_("Event %(event)s"),
    N_("Event %(event)s where %(conditions)s"),
    N_("Enters segment %(segment)s"),
    N_("Leaves segment %(segment)s"),
    N_("Date %(date)s, %(shift)s, at %(hour)s local time"),
    N_("Date %(date)s at %(hour)s local time"),
    N_("%(n)s d before"),
    N_("%(n)s d after"),
    N_("No %(event)s for %(days)s d"),
    N_("Schedule %(cron)s (%(timezone)s), segment %(segment)s"),
    N_("Started through the API"),
    N_("birthday"),
)
# The dry run's caveats (scenarios.dry_run_report.CAVEATS), for the catalog.
DRY_RUN_CAVEATS = (
    N_("Nothing was sent or stored: the replay ran in a transaction that was rolled back."),
    N_(
        "Consents, suppressions, the policy's settings, customer attributes and segment "
        "membership are read as they are now, not as they were then."
    ),
    N_("Frequency caps count the messages really queued at the time plus the dry run's own."),
    N_("Actions are listed, not performed, so later steps do not see their effects."),
    N_(
        "Message outcomes (delivered, opened, clicked) are unknown: an outcome branch takes "
        "its 'else' path."
    ),
)
# What a line of the dry run's sample says happened (DryRunReport.timeline).
SAMPLE_WHAT = {
    "entered": N_("entered"),
    "converted": N_("converted"),
    "done": N_("done"),
    "exited": N_("exited"),
    "control": N_("control group"),
    "failed": N_("failed"),
    "in flight": N_("in flight"),
    "action": N_("action"),
    "would send": N_("would send"),
    "would defer": N_("would defer"),
    "would skip": N_("would skip"),
}
STATUS_LABELS = {
    "draft": N_("draft"),
    "active": N_("active"),
    "paused": N_("paused"),
    "archived": N_("archived"),
}


def diagram_language(language: str) -> tuple[Callable[[str], str], Formats]:
    """The map's translate function and number formats in the page's language."""
    filters = environment(language).filters
    return translations(language).gettext, Formats(
        number=filters["number"], percent=lambda x: filters["percent"](x), missing="—"
    )


def parsed_or_none(found: store.StoredScenario) -> Scenario | None:
    """The stored definition, or None if it no longer checks out (shown, not fatal)."""
    try:
        return found.parsed()
    except InvalidInput:
        return None


# -- the list ------------------------------------------------------------------------------


def list_rows(conn: sa.Connection, now: datetime, language: str) -> list[dict[str, Any]]:
    """Every scenario with its figures: runs live now and, for the last 30 days, runs
    entered, messages sent (both as ``/api/scenarios/{id}/stats?since=…`` counts them) and
    the orders and revenue attributed to its messages (as the Reports page counts them)."""
    period = parse_period(None, None, LIST_PERIOD, now.date())
    t, _ = diagram_language(language)
    live = stats.live_runs(conn)
    counted = stats.summaries(conn, period.start, period.end)
    earned: dict[str, tuple[int, float]] = {}
    for m in message_metrics(conn, period, MessageFilter(), "scenario_step"):
        sid = m.key.get("scenario_id")
        if sid is not None:
            orders, revenue = earned.get(str(sid), (0, 0.0))
            earned[str(sid)] = (orders + m.conversions, revenue + m.revenue)
    rows = []
    for found in store.all_scenarios(conn):
        scenario = parsed_or_none(found)
        row: dict[str, Any] = {
            "id": found.id,
            "name": found.name,
            "status": found.status,
            "version": found.version,
            "priority": found.definition.get("priority", 50),
            "live": live.get(found.id, 0),
            "trigger": trigger_words(scenario, t) if scenario else None,
            "entered": None,
            "sent": None,
            "conversion": None,
            "orders": earned.get(str(found.id), (0, 0.0))[0],
            "revenue": earned.get(str(found.id), (0, 0.0))[1],
        }
        if scenario is not None:
            figures = counted.get(found.id, {"entered": 0, "sent": 0, "conversion": None})
            row["entered"] = figures["entered"]
            row["sent"] = figures["sent"]
            row["conversion"] = figures["conversion"]
        rows.append(row)
    return rows


# -- the detail ----------------------------------------------------------------------------


def detail_map(
    conn: sa.Connection,
    found: store.StoredScenario,
    version: int | None,
    period: Period,
    language: str,
) -> tuple[Scenario | None, dict[str, Any] | None, str | None]:
    """The shown version's definition, its figures for runs started in ``period``, and its
    journey map with those figures and the orders attributed to each send step."""
    scenario = parsed_or_none(found)
    if version is not None and version != found.version:
        scenario = parse_scenario(store.version_definition(conn, found.id, version))
    if scenario is None:
        return None, None, None
    figures = stats.scenario_stats(conn, found.id, scenario, period.start, period.end)
    orders = {
        str(m.key["step"]): m.conversions
        for m in message_metrics(
            conn, period, MessageFilter(scenario_id=str(found.id)), "scenario_step"
        )
        if m.key.get("step")
    }
    t, formats = diagram_language(language)
    sends = {sid for sid, s in scenario.steps.items() if s.send is not None}
    svg = journey_map(
        scenario,
        figures,
        translate=t,
        formats=formats,
        id_prefix=f"jm{found.id}",
        conversions={sid: orders.get(sid, 0) for sid in sends},
    )
    return scenario, figures, svg


def _period_name(name: str) -> tuple[str, str | None]:
    """The period to show and, if the one asked for is unknown, its name (said on the page)."""
    return (name, None) if name in dict(PERIODS) else (DEFAULT_PERIOD, name)


def detail_context(
    engine: sa.Engine,
    now: datetime,
    language: str,
    found: store.StoredScenario,
    period_name: str,
    version: str,
) -> dict[str, Any]:
    """What the scenario page shows for a period and a version (``version`` as asked: an
    unknown one falls back to the current, and the page says so)."""
    period_name, bad_period = _period_name(period_name)
    period = parse_period(None, None, period_name, now.date())
    with engine.connect() as conn:
        saved = stats.versions(conn, found.id)
        numbers = [v["version"] for v in saved]
        shown = int(version) if version.isdigit() and int(version) in numbers else found.version
        scenario, figures, svg = detail_map(
            conn, found, None if shown == found.version else shown, period, language
        )
        definition = (
            found.definition
            if shown == found.version
            else store.version_definition(conn, found.id, shown)
        )
    t, _ = diagram_language(language)
    query = f"?period={period_name}" + ("" if shown == found.version else f"&version={shown}")
    return {
        "scenario": found,
        "status_labels": STATUS_LABELS,
        "kind_words": KIND_WORDS,
        "versions": saved,
        "shown_version": shown,
        "bad_version": version if version and str(shown) != version else None,
        "period_name": period_name,
        "periods": PERIODS,
        "period": period.as_json(),
        "bad_period": bad_period,
        "query": query,
        "svg": svg,
        "figures": figures,
        "trigger": trigger_words(scenario, t) if scenario else None,
        "yaml": yaml.safe_dump(definition, allow_unicode=True, sort_keys=False),
        "problems": [],
        # The dry-run form, empty until it is sent.
        "dry": DryRunForm(period="last_7_days", limit="1000"),
        "sample": [],
        "what_words": what_words,
        "scenario_id": found.id,
    }


# -- the library ---------------------------------------------------------------------------


@cache
def library_playbooks() -> tuple[library.Playbook, ...]:
    """The playbook library as shipped: read once per process (reading and filling its
    files takes a good part of a second, and they only change with a new release)."""
    return tuple(library.load_library())


def playbooks(installed: set[str], language: str) -> list[dict[str, Any]]:
    t, _ = diagram_language(language)
    return [
        {
            "key": p.key,
            "name": p.name,
            "pack": p.pack,
            "trigger": trigger_words(p.scenario, t),
            "steps": len(p.scenario.order),
            "installed": p.name in installed,
        }
        for p in library_playbooks()
    ]


# -- the dry run ---------------------------------------------------------------------------


@dataclass
class DryRunForm:
    period: str
    limit: str
    problems: dict[str, list[str]] = field(default_factory=dict)
    report: DryRunReport | None = None
    start: datetime | None = None
    end: datetime | None = None

    def refuse(self, where: str, reason: str) -> None:
        self.problems.setdefault(where, []).append(reason)


def run_dry(
    engine: sa.Engine,
    scenario_id: int,
    form: DryRunForm,
    now: datetime,
    periods: dict[str, str],
) -> DryRunForm:
    """Check the form, then replay the period (cut at now, as the command line does)."""
    limit: int | None = None
    if form.period not in periods:
        form.refuse("period", N_("Choose one of the periods offered."))
    text = form.limit.strip().replace(" ", "").replace(",", "")
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_SAMPLE:
            form.refuse("limit", N_("A whole number from 1 to 100,000, or empty for everyone."))
        else:
            limit = int(text)
    if form.problems:
        return form
    period = parse_period(None, None, form.period, now.date())
    form.start, form.end = period.start, min(period.end, now)
    try:
        form.report = dry_run(engine, scenario_id, form.start, form.end, limit_customers=limit)
    except (DryRunError, SandboxError, InvalidInput, store.ScenarioNotFound) as exc:
        for reason in getattr(exc, "problems", None) or [exc]:
            form.refuse("run", str(reason))
    return form


def sample(report: DryRunReport) -> list[tuple[str, list[tuple[datetime, str, str, str]]]]:
    """The first customers of the report, each with what would have happened, in order."""
    return [(report.label(cid), report.timeline(cid)) for cid in report.customers[:SAMPLE_SHOWN]]


def what_words(what: str, tr: Callable[[str], str]) -> str:
    """A sample line's verb in the page's language ("would send email")."""
    if what in SAMPLE_WHAT:
        return tr(SAMPLE_WHAT[what])
    verb, _, channel = what.rpartition(" ")
    if verb in SAMPLE_WHAT:
        return f"{tr(SAMPLE_WHAT[verb])} {channel}"
    return what
