"""The tables, as SQLAlchemy Core. Customer-scoped tables carry ``customer_id``.

Money is stored as double precision: sums over a customer's orders stay exact to the
cent for any realistic shop, and aggregates stay cheap on both dialects.
"""

from __future__ import annotations

import sqlalchemy as sa

from rapport.store.types import BigID, JSONDoc, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # A profile merged into another keeps its row so old ids still resolve.
    sa.Column("merged_into", BigID, nullable=True),
    sa.Column("erased_at", UTCDateTime, nullable=True),
    # Standard attributes.
    sa.Column("first_name", sa.String(200)),
    sa.Column("last_name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(32)),
    sa.Column("birthday", sa.Date),
    sa.Column("gender", sa.String(32)),
    sa.Column("city", sa.String(200)),
    sa.Column("country", sa.String(100)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("locale", sa.String(35)),
    sa.Column("traits", JSONDoc, nullable=False),
    # Computed fields, maintained in the transaction that stores each event.
    sa.Column("events_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_seen_at", UTCDateTime),
    sa.Column("last_seen_at", UTCDateTime),
    sa.Column("orders_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("revenue", sa.Float, nullable=False, server_default="0"),
    sa.Column("first_order_at", UTCDateTime),
    sa.Column("last_order_at", UTCDateTime),
    # RFM scores 1-5 and the named cell; lifecycle stage of the CRM funnel (segments/).
    sa.Column("rfm_recency", sa.SmallInteger),
    sa.Column("rfm_frequency", sa.SmallInteger),
    sa.Column("rfm_monetary", sa.SmallInteger),
    sa.Column("rfm_cell", sa.String(32)),
    sa.Column("lifecycle_stage", sa.String(16)),
    sa.Column("lifecycle_changed_at", UTCDateTime),
    # Predicted by the CLV models (analytics/clv/): value over the horizon, purchases
    # expected in the next 90 days, 1 - P(alive); None until the first scoring.
    sa.Column("predicted_clv", sa.Float),
    sa.Column("expected_purchases_90d", sa.Float),
    sa.Column("churn_risk", sa.Float),
    sa.Column("clv_scored_at", UTCDateTime),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    # No foreign key (migration 0015): every ingest batch writes these rows, the pipeline
    # writes the customer in the same transaction, and on PostgreSQL the check cost a fifth
    # of the database's work per event.
    sa.Column("customer_id", BigID, nullable=False, index=True),
    # user_id | anonymous_id | email | phone
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.String(320), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("kind", "value"),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("customer_id", BigID, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    # subscribed | unsubscribed | pending
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # none | pending | confirmed
    sa.Column("double_opt_in", sa.String(16), nullable=False, server_default="none"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False, unique=True),
    # identify | track | page | screen | group | alias | system
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("properties", JSONDoc, nullable=False),
    sa.Column("context", JSONDoc, nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # api | import | system | <provider>
    sa.Column("source", sa.String(32), nullable=False),
    sa.Index("ix_events_customer_time", "customer_id", "occurred_at"),
    # Segment conditions read one event name over a time window (migration 0003).
    sa.Index("ix_events_name_time", "name", "occurred_at"),
)

event_counters = sa.Table(
    "event_counters",
    metadata,
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    # Segment conditions read one name over a window of days; covering (migration 0003).
    sa.Index("ix_event_counters_name_day", "name", "day", "customer_id", "count"),
)

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parent_id", sa.String(200), nullable=True),
)

compatible_categories = sa.Table(
    "compatible_categories",
    metadata,
    sa.Column("category_id", sa.String(200), primary_key=True),
    sa.Column("compatible_id", sa.String(200), primary_key=True),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("sku", sa.String(200)),
    sa.Column("name", sa.String(500)),
    sa.Column("category_id", sa.String(200), index=True),
    sa.Column("brand", sa.String(200)),
    sa.Column("price", sa.Float),
    sa.Column("currency", sa.String(3)),
    sa.Column("url", sa.String(2000)),
    sa.Column("image_url", sa.String(2000)),
    sa.Column("attributes", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(200), nullable=False, unique=True),
    sa.Column("customer_id", BigID, nullable=False, index=True),
    # completed | refunded | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("refunded", sa.Float, nullable=False, server_default="0"),
    sa.Column("discount", sa.Float, nullable=False, server_default="0"),
    sa.Column("shipping", sa.Float, nullable=False, server_default="0"),
    sa.Column("tax", sa.Float, nullable=False, server_default="0"),
    sa.Column("currency", sa.String(3)),
    sa.Column("coupon", sa.String(200)),
    # online | offline
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("store_id", sa.String(200)),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_orders_occurred_at", "occurred_at"),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("order_pk", BigID, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("product_id", sa.String(200), nullable=False),
    sa.Column("category_id", sa.String(200)),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
)

carts = sa.Table(
    "carts",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False),
    # The shop's cart id; '' for shops that keep one cart per visitor.
    sa.Column("cart_id", sa.String(200), nullable=False),
    # open | checkout | ordered
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("customer_id", "cart_id"),
)

cart_items = sa.Table(
    "cart_items",
    metadata,
    # No foreign key (migration 0015), as for identities.
    sa.Column("cart_pk", BigID, primary_key=True),
    sa.Column("product_id", sa.String(200), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.Float),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

product_views = sa.Table(
    "product_views",
    metadata,
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("product_id", sa.String(200), primary_key=True),
    sa.Column("views", sa.Integer, nullable=False),
    sa.Column("first_viewed_at", UTCDateTime, nullable=False),
    sa.Column("last_viewed_at", UTCDateTime, nullable=False),
)

customer_groups = sa.Table(
    "customer_groups",
    metadata,
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("group_id", sa.String(200), primary_key=True),
    sa.Column("traits", JSONDoc, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

customer_merges = sa.Table(
    "customer_merges",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("into_id", BigID, nullable=False, index=True),
    sa.Column("from_id", BigID, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("details", JSONDoc, nullable=False),
    sa.Column("merged_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    # write (ingest) | secret (management API)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    # What a secret key may do (access/roles.py); None for write keys (ingest only).
    # Migration 0009 gave the secret keys made before it the admin role.
    sa.Column("role", sa.String(16), nullable=True),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # rules (membership computed from `rules`) | static (a list: members added explicitly)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("rules", JSONDoc, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Membership with history: a row per stay; ``until`` is null while the customer is in.
segment_members = sa.Table(
    "segment_members",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("segment_id", BigID, sa.ForeignKey("segments.id"), nullable=False),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("until", UTCDateTime, nullable=True),
    sa.Index(
        "uq_segment_members_current",
        "segment_id",
        "customer_id",
        unique=True,
        postgresql_where=sa.text("until IS NULL"),
        sqlite_where=sa.text("until IS NULL"),
    ),
    sa.Index("ix_segment_members_customer", "customer_id"),
)

# Settings an operator can change at run time (RFM period, lifecycle thresholds, ...).
app_settings = sa.Table(
    "app_settings",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", JSONDoc, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Message templates. ``variants`` holds the author's source per locale
# ({"ru": {"subject": …, "body": …}, "en": …}); ``compiled`` the same version compiled
# once at save time (MJML → HTML, CSS inlined, text part), which is all a send renders.
templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("channel", sa.String(32), nullable=False),
    # mjml | html | text
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("default_locale", sa.String(8), nullable=False),
    sa.Column("variants", JSONDoc, nullable=False),
    sa.Column("compiled", JSONDoc, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# The delivery outbox (messaging/outbox.py): one row per message to one recipient on one
# channel. ``idempotency_key`` is what makes a send happen once: whoever decides to send
# writes the row in the same transaction as its own state, and a second attempt to enqueue
# the same key is a no-op. Content is stored rendered, so a retry sends the same bytes.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(300), nullable=False, unique=True),
    sa.Column("customer_id", BigID, nullable=True, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("body_text", sa.Text, nullable=False),
    sa.Column("body_html", sa.Text, nullable=True),
    sa.Column("headers", JSONDoc, nullable=False),
    sa.Column("data", JSONDoc, nullable=False),
    # Where the message came from; strings, as the message-outcome events carry them.
    sa.Column("campaign_id", sa.String(100), nullable=True),
    sa.Column("scenario_id", sa.String(100), nullable=True),
    sa.Column("step", sa.String(100), nullable=True),
    sa.Column("template_id", sa.String(100), nullable=True),
    sa.Column("variant", sa.String(100), nullable=True),
    # The channels still to try if this one does not deliver: [{"channel", "recipient", …}].
    sa.Column("fallback", JSONDoc, nullable=False),
    # queued | sending | sent | failed (will retry) | dead | skipped | rejected
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("provider_id", sa.String(300), nullable=True),
    # The lease of the dispatcher sending it; an expired lease means that worker died.
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    # Dispatchers look for due rows of one channel; dead letters are listed by status.
    sa.Index("ix_outbox_due", "channel", "status", "next_attempt_at"),
)

# Campaigns (messaging/campaigns.py): a broadcast of one channel to a segment or list.
# ``variants`` is [{"name": "A", "template_id": 3, "weight": 50}, …]; ``control_percent``
# of the audience receives nothing (the holdout that shows the true effect).
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    # draft | scheduled | sending | sent | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("segment_id", BigID, nullable=False),
    sa.Column("variants", JSONDoc, nullable=False),
    sa.Column("control_percent", sa.Float, nullable=False, server_default="0"),
    # Channels to fall back to, in order, when the first does not deliver.
    sa.Column("fallback", JSONDoc, nullable=False),
    sa.Column("send_at", UTCDateTime, nullable=True),
    # Send at this hour of each customer's own day (their timezone) instead of at once.
    sa.Column("local_hour", sa.SmallInteger, nullable=True),
    sa.Column("throttle_per_minute", sa.Integer, nullable=True),
    sa.Column("options", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)

# Who a campaign was for, frozen when it starts: the variant each customer drew
# ("control" for the holdout) and what became of their message.
campaign_audience = sa.Table(
    "campaign_audience",
    metadata,
    sa.Column("campaign_id", BigID, primary_key=True),
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("variant", sa.String(100), nullable=False),
    # pending | queued | skipped | control
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_campaign_audience_status", "campaign_id", "status"),
)

# Addresses nothing is sent to any more: hard bounces, complaints, operator blocks.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("address", sa.String(320), primary_key=True),
    # bounce | complaint | manual
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("details", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Where push messages go: a browser's web-push subscription or a mobile app's FCM token.
push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False, index=True),
    # webpush | fcm
    sa.Column("kind", sa.String(16), nullable=False),
    # The push service endpoint URL (webpush) or the registration token (fcm).
    sa.Column("endpoint", sa.String(2000), nullable=False, unique=True),
    sa.Column("keys", JSONDoc, nullable=False),
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

# Telegram chats linked to a customer through the bot's /start deep link.
telegram_chats = sa.Table(
    "telegram_chats",
    metadata,
    sa.Column("chat_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", BigID, nullable=False, index=True),
    sa.Column("username", sa.String(200), nullable=True),
    sa.Column("linked_at", UTCDateTime, nullable=False),
    sa.Column("stopped_at", UTCDateTime, nullable=True),
)

# Outgoing event subscriptions: events of the named types are POSTed to ``url`` (through
# the outbox's webhook channel, so they get its retries), signed with ``secret``.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("event_names", JSONDoc, nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Scenarios (scenarios/): the current definition; every saved version is kept in
# ``scenario_versions`` so runs in flight keep the version they started on.
scenarios = sa.Table(
    "scenarios",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    # draft | active | paused | archived
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

scenario_versions = sa.Table(
    "scenario_versions",
    metadata,
    sa.Column("scenario_id", BigID, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# One row per journey of one customer (per entity, e.g. a cart) through a scenario.
# A worker claims rows whose ``wake_at`` has passed; a step's new state and its outbox
# row are written in one transaction, which is what makes a send happen once.
scenario_runs = sa.Table(
    "scenario_runs",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("scenario_id", BigID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("customer_id", BigID, nullable=False),
    # The entity the run is about ("" when the scenario has none).
    sa.Column("entity_key", sa.String(200), nullable=False, server_default=""),
    # active (due at wake_at) | waiting (for an event, until wake_at) | done | exited
    # | converted | control | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.String(64), nullable=True),
    sa.Column("wake_at", UTCDateTime, nullable=True),
    sa.Column("waiting_event", sa.String(200), nullable=True),
    sa.Column("context", JSONDoc, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("end_reason", sa.String(200), nullable=True),
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Index("ix_scenario_runs_due", "status", "wake_at"),
    sa.Index("ix_scenario_runs_customer", "customer_id", "scenario_id"),
    # One live run per (scenario, customer, entity).
    sa.Index(
        "uq_scenario_runs_live",
        "scenario_id",
        "customer_id",
        "entity_key",
        unique=True,
        postgresql_where=sa.text("status IN ('active', 'waiting')"),
        sqlite_where=sa.text("status IN ('active', 'waiting')"),
    ),
)

# What happened at each step of each run: the per-step statistics and the diagram's
# figures are counts over this log.
scenario_step_log = sa.Table(
    "scenario_step_log",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("run_id", BigID, nullable=False, index=True),
    sa.Column("scenario_id", BigID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    # entered | sent | skipped | deferred | waiting | then | else | <split path> | control
    # | done | exited | converted | failed
    sa.Column("outcome", sa.String(100), nullable=False),
    sa.Column("reason", sa.String(300), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_scenario_step_log_stats", "scenario_id", "step", "outcome"),
)

# Tasks for account managers, created by scenario actions ("call this customer").
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False, index=True),
    sa.Column("scenario_id", BigID, nullable=True),
    sa.Column("run_id", BigID, nullable=True),
    sa.Column("title", sa.String(500), nullable=False),
    # open | done
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("done_at", UTCDateTime, nullable=True),
)


# Analytics (analytics/): what became of each message, kept as its outcome events arrive.
MESSAGE_OUTCOMES = (
    "queued",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
    "failed",
)

# One row per message (the outbox idempotency key), the first time of each outcome.
message_facts = sa.Table(
    "message_facts",
    metadata,
    sa.Column("message_key", sa.String(300), primary_key=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.String(100)),
    sa.Column("scenario_id", sa.String(100)),
    sa.Column("step", sa.String(100)),
    sa.Column("template_id", sa.String(100)),
    sa.Column("variant", sa.String(100)),
    # The day the message was first recorded (queued, normally): the day it is counted on.
    sa.Column("day", sa.Date, nullable=False),
    *[sa.Column(f"{name}_at", UTCDateTime) for name in MESSAGE_OUTCOMES],
    sa.Column("opens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("clicks", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_message_facts_customer", "customer_id", "sent_at"),
    sa.Index("ix_message_facts_day", "day"),
    sa.Index("ix_message_facts_campaign", "campaign_id"),
    sa.Index("ix_message_facts_scenario", "scenario_id", "step"),
)

# Messages counted by the day they were first recorded and where they came
# from ("" where not applicable, so the key has no NULLs): what dashboards read.
message_daily = sa.Table(
    "message_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("campaign_id", sa.String(100), primary_key=True),
    sa.Column("scenario_id", sa.String(100), primary_key=True),
    sa.Column("step", sa.String(100), primary_key=True),
    sa.Column("variant", sa.String(100), primary_key=True),
    *[sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in MESSAGE_OUTCOMES],
)

# The message an order is credited to (last click within N days, else open within M).
order_attributions = sa.Table(
    "order_attributions",
    metadata,
    sa.Column("order_pk", BigID, primary_key=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("message_key", sa.String(300), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.String(100)),
    sa.Column("scenario_id", sa.String(100)),
    sa.Column("step", sa.String(100)),
    sa.Column("variant", sa.String(100)),
    # The credited message's day (message_facts.day): its metrics count the order there.
    sa.Column("message_day", sa.Date, nullable=False),
    # click | open
    sa.Column("model", sa.String(8), nullable=False),
    sa.Column("touch_at", UTCDateTime, nullable=False),
    sa.Index("ix_order_attributions_time", "occurred_at"),
    sa.Index("ix_order_attributions_day", "message_day"),
    sa.Index("ix_order_attributions_campaign", "campaign_id"),
    sa.Index("ix_order_attributions_scenario", "scenario_id", "step"),
)

# Each counted order's place in its customer's history, kept with the order aggregates
# (customers/computed.refresh_order_history): its UTC day, its number among the
# customer's counted orders (1 = the first), the day of the counted order before it
# (NO_PREVIOUS, 0001-01-01, for a first order) and its net amount in millionths.
order_sequence = sa.Table(
    "order_sequence",
    metadata,
    sa.Column("order_pk", BigID, primary_key=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("prev_day", sa.Date, nullable=False),
    sa.Column("nth", sa.Integer, nullable=False),
    sa.Column("net_micros", sa.BigInteger, nullable=False),
    sa.Index("ix_order_sequence_customer", "customer_id"),
)

# Counted orders per day and the day of each one's previous order, with their net revenue
# in millionths; and per number in the customer's history and day. What the dashboard's
# business figures sum (analytics/order_days.py). Every roll-up row is one ``stripe`` of
# its key: transactions applying side by side (``rapport.inbox_applier.Lanes``) bump
# different stripes, where one shared row made each wait for the other's commit; readers
# sum over the stripes (migration 0017).
order_days = sa.Table(
    "order_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("prev_day", sa.Date, primary_key=True),
    sa.Column("stripe", sa.SmallInteger, primary_key=True, server_default="0"),
    sa.Column("orders", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("revenue_micros", sa.BigInteger, nullable=False, server_default="0"),
)

order_nth_days = sa.Table(
    "order_nth_days",
    metadata,
    sa.Column("nth", sa.Integer, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("stripe", sa.SmallInteger, primary_key=True, server_default="0"),
    sa.Column("orders", sa.BigInteger, nullable=False, server_default="0"),
)


# Access (access/): the people who use the web UI, their sessions, and the audit log.
# Role of a person or a secret key: admin | marketer | analyst | viewer (access/roles.py).
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # argon2id, in the PHC string format (parameters and salt inside).
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("disabled_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_login_at", UTCDateTime),
)

# Server-side sessions: the cookie holds a random token, the row its SHA-256 (a copy of
# the table lets nobody log in).
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", BigID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(300)),
)

# Failed logins, counted per email and address over a window (access/ratelimit.py).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_login_failures_email_ip_at", "email", "ip", "at"),
)

# Who changed what, when: one row per change, written in the change's transaction.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    # user | key | cli | system
    sa.Column("actor_kind", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(100)),
    # The actor's email or key name at the time (kept when the user is renamed).
    sa.Column("actor_name", sa.String(320), nullable=False),
    # <object>.<verb>: user.create, user.set_role, session.login, …
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("object_type", sa.String(50), nullable=False),
    sa.Column("object_id", sa.String(200)),
    sa.Column("details", JSONDoc, nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Index("ix_audit_log_at", "at"),
    sa.Index("ix_audit_log_object", "object_type", "object_id"),
)


# --- loyalty (loyalty/: programme, ledger, tiers); migration 0010 ---

# The points ledger: append-only, one row per change; every balance is a sum over it
# (``points`` moves the active balance, ``pending`` the points waiting for the return
# period to pass). ``key`` makes each change happen once (an order's accrual, a bonus,
# a redemption's Idempotency-Key). Rows are never updated or deleted.
loyalty_ledger = sa.Table(
    "loyalty_ledger",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False),
    # earn | bonus | activate | redeem | return | reverse | expire | adjust | transfer
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("pending", sa.Integer, nullable=False, server_default="0"),
    sa.Column("key", sa.String(300), nullable=False, unique=True),
    sa.Column("order_id", sa.String(200)),
    sa.Column("reason", sa.String(300), nullable=False, server_default=""),
    sa.Column("details", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_loyalty_ledger_customer", "customer_id", "id"),
    sa.Index("ix_loyalty_ledger_order", "order_id"),
)

# What is left of each credit (a lot), so points are spent and expire oldest first.
# Derived from the ledger like the account: ``remaining`` falls as points are spent,
# reversed or expire; ``status`` turns pending → active when the return period ends.
loyalty_lots = sa.Table(
    "loyalty_lots",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("entry_id", BigID, nullable=False),
    sa.Column("order_id", sa.String(200)),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("remaining", sa.Integer, nullable=False),
    # pending | active
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("activates_at", UTCDateTime),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_loyalty_lots_customer", "customer_id", "status", "expires_at"),
    sa.Index("ix_loyalty_lots_order", "order_id"),
    # "Points expiring within N days" for every customer, and the daily expiry run.
    sa.Index(
        "ix_loyalty_lots_expiring",
        "expires_at",
        "customer_id",
        postgresql_where=sa.text("status = 'active' AND remaining > 0"),
        sqlite_where=sa.text("status = 'active' AND remaining > 0"),
    ),
    # The daily activation run.
    sa.Index(
        "ix_loyalty_lots_activation",
        "activates_at",
        postgresql_where=sa.text("status = 'pending' AND remaining > 0"),
        sqlite_where=sa.text("status = 'pending' AND remaining > 0"),
    ),
)

# One row per customer in the programme: the ledger's sums, kept in the transaction of
# each ledger entry (segment conditions read it), and the tier.
loyalty_accounts = sa.Table(
    "loyalty_accounts",
    metadata,
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("balance", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pending", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tier", sa.String(64)),
    sa.Column("tier_since", UTCDateTime),
    # When the soonest active points expire (None: none do).
    sa.Column("next_expiry_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_loyalty_accounts_tier", "tier"),
)

# Checkout redemptions by Idempotency-Key: a repeated key answers the stored result.
loyalty_redemptions = sa.Table(
    "loyalty_redemptions",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("order_id", sa.String(200)),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("request", JSONDoc, nullable=False),
    sa.Column("result", JSONDoc, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_loyalty_redemptions_customer", "customer_id"),
    sa.Index("ix_loyalty_redemptions_order", "order_id"),
)

# --- end loyalty ---


# --- coupons (loyalty/coupons*: series, codes, redemptions, personal discounts); migration 0011 ---

# A coupon campaign: its settings (loyalty/coupons/model.py) as one checked document.
coupon_series = sa.Table(
    "coupon_series",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("settings", JSONDoc, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One row per code: a shared promo code, a printed code, or a customer's personal code.
# ``uses`` is the counter a redemption raises with a conditional UPDATE (no double use).
coupon_codes = sa.Table(
    "coupon_codes",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("series_id", BigID, sa.ForeignKey("coupon_series.id"), nullable=False),
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    # The owner of a personal code; None for shared and printed codes.
    sa.Column("customer_id", BigID, nullable=True, index=True),
    # The idempotency key of the issue that made it (a scenario step, an API call).
    sa.Column("issue_key", sa.String(200), nullable=True, unique=True),
    sa.Column("issued_at", UTCDateTime, nullable=True),
    # "N days after issue": this code's own end, besides the series' window.
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_coupon_codes_series_id", "series_id"),
)

# Uses of a series per customer, for "at most N per customer" under concurrency.
coupon_customer_uses = sa.Table(
    "coupon_customer_uses",
    metadata,
    sa.Column("series_id", BigID, sa.ForeignKey("coupon_series.id"), primary_key=True),
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("uses", sa.Integer, nullable=False),
)

# One row per use of a code by an order; ``key`` makes a retried checkout a no-op.
coupon_redemptions = sa.Table(
    "coupon_redemptions",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("code_id", BigID, sa.ForeignKey("coupon_codes.id"), nullable=False),
    sa.Column("series_id", BigID, sa.ForeignKey("coupon_series.id"), nullable=False),
    sa.Column("customer_id", BigID, nullable=False),
    sa.Column("order_id", sa.String(200), nullable=True),
    # percent | amount
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("discount", sa.Float, nullable=False),
    sa.Column("eligible_amount", sa.Float, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=False),
    # The order was cancelled and the use given back (series.return_on_cancel).
    sa.Column("released_at", UTCDateTime, nullable=True),
    sa.Index("ix_coupon_redemptions_code_id", "code_id"),
    sa.Index("ix_coupon_redemptions_customer_id", "customer_id"),
    sa.Index("ix_coupon_redemptions_order_id", "order_id"),
)

# A customer's personal discount in percent, one per source (manual | scenario | import);
# the current discount is the largest one not expired.
personal_discounts = sa.Table(
    "personal_discounts",
    metadata,
    sa.Column("customer_id", BigID, primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("percent", sa.Float, nullable=False),
    sa.Column("valid_until", UTCDateTime, nullable=True),
    sa.Column("note", sa.String(500), nullable=False, server_default=""),
    sa.Column("set_at", UTCDateTime, nullable=False),
)

# --- end coupons ---


# --- recommendations (recommend/: precomputed tables); migration 0012 ---

# The recommender's ranked lists, rewritten whole by each build (recommend/build.py).
# ``kind`` is the strategy; ``list_key`` a product id for item neighbours (bought_together,
# personal), a category id for per-category lists (popular, new_arrivals, compatible), or
# "" for the whole catalog. Serving reads a few (kind, list_key) prefixes of the key.
rec_lists = sa.Table(
    "rec_lists",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("list_key", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("product_id", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
)

# --- end recommendations ---


# --- queued ingest (ingest/inbox.py); migration 0016 ---

# Requests acknowledged before they are applied (RAPPORT_INGEST_QUEUE): the validated body
# as it arrived, applied through the pipeline in large groups and deleted in the same
# transaction. ``kind`` is the endpoint (batch, import, track, identify, …). A request that
# keeps failing is parked: ``failed_at`` set, ``last_error`` says why, and appliers skip it
# until an operator retries it.
ingest_inbox = sa.Table(
    "ingest_inbox",
    metadata,
    sa.Column("id", BigID, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("failed_at", UTCDateTime, nullable=True),
    # The lane of the request's messages (rapport.ingest.lanes): appliers side by side
    # each take their own lanes (migration 0017).
    sa.Column("lane", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index("ix_ingest_inbox_lane", "lane", "id"),
)

# --- end queued ingest ---
