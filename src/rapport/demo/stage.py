"""Setting up the demo store for a strategy, as an operator would through the API.

The e-mail channel points at the mail catcher on loopback (real SMTP), the other channels
at in-memory backends; the global control group, the communication policy, the playbooks
and the campaigns come from the strategy. The control group's salt is fixed, so two
strategies run on copies of one store hold out the same customers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from rapport.access.signing import signing_key
from rapport.demo.catalog import SHOP_URL
from rapport.demo.strategy import Campaign, Strategy
from rapport.messaging.campaign_start import start_campaign
from rapport.messaging.campaigns import create_campaign
from rapport.messaging.channel_config import ChannelsConfig, save_channels
from rapport.messaging.holdout import save_global_control
from rapport.messaging.policy import save_policy
from rapport.messaging.templates.store import create_template
from rapport.messaging.tracking import Links
from rapport.scenarios.library import install
from rapport.segments.definitions import create_segment
from rapport.segments.membership import SegmentIndex
from rapport.segments.sweep import sweep
from rapport.store.engine import writing
from rapport.store.tables import scenarios, templates

SENDER = "Demo shop <shop@shop.example>"
CONTROL_SALT = "demo"

_CAMPAIGN_BODY = """<mjml>
  <mj-body background-color="#f4f4f4">
    <mj-section background-color="#ffffff">
      <mj-column>
        <mj-text font-size="22px" font-weight="bold">{headline}</mj-text>
        <mj-text>{{% if customer.first_name %}}{{{{ customer.first_name }}}}, {{% endif %}}{text}</mj-text>
        <mj-button href="{url}">{button}</mj-button>
        <mj-text font-size="11px" color="#888888"><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>"""


@dataclass(frozen=True)
class CampaignFacts:
    """What the response model needs to know about a campaign the strategy made."""

    fit: float
    discounts: dict[str, float]  # by variant name


@dataclass
class Staged:
    links: Links
    campaigns: dict[str, CampaignFacts] = field(default_factory=dict)  # by campaign id
    playbooks: dict[str, str] = field(default_factory=dict)  # scenario id → playbook key
    templates: dict[str, str] = field(default_factory=dict)  # template id → name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "campaign"


def stage(
    engine: sa.Engine,
    strategy: Strategy,
    *,
    now: datetime,
    simulation_start: datetime,
    smtp_port: int,
    public_url: str,
    secret_key: str | None = None,
) -> Staged:
    """Configure the store for ``strategy`` in one transaction; what the simulation needs."""
    links = Links(public_url, signing_key(engine, secret_key, now))
    staged = Staged(links)
    with writing(engine) as conn:
        config = ChannelsConfig.model_validate(
            {
                "email": {
                    "backend": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "security": "plain",
                    "sender": SENDER,
                },
                **{name: {"backend": "memory"} for name in ("sms", "push", "webpush", "telegram")},
            }
        )
        save_channels(conn, config, now)
        save_global_control(conn, {"percent": strategy.global_control, "salt": CONTROL_SALT}, now)
        save_policy(conn, strategy.policy, now)
        if strategy.scenarios:
            for item in install(conn, now, only=strategy.scenarios, activate=True):
                scenario_id = conn.execute(
                    sa.select(scenarios.c.id).where(scenarios.c.name == item.name)
                ).scalar_one()
                staged.playbooks[str(scenario_id)] = item.key
        for campaign in strategy.campaigns:
            staged.campaigns[str(_campaign(conn, campaign, now, simulation_start))] = CampaignFacts(
                campaign.fit, {v.name: v.discount for v in campaign.variants}
            )
        staged.templates = {
            str(i): name for i, name in conn.execute(sa.select(templates.c.id, templates.c.name))
        }
    return staged


def _campaign(
    conn: sa.Connection, campaign: Campaign, now: datetime, simulation_start: datetime
) -> int:
    """A template per variant, the audience segment, and the campaign, scheduled."""
    slug = _slug(campaign.name)
    variants = []
    for variant in campaign.variants:
        offer = (
            f"{variant.discount:.0%} off everything new, this week only."
            if variant.discount
            else ("The new collection has arrived: have a look before the sizes run out.")
        )
        body = _CAMPAIGN_BODY.format(
            headline=variant.subject,
            text=offer,
            url=f"{SHOP_URL}/new",
            button="See what is new",
        )
        template = create_template(
            conn,
            name=f"demo-{slug}-{_slug(variant.name)}",
            channel="email",
            kind="mjml",
            variants={"en": {"subject": variant.subject, "body": body}},
            now=now,
        )
        variants.append(
            {"name": variant.name, "template_id": template.id, "weight": variant.weight}
        )
    segment = create_segment(
        conn, f"demo: {campaign.name}", "the audience of a demo campaign", campaign.segment, now
    )
    # Filled at once and silently, as the segments API does; kept current by the pipeline.
    sweep(conn, SegmentIndex().current(conn), now, [segment.id], backfill=True)
    made = create_campaign(
        conn,
        {
            "name": campaign.name,
            "channel": "email",
            "segment_id": segment.id,
            "variants": variants,
            "control_percent": campaign.control_percent,
            "send_at": simulation_start + timedelta(days=campaign.day),
            "local_hour": campaign.local_hour,
        },
        now,
    )
    start_campaign(conn, made.id, now)
    return made.id
