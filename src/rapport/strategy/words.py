"""Every English text the strategy document shows, and the key figures' names and meanings.

The texts are English source strings passed through the document language's ``translate``
(the UI's catalog, which holds a Russian translation of each; ``web.routes.strategy``
marks them for it and tests/test_strategy_words.py checks that none is missing). Keeping
them in the catalog rather than a dict here means one file for translators, one tool
(pybabel), and the segment rules and journey maps, already in that catalog, in the same
words as on the pages.
"""

from __future__ import annotations

# key → (name, how it is counted): the definitions follow docs/metrics.md.
KPI_WORDS: dict[str, tuple[str, str]] = {
    "revenue": ("Revenue", "Order totals less refunds, of the orders placed in the period"),
    "orders": ("Orders", "Completed orders placed in the period; cancelled ones never count"),
    "buyers": ("Buyers", "Customers with at least one order in the period"),
    "active_customers": (
        "Active customers",
        "Customers with an order within the lapse threshold at some moment of the period",
    ),
    "average_check": ("Average check", "Revenue ÷ orders"),
    "arpu": ("ARPU", "Revenue ÷ active customers"),
    "repeat_order_share": (
        "Share of repeat orders",
        "Orders that are not the customer's first order ever ÷ all orders",
    ),
    "time_to_repeat": (
        "Time to repeat purchase (median)",
        "Days from the first order to the second, for customers whose second order was in the period",
    ),
    "churn_rate": (
        "Churn",
        "Of the customers active at the start of the period, the share lapsed at its end",
    ),
    "ltv": ("LTV", "Purchase frequency × average check × lifetime (1 ÷ churn periods)"),
    "cac_ceiling": (
        "CAC ceiling",
        "The most a new customer may cost to break even: LTV × gross margin (30%)",
    ),
    "crm_revenue": (
        "Revenue from CRM messages",
        "Revenue of the orders credited to a message by the attribution rules",
    ),
    "crm_share": ("Share of revenue from CRM", "Revenue from CRM messages ÷ revenue"),
    "messages_sent": ("Messages sent", "Messages of every channel sent in the period"),
    "open_rate": ("Open rate", "Opened ÷ delivered"),
    "ctr": ("Click rate (CTR)", "Clicked ÷ delivered"),
    "unsubscribe_rate": ("Unsubscribe rate", "Unsubscribed ÷ delivered"),
    "active_scenarios": ("Active scenarios", "Scenarios running now"),
}

DOCUMENT = (
    "CRM strategy",
    "Period: %(first)s — %(last)s",
    "Generated %(when)s",
    "Contents",
    "Not enough data",
    "%(n)s days",
    "Yes",
    "No",
)

KEY_FIGURES = (
    "Key figures",
    "The figures of the period, counted as the dashboard and the reports count them. Where "
    "there is too little data to say anything, the figure says so instead of a number.",
    "Metric",
    "Value",
    "How it is counted",
    "Messages per day, with the open and click rates",
)

SEGMENTS = (
    "Segments",
    "%(n)s segments and lists. A size is the number of customers in it now; membership "
    "stays current as events arrive.",
    "No segments yet.",
    "Segment",
    "Kind",
    "Customers now",
    "Rule",
    "Static list",
    "A static list: customers are added by an import or through the API.",
    "The stored rule no longer checks out; open it in the segment builder.",
)

SCENARIOS = (
    "Scenarios",
    "The active and paused scenarios. The figures and the maps count the runs that started "
    "in the period, and the orders credited to each scenario's messages.",
    "No active or paused scenarios.",
    "Scenario",
    "Status",
    "Priority",
    "Entered",
    "Sent",
    "Conversion",
    "Revenue",
    "active",
    "paused",
    "Trigger: %(words)s",
    "Journey map",
    "The stored definition no longer checks out; open it in the scenario editor.",
)

POLICY = (
    "Communication policy",
    "One policy applies to every campaign and scenario: consent, frequency caps, quiet hours "
    "and priorities. Transactional messages bypass caps, quiet hours and the global control "
    "group, but never an unsubscribe or a suppressed address.",
    "Channel",
    "Consent required",
    "Frequency cap",
    "at most %(n)s per %(days)s days",
    "the last %(slots)s kept for priority %(priority)s and above",
    "no cap",
    "Across all channels: %(cap)s.",
    "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; messages "
    "are delayed to the end of the window.",
    "Quiet hours: %(start)s–%(end)s in the customer's time zone, on %(channels)s; messages "
    "are not sent.",
    "No quiet hours.",
    "Customers without a time zone are taken to be in %(zone)s.",
    "Global control group: %(percent)s of customers get no marketing at all, so what CRM as "
    "a whole earns can be measured.",
    "Global control group: off.",
    "Priorities: when a frequency cap keeps its last slots in reserve, they go to senders of "
    "a high priority (0–100, normal 50); each scenario's priority is in the table of "
    "scenarios.",
)

LOYALTY = (
    "Loyalty programme",
    "The programme is on (version %(version)s).",
    "The programme is saved but switched off (version %(version)s).",
    "Setting",
    "Base accrual",
    "%(percent)s of the order",
    "One point is worth",
    "Smallest order that earns points",
    "Payable with points",
    "up to %(percent)s of an order",
    "Points become spendable after",
    "Points expire after",
    "never",
    "Tiers are reached by",
    "spend in %(days)s days",
    "orders in %(days)s days",
    "Tier",
    "Threshold",
    "Accrual",
    "Discount",
    "base rate",
    "No tiers.",
    "Bonus",
    "Points",
    "Registration",
    "Birthday",
    "Review",
    "Comeback after %(days)s days",
)

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *DOCUMENT,
            *KEY_FIGURES,
            *(text for pair in KPI_WORDS.values() for text in pair),
            *SEGMENTS,
            *SCENARIOS,
            *POLICY,
            *LOYALTY,
        ]
    )
)
