"""The document as titled sections of typed blocks, in its language, for both renderers.

The HTML template and the PDF writer lay out the same blocks (a paragraph, a table, a rule
in words, a journey map, a chart), so the two files say the same thing in the same order
and a figure is formatted once. Everything here is text already translated and formatted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rapport.analytics.message_metrics import MessageMetrics
from rapport.messaging.channels.base import CHANNELS
from rapport.messaging.policy import Cap
from rapport.strategy.collect import Kpi, LoyaltyContent, StrategyContent
from rapport.strategy.language import Language
from rapport.strategy.words import KPI_WORDS


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # a side remark, set smaller


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()  # columns aligned right
    widths: tuple[float, ...] | None = None  # relative column widths; None: even


@dataclass(frozen=True)
class RuleWords:
    lines: list[tuple[int, str]]  # (depth, sentence)


@dataclass(frozen=True)
class Map:
    svg: str
    caption: str


@dataclass(frozen=True)
class Chart:
    rows: list[MessageMetrics]
    caption: str


@dataclass(frozen=True)
class Heading:
    text: str
    anchor: str


Block = Paragraph | Table | RuleWords | Map | Chart | Heading


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    language: str
    title: str
    shop: str | None
    period: str
    generated: str
    contents: str
    sections: list[Section]


def present(content: StrategyContent) -> Document:
    lang = content.language
    p = content.period
    sections = [
        _key_figures(content, lang),
        _segments(content, lang),
        _scenarios(content, lang),
        _policy(content, lang),
    ]
    if content.loyalty is not None:
        sections.append(_loyalty(content.loyalty, lang))
    return Document(
        language=lang.code,
        title=lang.t("CRM strategy"),
        shop=content.shop,
        period=lang.t(
            "Period: %(first)s — %(last)s", first=lang.day(p.first), last=lang.day(p.last)
        ),
        generated=lang.t("Generated %(when)s", when=lang.moment(content.generated_at)),
        contents=lang.t("Contents"),
        sections=sections,
    )


# -- key figures -----------------------------------------------------------------------------


def kpi_value(kpi: Kpi, lang: Language) -> str:
    """The figure as the document prints it, or "Not enough data" with the reason."""
    value = kpi.estimate.value
    if not kpi.estimate.ok or value is None:
        reason = kpi.estimate.reason
        return lang.t("Not enough data") + (f" ({reason})" if reason else "")
    if kpi.kind == "money":
        return lang.number(value, 2)
    if kpi.kind == "percent":
        return lang.percent(value)
    if kpi.kind == "days":
        return lang.t("%(n)s days", n=lang.number(value, 1))
    return lang.number(value)


def _key_figures(content: StrategyContent, lang: Language) -> Section:
    rows = []
    for kpi in content.kpis:
        name, definition = KPI_WORDS[kpi.key]
        rows.append([lang.t(name), kpi_value(kpi, lang), lang.t(definition)])
    section = Section("key-figures", lang.t("Key figures"))
    section.blocks = [
        Paragraph(
            lang.t(
                "The figures of the period, counted as the dashboard and the reports count them. "
                "Where there is too little data to say anything, the figure says so instead of a "
                "number."
            )
        ),
        Table(
            [lang.t("Metric"), lang.t("Value"), lang.t("How it is counted")],
            rows,
            frozenset({1}),
            (3, 2.6, 4.4),
        ),
    ]
    if any(m.sent for m in content.trend):
        section.blocks.append(
            Chart(content.trend, lang.t("Messages per day, with the open and click rates"))
        )
    return section


# -- segments ------------------------------------------------------------------------------


def _segments(content: StrategyContent, lang: Language) -> Section:
    section = Section("segments", lang.t("Segments"))
    found = content.segments
    if not found:
        section.blocks.append(Paragraph(lang.t("No segments yet.")))
        return section
    section.blocks.append(
        Paragraph(
            lang.t(
                "%(n)s segments and lists. A size is the number of customers in it now; "
                "membership stays current as events arrive.",
                n=lang.number(len(found)),
            )
        )
    )
    kinds = {"rules": lang.t("Rule"), "list": lang.t("Static list")}
    section.blocks.append(
        Table(
            [lang.t("Segment"), lang.t("Kind"), lang.t("Customers now")],
            [[s.name, kinds.get(s.kind, s.kind), lang.number(s.size)] for s in found],
            frozenset({2}),
        )
    )
    for s in found:
        section.blocks.append(Heading(f"{s.name} — {lang.number(s.size)}", f"segment-{s.id}"))
        if s.description:
            section.blocks.append(Paragraph(s.description, note=True))
        if s.kind != "rules":
            section.blocks.append(
                Paragraph(
                    lang.t("A static list: customers are added by an import or through the API.")
                )
            )
        elif s.rule is None:
            section.blocks.append(
                Paragraph(
                    lang.t("The stored rule no longer checks out; open it in the segment builder.")
                )
            )
        else:
            section.blocks.append(RuleWords(s.rule.lines()))
    return section


# -- scenarios -----------------------------------------------------------------------------


def _scenarios(content: StrategyContent, lang: Language) -> Section:
    section = Section("scenarios", lang.t("Scenarios"))
    found = content.scenarios
    if not found:
        section.blocks.append(Paragraph(lang.t("No active or paused scenarios.")))
        return section
    section.blocks.append(
        Paragraph(
            lang.t(
                "The active and paused scenarios. The figures and the maps count the runs that "
                "started in the period, and the orders credited to each scenario's messages."
            )
        )
    )
    statuses = {"active": lang.t("active"), "paused": lang.t("paused")}
    rows = []
    for s in found:
        f: dict[str, Any] = s.figures
        rows.append(
            [
                s.name,
                statuses.get(s.status, s.status),
                lang.number(s.priority),
                lang.number(f.get("entered")),
                lang.number(f.get("sent")),
                lang.percent(f.get("conversion")),
                lang.number(s.revenue, 2),
            ]
        )
    columns = ["Scenario", "Status", "Priority", "Entered", "Sent", "Conversion", "Revenue"]
    section.blocks.append(
        Table(
            [lang.t(c) for c in columns],
            rows,
            frozenset({2, 3, 4, 5, 6}),
            (2.6, 1.9, 1.5, 1.2, 1.7, 1.7, 1.6),
        )
    )
    for s in found:
        section.blocks.append(
            Heading(f"{s.name} ({statuses.get(s.status, s.status)})", f"scenario-{s.id}")
        )
        if s.svg is None or s.trigger is None:
            section.blocks.append(
                Paragraph(
                    lang.t(
                        "The stored definition no longer checks out; open it in the scenario editor."
                    )
                )
            )
            continue
        section.blocks.append(Paragraph(lang.t("Trigger: %(words)s", words=s.trigger)))
        section.blocks.append(Map(s.svg, f"{lang.t('Journey map')}: {s.name}"))
    return section


# -- the policy ----------------------------------------------------------------------------


def _cap(cap: Cap | None, lang: Language) -> str:
    if cap is None:
        return lang.t("no cap")
    text = lang.t("at most %(n)s per %(days)s days", n=cap.max_messages, days=cap.days)
    if cap.reserve is not None:
        text += ", " + lang.t(
            "the last %(slots)s kept for priority %(priority)s and above",
            slots=cap.reserve.slots,
            priority=cap.reserve.min_priority,
        )
    return text


def _policy(content: StrategyContent, lang: Language) -> Section:
    policy, control = content.policy, content.control
    section = Section("policy", lang.t("Communication policy"))
    section.blocks.append(
        Paragraph(
            lang.t(
                "One policy applies to every campaign and scenario: consent, frequency caps, "
                "quiet hours and priorities. Transactional messages bypass caps, quiet hours and "
                "the global control group, but never an unsubscribe or a suppressed address."
            )
        )
    )
    yes, no = lang.t("Yes"), lang.t("No")
    rows = [
        [
            channel,
            yes if policy.rules(channel).require_consent else no,
            _cap(policy.rules(channel).cap, lang),
        ]
        for channel in CHANNELS
    ]
    section.blocks.append(
        Table(
            [lang.t("Channel"), lang.t("Consent required"), lang.t("Frequency cap")],
            rows,
            widths=(1, 1.2, 3.4),
        )
    )
    section.blocks.append(
        Paragraph(lang.t("Across all channels: %(cap)s.", cap=_cap(policy.global_cap, lang)))
    )
    quiet = policy.quiet_hours
    if quiet is None:
        section.blocks.append(Paragraph(lang.t("No quiet hours.")))
    else:
        sentence = (
            "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; "
            "messages are delayed to the end of the window."
            if quiet.action == "defer"
            else "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; "
            "messages are not sent."
        )
        section.blocks.append(
            Paragraph(
                lang.t(
                    sentence,
                    start=quiet.start.strftime("%H:%M"),
                    end=quiet.end.strftime("%H:%M"),
                    channels=", ".join(quiet.channels),
                )
            )
        )
    section.blocks.append(
        Paragraph(
            lang.t(
                "Customers without a time zone are taken to be in %(zone)s.",
                zone=policy.default_timezone,
            )
        )
    )
    if control.enabled:
        section.blocks.append(
            Paragraph(
                lang.t(
                    "Global control group: %(percent)s of customers get no marketing at all, so "
                    "what CRM as a whole earns can be measured.",
                    percent=lang.percent(control.percent / 100, 2),
                )
            )
        )
    else:
        section.blocks.append(Paragraph(lang.t("Global control group: off.")))
    section.blocks.append(
        Paragraph(
            lang.t(
                "Priorities: when a frequency cap keeps its last slots in reserve, they go to "
                "senders of a high priority (0–100, normal 50); each scenario's priority is in "
                "the table of scenarios."
            ),
            note=True,
        )
    )
    return section


# -- the loyalty programme -------------------------------------------------------------------


def _loyalty(loyalty: LoyaltyContent, lang: Language) -> Section:
    p = loyalty.programme
    section = Section("loyalty", lang.t("Loyalty programme"))
    state = (
        "The programme is on (version %(version)s)."
        if p.enabled
        else "The programme is saved but switched off (version %(version)s)."
    )
    section.blocks.append(Paragraph(lang.t(state, version=loyalty.version)))

    def days(n: int) -> str:
        return lang.t("%(n)s days", n=lang.number(n))

    basis = "spend in %(days)s days" if p.tier_basis == "spend" else "orders in %(days)s days"
    settings = [
        [
            lang.t("Base accrual"),
            lang.t("%(percent)s of the order", percent=lang.percent(p.accrual_percent / 100)),
        ],
        [lang.t("One point is worth"), lang.number(p.point_value, 2)],
        [lang.t("Smallest order that earns points"), lang.number(p.min_order_amount, 2)],
        [
            lang.t("Payable with points"),
            lang.t(
                "up to %(percent)s of an order", percent=lang.percent(p.max_redeem_percent / 100)
            ),
        ],
        [lang.t("Points become spendable after"), days(p.pending_days)],
        [lang.t("Points expire after"), days(p.expiry_days) if p.expiry_days else lang.t("never")],
        [lang.t("Tiers are reached by"), lang.t(basis, days=lang.number(p.tier_window_days))],
    ]
    section.blocks.append(Table([lang.t("Setting"), lang.t("Value")], settings))
    if p.tiers:
        threshold_digits = 2 if p.tier_basis == "spend" else 0
        section.blocks.append(
            Table(
                [lang.t("Tier"), lang.t("Threshold"), lang.t("Accrual"), lang.t("Discount")],
                [
                    [
                        t.name,
                        lang.number(t.threshold, threshold_digits),
                        lang.percent(t.accrual_percent / 100)
                        if t.accrual_percent is not None
                        else lang.t("base rate"),
                        lang.percent(t.discount_percent / 100),
                    ]
                    for t in p.tiers
                ],
                frozenset({1, 2, 3}),
            )
        )
    else:
        section.blocks.append(Paragraph(lang.t("No tiers.")))
    b = p.bonuses
    bonuses = [
        (lang.t("Registration"), b.registration),
        (lang.t("Birthday"), b.birthday),
        (lang.t("Review"), b.review),
        (lang.t("Comeback after %(days)s days", days=b.comeback_after_days), b.comeback),
    ]
    earned = [(name, n) for name, n in bonuses if n]
    if earned:
        section.blocks.append(
            Table(
                [lang.t("Bonus"), lang.t("Points")],
                [[name, lang.number(n)] for name, n in earned],
                frozenset({1}),
            )
        )
    return section
