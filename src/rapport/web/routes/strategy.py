"""The CRM-strategy document from the UI: ``/strategy.pdf`` and ``/strategy.html``.

For the roles with ``export`` (the button on the Reports page shows only to them). The
period is a preset (default the last 90 days) and the language the page's, unless
``locale`` asks for the other one, so a marketer reading the UI in English can still file
the document in Russian. The HTML is served with its own Content-Security-Policy: it needs
its inline styles, and nothing may run in it. The content is ``rapport.strategy``'s, the
same as ``rapport strategy export`` and ``GET /api/strategy``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rapport.access.roles import Permission
from rapport.errors import InvalidInput
from rapport.strategy import MEDIA_TYPES, export, file_name
from rapport.strategy.export import DEFAULT_PERIOD, check
from rapport.strategy.html import CONTENT_SECURITY_POLICY
from rapport.web.context import Page, require
from rapport.web.i18n import N_, translations

router = APIRouter(include_in_schema=False)

# The document's words (rapport.strategy.words.WORDS), marked for the UI's catalog;
# tests/test_strategy_words.py checks that the two lists agree.
STRATEGY_WORDS = (
    N_("CRM strategy"),
    N_("Period: %(first)s — %(last)s"),
    N_("Generated %(when)s"),
    N_("Contents"),
    N_("Not enough data"),
    N_("%(n)s days"),
    N_("Yes"),
    N_("No"),
    N_("Key figures"),
    N_(
        "The figures of the period, counted as the dashboard and the reports count them. Where there is too little data to say anything, the figure says so instead of a number."
    ),
    N_("Metric"),
    N_("Value"),
    N_("How it is counted"),
    N_("Messages per day, with the open and click rates"),
    N_("Revenue"),
    N_("Order totals less refunds, of the orders placed in the period"),
    N_("Orders"),
    N_("Completed orders placed in the period; cancelled ones never count"),
    N_("Buyers"),
    N_("Customers with at least one order in the period"),
    N_("Active customers"),
    N_("Customers with an order within the lapse threshold at some moment of the period"),
    N_("Average check"),
    N_("Revenue ÷ orders"),
    N_("ARPU"),
    N_("Revenue ÷ active customers"),
    N_("Share of repeat orders"),
    N_("Orders that are not the customer's first order ever ÷ all orders"),
    N_("Time to repeat purchase (median)"),
    N_(
        "Days from the first order to the second, for customers whose second order was in the period"
    ),
    N_("Churn"),
    N_("Of the customers active at the start of the period, the share lapsed at its end"),
    N_("LTV"),
    N_("Purchase frequency × average check × lifetime (1 ÷ churn periods)"),
    N_("CAC ceiling"),
    N_("The most a new customer may cost to break even: LTV × gross margin (30%)"),
    N_("Revenue from CRM messages"),
    N_("Revenue of the orders credited to a message by the attribution rules"),
    N_("Share of revenue from CRM"),
    N_("Revenue from CRM messages ÷ revenue"),
    N_("Messages sent"),
    N_("Messages of every channel sent in the period"),
    N_("Open rate"),
    N_("Opened ÷ delivered"),
    N_("Click rate (CTR)"),
    N_("Clicked ÷ delivered"),
    N_("Unsubscribe rate"),
    N_("Unsubscribed ÷ delivered"),
    N_("Active scenarios"),
    N_("Scenarios running now"),
    N_("Segments"),
    N_(
        "%(n)s segments and lists. A size is the number of customers in it now; membership stays current as events arrive."
    ),
    N_("No segments yet."),
    N_("Segment"),
    N_("Kind"),
    N_("Customers now"),
    N_("Rule"),
    N_("Static list"),
    N_("A static list: customers are added by an import or through the API."),
    N_("The stored rule no longer checks out; open it in the segment builder."),
    N_("Scenarios"),
    N_(
        "The active and paused scenarios. The figures and the maps count the runs that started in the period, and the orders credited to each scenario's messages."
    ),
    N_("No active or paused scenarios."),
    N_("Scenario"),
    N_("Status"),
    N_("Priority"),
    N_("Entered"),
    N_("Sent"),
    N_("Conversion"),
    N_("active"),
    N_("paused"),
    N_("Trigger: %(words)s"),
    N_("Journey map"),
    N_("The stored definition no longer checks out; open it in the scenario editor."),
    N_("Communication policy"),
    N_(
        "One policy applies to every campaign and scenario: consent, frequency caps, quiet hours and priorities. Transactional messages bypass caps, quiet hours and the global control group, but never an unsubscribe or a suppressed address."
    ),
    N_("Channel"),
    N_("Consent required"),
    N_("Frequency cap"),
    N_("at most %(n)s per %(days)s days"),
    N_("the last %(slots)s kept for priority %(priority)s and above"),
    N_("no cap"),
    N_("Across all channels: %(cap)s."),
    N_(
        "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; messages are delayed to the end of the window."
    ),
    N_(
        "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; messages are not sent."
    ),
    N_("No quiet hours."),
    N_("Customers without a time zone are taken to be in %(zone)s."),
    N_(
        "Global control group: %(percent)s of customers get no marketing at all, so what CRM as a whole earns can be measured."
    ),
    N_("Global control group: off."),
    N_(
        "Priorities: when a frequency cap keeps its last slots in reserve, they go to senders of a high priority (0–100, normal 50); each scenario's priority is in the table of scenarios."
    ),
    N_("Loyalty programme"),
    N_("The programme is on (version %(version)s)."),
    N_("The programme is saved but switched off (version %(version)s)."),
    N_("Setting"),
    N_("Base accrual"),
    N_("%(percent)s of the order"),
    N_("One point is worth"),
    N_("Smallest order that earns points"),
    N_("Payable with points"),
    N_("up to %(percent)s of an order"),
    N_("Points become spendable after"),
    N_("Points expire after"),
    N_("never"),
    N_("Tiers are reached by"),
    N_("spend in %(days)s days"),
    N_("orders in %(days)s days"),
    N_("Tier"),
    N_("Threshold"),
    N_("Accrual"),
    N_("Discount"),
    N_("base rate"),
    N_("No tiers."),
    N_("Bonus"),
    N_("Points"),
    N_("Registration"),
    N_("Birthday"),
    N_("Review"),
    N_("Comeback after %(days)s days"),
)


@router.get("/strategy.{fmt}")
def strategy_document(
    fmt: str,
    period: str = DEFAULT_PERIOD,
    locale: str | None = None,
    page: Page = Depends(require(Permission.EXPORT)),
) -> Response:
    """The document as a download; a bad format, period or language answers 422 naming
    the values each may take."""
    language = locale or page.language
    try:
        fmt, language, period = check(fmt, language, period)
    except InvalidInput as exc:
        return Response(
            "; ".join(str(p) for p in exc.problems),
            status_code=422,
            media_type="text/plain; charset=utf-8",
        )
    now = page.clock.now()
    with page.engine.connect() as conn:
        body, span = export(conn, fmt, period, now, language, translations(language).gettext)
    headers = {
        "Content-Disposition": f'attachment; filename="{file_name(fmt, span, language)}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Language": language,
    }
    if fmt == "html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
