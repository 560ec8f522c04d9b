"""The scheduler: keeps every tier within its RPO, runs the daily full backfill, resumes unfinished
runs (its own after a crash, or ones created by the API) and catches up after long downtime.

Every due run gets a deterministic id per time slot, so several schedulers create it once and
then share its jobs through the claims in scheduler_execution_log: scale-out needs no new part."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from quantscope.backfill.runner import BackfillRunner, RunPlan
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES
from quantscope.objectives import TIER_ORDER, Objectives
from quantscope.store import execution_log as xlog

log = logging.getLogger("quantscope.scheduler")


@dataclass(frozen=True)
class DueRun:
    run_id: str
    trigger: str
    symbols: tuple[str, ...]


def due_runs(obj: Objectives, symbol_tiers: dict[str, str], now: datetime,
             last_success: datetime | None, refreshed: dict[str, datetime | None] | None = None) -> list[DueRun]:
    """Pure: which runs should exist at `now`. Tier runs are keyed by cadence slot, the daily run
    by date, the catch-up run by the hour it was detected. `refreshed[tier]` is the time since
    which every series of the tier has been refreshed: a slot it already covers needs no run."""
    refreshed = refreshed or {}

    def covered(tiers, since: datetime) -> bool:
        return all(refreshed.get(t) is not None and refreshed[t] >= since for t in tiers)

    out: list[DueRun] = []
    epoch = int(now.timestamp())
    if last_success is None or (now - last_success).total_seconds() > obj.schedule.extended_downtime:
        # Everything, in priority order (the runner claims critical first, then standard, then low).
        out.append(DueRun(f"catchup-{now:%Y%m%dT%H}", "catchup", tuple(symbol_tiers)))
        return out
    h, m = obj.schedule.daily_hour_minute
    daily_at = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if now >= daily_at and not covered(set(symbol_tiers.values()), daily_at):
        out.append(DueRun(f"daily-{now:%Y%m%d}", "daily", tuple(symbol_tiers)))
    for tier in TIER_ORDER:
        freq = int(obj.rpo[tier].frequency)
        members = tuple(s for s, t in symbol_tiers.items() if t == tier)
        slot = epoch - epoch % freq
        if members and freq < 86400 and not covered([tier], datetime.fromtimestamp(slot, timezone.utc)):
            out.append(DueRun(f"tier-{tier}-{slot}", f"tier:{tier}", members))
    return out


@dataclass
class Scheduler:
    db: object
    client: object
    objectives: Objectives
    symbol_tiers: dict[str, str]
    strategy: str = "copy"
    concurrency: int = 5
    target_bars: int = 1000
    poll_s: float = 5.0
    run_prefix: str = ""  # runs it creates are named so; with one, it resumes only those
    clock: object = field(default=lambda: datetime.now(timezone.utc))
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    runs_done: int = 0

    def _ensure_due(self) -> list[str]:
        now = self.clock()

        def create(conn) -> list[str]:
            last = xlog.last_success_at(conn, list(self.symbol_tiers) if self.run_prefix else None)
            refreshed = xlog.tier_refreshed_at(conn, self.symbol_tiers, TIMEFRAME_NAMES)
            created = []
            for due in due_runs(self.objectives, self.symbol_tiers, now, last, refreshed):
                plan = RunPlan.build(due.symbols, TIMEFRAME_NAMES, as_of=now, target_bars=self.target_bars)
                if xlog.create_run(conn, self.run_prefix + due.run_id, trigger=due.trigger, strategy=self.strategy,
                                   concurrency=self.concurrency, params=plan.to_params(),
                                   jobs=[(i.symbol, tf, i.tier, p) for i, tf, p in plan.jobs()]):
                    created.append(self.run_prefix + due.run_id)
            return created

        return self.db.run(create)

    async def tick(self) -> int:
        """Create what is due, then work every unfinished run to the end. Returns runs worked."""
        created = await asyncio.to_thread(self._ensure_due)
        for run_id in created:
            log.info("scheduled run %s", run_id)
        open_runs = await asyncio.to_thread(self.db.run, lambda c: xlog.unfinished_runs(c, self.run_prefix))
        for run_id in open_runs:
            runner = BackfillRunner(self.db, self.client, strategy=self.strategy, concurrency=self.concurrency)
            result = await runner.run(run_id=run_id, trigger="scheduler")
            self.runs_done += 1
            log.info("run %s: %s", run_id, result.counts)
        return len(open_runs)

    async def run_forever(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                await self.tick()
            except Exception:  # a bad tick must not kill the scheduler; the next one retries
                log.exception("scheduler tick failed")
            remaining = self.poll_s - (time.monotonic() - t0)
            if remaining > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), remaining)
                except TimeoutError:
                    pass
