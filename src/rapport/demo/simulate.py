"""The simulated days: the shop goes on, Rapport's worker runs, customers answer.

Hour by simulated hour, on one ``SimulatedClock``:

1. the shop's messages of the hour (the baseline customers, and the purchases messages
   caused) go through the ingest path (``generator.Loader``): scenarios start and advance
   as they do in production, inside the pipeline;
2. the customers' answers due in the hour are recorded (``reactions.Responder.act``);
3. the worker's own jobs run, the functions ``rapport serve`` calls on its threads: the
   time-trigger scan (every ``scan_hours``), due scenario steps until none is left,
   campaigns whose time has come, the outbox through the real SMTP backend into the mail
   catcher, and the segment sweep; the daily job (RFM, lifecycle, CLV, recommendations)
   every ``refresh_days`` and once at the end;
4. the customers read what arrived (``Responder.read``).

Nothing sleeps: the clock is moved, and each job is called until it has nothing due.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from rapport import worker
from rapport.clock import SimulatedClock
from rapport.demo.generator import GenerationResult, History, Loader
from rapport.demo.reactions import Responder
from rapport.demo.response import ResponseModel
from rapport.demo.stage import Staged
from rapport.pipeline import Pipeline
from rapport.scenarios.time_triggers import scan_time_triggers
from rapport.settings import Settings
from rapport.store.engine import writing
from rapport.store.tables import orders, outbox, scenario_runs

log = logging.getLogger("rapport.demo")
HOUR = 3600.0


@dataclass(frozen=True)
class SimulationConfig:
    """The simulation's own knobs (docs/demo.md); the shop's are in ``DemoConfig``."""

    # The worker's jobs run every ``step_hours`` simulated hours (a scenario's wait ends
    # at most that late); the shop's events still arrive in hourly groups.
    step_hours: int = 2
    # Birthdays and spells without an order are looked for every ``scan_hours``: a
    # birthday e-mail may come that much after its hour, a lapse is days long anyway.
    scan_hours: int = 6
    refresh_days: int = 7
    scenario_batch: int = 1000
    dispatch_batch: int = 500
    response: ResponseModel = field(default_factory=ResponseModel)


@dataclass
class SimulationResult:
    start: datetime
    end: datetime
    counts: Counter[str] = field(default_factory=Counter)
    caused_orders: list[str] = field(default_factory=list)
    shop_events: int = 0
    seconds: float = 0.0
    refresh_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part of a step
    cpu_timings: dict[str, float] = field(default_factory=dict)  # this process's CPU seconds


Progress = Callable[[float, SimulationResult], None]


class Simulation:
    def __init__(
        self,
        engine: sa.Engine,
        history: History,
        staged: Staged,
        maildir: Path,
        *,
        config: SimulationConfig | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.engine = engine
        self.history = history
        self.config = config or SimulationConfig()
        demo = history.config
        self.start = demo.history_end()
        self.end = history.end
        self.clock = SimulatedClock(self.start)
        self.pipeline = Pipeline(engine, self.clock)
        self.pipeline.links = lambda: staged.links
        self.staged = staged
        shop = GenerationResult(demo, self.start, self.end)
        self.loader = Loader(engine, history, shop, settings or Settings(), pipeline=self.pipeline)
        self.responder = Responder(
            self.pipeline, history, staged, maildir, self.config.response, demo.seed
        )
        self.dispatcher = worker.ConfiguredDispatcher(
            self.pipeline, check_seconds=1e9, batch_size=self.config.dispatch_batch
        )
        self.result = SimulationResult(self.start, self.end)

    def run(self, progress: Progress | None = None) -> SimulationResult:
        began = time.perf_counter()
        hours = int((self.end - self.start).total_seconds() // HOUR)
        step = self.config.step_hours
        try:
            for hour in range(0, hours, step):
                self._step(hour, min(hour + step, hours))
                self.result.counts = self.responder.counts
                if progress is not None:
                    progress(min(hour + step, hours) / hours, self.result)
        finally:
            self.dispatcher.close()
        self.result.counts = Counter(self.responder.counts)
        self.result.caused_orders = list(self.history.response_shop.response_order_ids)
        self.result.shop_events = self.loader.result.stored
        self.result.seconds = time.perf_counter() - began
        return self.result

    def _step(self, hour: int, last: int) -> None:
        """The simulated hours ``hour`` to ``last``: the shop, then the worker at the end."""
        with self._timed("shop events"):
            for h in range(hour, last):
                end = (self.start + timedelta(hours=h + 1)).timestamp()
                for message in self.history.until(end):
                    self.loader.add(message)
                self.loader.finish()
        until = self.start + timedelta(hours=last)
        self.clock.set(max(self.clock.now(), until))
        now = self.clock.now()
        with self._timed("answers"):
            self.responder.act(now)
        with self._timed("scenarios"):
            if hour % self.config.scan_hours < self.config.step_hours:
                scan_time_triggers(self.pipeline, now)
            self._drain_scenarios(now)
        with self._timed("campaigns"):
            worker.run_campaigns(self.pipeline, self.staged.links)
            self._drain_scenarios(now)
        with self._timed("dispatch"):
            sent: list[int] = []
            while self._outbox_due(now):
                report = self.dispatcher.run_once()
                sent += report.sent_ids
                if not report.claimed:
                    break
        with self._timed("inbox"):
            if sent:
                self.responder.read(now, sent)
        with self._timed("sweeps"):
            worker.sweep_segments(self.pipeline, now)
        if last // 24 > hour // 24 and (last // 24) % self.config.refresh_days == 0:
            with self._timed("daily job"):
                worker.daily(self.pipeline, now)

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        began, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.result.timings[what] = self.result.timings.get(what, 0.0) + spent
            spent = time.process_time() - cpu
            self.result.cpu_timings[what] = self.result.cpu_timings.get(what, 0.0) + spent

    def _outbox_due(self, now: datetime) -> bool:
        """Anything to send? One read, where a claim would be a write transaction."""
        with self.engine.connect() as conn:
            return conn.execute(_OUTBOX_DUE, {"now": now}).first() is not None

    def _drain_scenarios(self, now: datetime) -> None:
        """Advance due runs a batch per transaction until none is due (their sends queue)."""
        pipeline, batch = self.pipeline, self.config.scenario_batch
        with self.engine.connect() as conn:  # a read first: most hours nothing is due
            due = conn.execute(_RUNS_DUE, {"now": now}).first()
        while due is not None:
            with writing(pipeline.engine) as conn:
                n, events = pipeline.scenarios.run_due(conn, pipeline.clock.now(), batch)
                if events:
                    pipeline.record_many(conn, events, react=False)
            if n < batch:
                return

    def refresh(self) -> None:
        """What the worker's daily job keeps current, brought up to the end: segments,
        RFM cells, lifecycle stages, CLV scores, recommendations."""
        began = time.perf_counter()
        now = self.clock.now()
        worker.daily(self.pipeline, now)
        worker.sweep_segments(self.pipeline, now)
        self.result.refresh_seconds += time.perf_counter() - began


# The reads each step makes, built once.
def _any_due(table: sa.Table, statuses: tuple[str, ...], due_at: str) -> sa.Select[tuple[int]]:
    """Is any row of ``table`` in ``statuses`` due at ``now``: one indexed probe."""
    column = table.c[due_at]
    return (
        sa.select(table.c.id)
        .where(table.c.status.in_(statuses), column <= sa.bindparam("now", type_=column.type))
        .limit(1)
    )


_OUTBOX_DUE = _any_due(outbox, ("queued", "failed"), "next_attempt_at")
_RUNS_DUE = _any_due(scenario_runs, ("active", "waiting"), "wake_at")


def caused_revenue(engine: sa.Engine, order_ids: list[str]) -> float:
    """Revenue of the orders messages caused, net of refunds, cancelled ones left out: the
    incremental revenue the simulation planted."""
    if not order_ids:
        return 0.0
    o = orders.c
    total = 0.0
    with engine.connect() as conn:
        for i in range(0, len(order_ids), 5000):
            total += float(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(o.total - o.refunded), 0.0)).where(
                        o.order_id.in_(order_ids[i : i + 5000]), o.status == "completed"
                    )
                ).scalar_one()
            )
    return total
