"""The FastAPI application: ingest, management API, OpenAPI at /docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from rapport import __version__
from rapport.access.keys import KeyChecker
from rapport.api import (
    campaign_routes,
    channel_routes,
    coupon_routes,
    customer_routes,
    delivery_routes,
    errors,
    experiment_routes,
    ingest_routes,
    loyalty_routes,
    push_routes,
    recommendation_routes,
    report_message_routes,
    report_routes,
    scenario_routes,
    segment_list_routes,
    segment_routes,
    strategy_routes,
    subscription_routes,
    task_routes,
    telegram_routes,
    template_routes,
    tracking_routes,
)
from rapport.api.writer import IngestWriter
from rapport.clock import Clock, SystemClock
from rapport.inbox_applier import InboxApplier
from rapport.ingest.inbox import health as inbox_health
from rapport.ingest.inbox import status as inbox_status
from rapport.pipeline import Pipeline
from rapport.public_links import links_of
from rapport.settings import Settings
from rapport.store.checkpoints import WalCheckpointer
from rapport.store.engine import create_engine
from rapport.web import install as install_web
from rapport.worker import ConfiguredDispatcher, DispatchLoop, ScenarioLoop, Sweeper

log = logging.getLogger("rapport.api")


def create_app(
    settings: Settings | None = None,
    *,
    engine: sa.Engine | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    settings = settings or Settings()
    engine = engine or create_engine(settings.database_url)
    clock = clock or SystemClock()
    pipeline = Pipeline(engine, clock)
    applier = (
        InboxApplier(pipeline, settings)
        if settings.ingest_queue and settings.ingest_apply
        else None
    )
    writer = IngestWriter(
        pipeline,
        settings.ingest_group_max_messages,
        queued=settings.ingest_queue,
        on_appended=applier.wake if applier is not None else lambda: None,
    )

    sweeper = Sweeper(pipeline, settings.sweep_seconds) if settings.sweep_seconds > 0 else None
    checkpointer = WalCheckpointer(engine, settings.sqlite_checkpoint_seconds)

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        checkpointer.start()
        writer.start()
        if applier is not None:
            applier.start()
        if sweeper is not None:
            sweeper.start()
        scenarios = None
        if settings.scenario_seconds > 0:  # due scenario steps (waits that ended)
            pipeline.links = lambda: links_of(application)
            # Made now, not by the first send: a send inside an ingest transaction must
            # not open a second write transaction (SQLite would wait for itself).
            try:
                links_of(application)
            except sa.exc.OperationalError:  # a store not upgraded yet: made on first use
                log.warning("the store has no settings table yet; run `rapport db upgrade`")
            scenarios = ScenarioLoop(pipeline, settings.scenario_seconds)
            scenarios.start()
        dispatch = None
        if settings.dispatch:  # the outbox, through the channels configured in the store
            dispatch = DispatchLoop(ConfiguredDispatcher(pipeline))
            application.state.dispatcher = dispatch.dispatcher
            dispatch.start()
        try:
            yield
        finally:
            if dispatch is not None:
                dispatch.stop()
            if scenarios is not None:
                scenarios.stop()
            if sweeper is not None:
                sweeper.stop()
            writer.stop()
            if applier is not None:
                applier.stop()
            checkpointer.stop()

    app = FastAPI(
        title="Rapport",
        version=__version__,
        description="CRM-marketing engine: Segment-compatible ingest and the customer card.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.clock = clock
    app.state.pipeline = pipeline
    app.state.writer = writer
    app.state.applier = applier
    app.state.keys = KeyChecker(engine)
    errors.install(app)
    app.include_router(ingest_routes.router)
    app.include_router(customer_routes.router)
    app.include_router(segment_list_routes.router)
    app.include_router(segment_routes.router)
    app.include_router(template_routes.router)
    app.include_router(delivery_routes.router)
    app.include_router(campaign_routes.router)
    app.include_router(scenario_routes.router)
    app.include_router(push_routes.router)
    app.include_router(telegram_routes.router)
    app.include_router(channel_routes.router)
    app.include_router(subscription_routes.router)
    app.include_router(tracking_routes.router)
    app.include_router(report_message_routes.router)
    app.include_router(report_routes.router)
    app.include_router(experiment_routes.router)
    app.include_router(recommendation_routes.router)
    app.include_router(loyalty_routes.router)
    app.include_router(coupon_routes.router)
    app.include_router(strategy_routes.router)
    app.include_router(task_routes.router)
    install_web(app)  # the marketers' UI at /, its static files, its error pages
    app.add_middleware(ingest_routes.TrackingShortcut)

    if settings.mail_catcher_dir:  # the demo's caught mail; never mounted otherwise
        from rapport.api import mail_routes

        app.include_router(mail_routes.router)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, Any]:
        """Up and reaching its store; with queued ingest, how far the inbox is behind."""
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            answer: dict[str, Any] = {"status": "ok", "version": __version__}
            if settings.ingest_queue:
                answer["inbox"] = inbox_health(inbox_status(conn), clock.now())
        return answer

    return app
