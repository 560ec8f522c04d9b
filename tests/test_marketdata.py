"""Polygon client, backoff, circuit breaker and the simulator, over real HTTP on 127.0.0.1.

Time is faked only where waiting is the point (backoff): the client's sleep and the breaker's
and simulator's clocks share one FakeClock, so a 5-minute pause takes no wall time."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quantscope.marketdata.backoff import BackoffPolicy, CircuitBreaker, parse_duration, parse_retry_after
from quantscope.marketdata.polygon import (
    BAR_COLUMNS, AuthError, BadRequestError, MalformedResponseError, NotFoundError, PaginationError,
    PolygonClient, PolygonError, RateLimitedError, UpstreamError, build_client_from_settings,
)
from quantscope.marketdata.simulator import (
    FaultConfig, SimulatorConfig, bar_grid, create_app, generate_bars, results_bytes,
)
from quantscope.marketdata.timeframes import TIMEFRAMES, to_ticker
from quantscope.util.asgi_server import BackgroundServer

KEY = "SENTINEL-KEY-7c1e5a0b9d2f4e68a3b1"  # long and unique: any leak is unambiguous
NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


class FakeClock:
    """A clock whose sleep advances time instantly; records every sleep."""

    def __init__(self, start: float = 1000.0):
        self.t = start
        self.sleeps: list[float] = []
        self.on_sleep = None  # optional hook(n_sleeps) run on each sleep (to flip faults mid-fetch)

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock) -> Iterator[BackgroundServer]:
    """An instant simulator that shares the fake clock (its rate-limit window uses it)."""
    with BackgroundServer(create_app(SimulatorConfig(profile="instant", clock=clock))) as srv:
        yield srv


def sim_config(srv: BackgroundServer, **patch) -> dict:
    r = httpx.post(f"{srv.url}/_sim/config", json=patch, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def sim_stats(srv: BackgroundServer) -> dict:
    return httpx.get(f"{srv.url}/_sim/stats", timeout=5).json()


def client(srv_or_url, clock: FakeClock, key: str | None = KEY, **kw) -> PolygonClient:
    url = srv_or_url if isinstance(srv_or_url, str) else srv_or_url.url
    kw.setdefault("breaker", CircuitBreaker(clock=clock))
    return PolygonClient(url, key, sleep=clock.sleep, **kw)


async def fetch(c: PolygonClient, symbol="AAPL", tf="5m", start=utc(2024, 3, 4), end=utc(2024, 3, 9)):
    async with c:
        return await c.fetch_bars(symbol, TIMEFRAMES[tf], start, end)


class RecordingClient(PolygonClient):
    """What instrumentation will do: wrap the single `_wait` choke point."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.waits: list[tuple[str, float, int]] = []

    async def _wait(self, seconds: float, reason: str, attempt: int) -> None:
        self.waits.append((reason, seconds, attempt))
        await super()._wait(seconds, reason, attempt)


# --------------------------------------------------------------------------------------------
# Backoff policy and circuit breaker (pure)
# --------------------------------------------------------------------------------------------

def test_backoff_schedule_is_the_seed_and_retry_after_is_honoured_up_to_the_cap():
    p = BackoffPolicy()
    assert p.delays() == [1.0, 5.0, 30.0, 300.0]
    assert [p.delay(a) for a in range(1, 8)] == [1.0, 5.0, 30.0, 300.0, 300.0, 300.0, 300.0]
    assert p.delay(1, retry_after=12) == 12.0        # larger Retry-After wins
    assert p.delay(3, retry_after=2) == 30.0         # smaller one does not shorten the schedule
    assert p.delay(1, retry_after=86_400) == 300.0   # capped at the last step
    assert BackoffPolicy.from_objectives() == p
    with pytest.raises(ValueError):
        p.delay(0)


def test_backoff_jitter_only_adds_and_validation_rejects_nonsense():
    p = BackoffPolicy(jitter=0.5)
    ds = [p.delay(2) for _ in range(200)]
    assert min(ds) >= 5.0 and max(ds) <= 7.5 and len(set(ds)) > 100
    for bad in ({"schedule": ()}, {"schedule": (5, 1)}, {"schedule": (-1,)}, {"max_attempts": 0},
                {"jitter": 2.0}):
        with pytest.raises(ValueError):
            BackoffPolicy(**bad)


def test_parse_duration_and_retry_after():
    assert [parse_duration(x) for x in ("1s", "5m", "6h", "1d", "250ms")] == [1, 300, 21600, 86400, 0.25]
    for bad in ("5 minutes", "", "m5", "-1s", "1w"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0


def test_circuit_breaker_opens_after_consecutive_rate_limits_and_closes_on_success(clock):
    b = CircuitBreaker(threshold=3, pause_s=10, clock=clock)
    b.record_rate_limit(); b.record_rate_limit()
    assert b.state == "closed" and b.remaining_pause() == 0
    b.record_success()  # resets the streak: the next two do not open it
    b.record_rate_limit(); b.record_rate_limit()
    assert b.state == "closed"
    b.record_rate_limit()
    assert b.state == "open" and b.remaining_pause() == 10 and b.opens == 1
    clock.t += 4
    assert b.remaining_pause() == pytest.approx(6)
    clock.t += 6
    assert b.remaining_pause() == 0 and b.state == "half-open"
    b.record_rate_limit()  # the trial request was limited again: reopen at once
    assert b.remaining_pause() == 10 and b.opens == 2
    b.record_success()
    assert b.state == "closed" and b.remaining_pause() == 0
    cb = CircuitBreaker.from_objectives(clock=clock)
    assert (cb.threshold, cb.pause_s) == (4, 300.0)


def test_breaker_from_objectives_escalates_its_pause_and_resets_on_success(clock):
    b = CircuitBreaker.from_objectives(clock=clock)
    pauses = []
    for _ in range(6):
        for _ in range(4):  # the first four limits open it; later ones (in flight) do not extend it
            b.record_rate_limit()
        pauses.append(b.remaining_pause())
        for _ in range(3):
            b.record_rate_limit()
        assert b.remaining_pause() == pauses[-1], "limits while open must not extend the pause"
        clock.t += pauses[-1]
        assert b.state == "half-open"
        b.consecutive = b.threshold - 1  # the trial request is limited again
    assert pauses == [1.0, 5.0, 30.0, 300.0, 300.0, 300.0]
    b.record_success()
    for _ in range(4):
        b.record_rate_limit()
    assert b.remaining_pause() == 1.0, "a success starts the escalation over"


# --------------------------------------------------------------------------------------------
# Background server
# --------------------------------------------------------------------------------------------

def test_background_server_binds_ephemeral_port_and_shuts_down():
    with BackgroundServer(create_app(SimulatorConfig())) as srv:
        assert srv.port > 0 and srv.url == f"http://127.0.0.1:{srv.port}"
        assert httpx.get(f"{srv.url}/_sim/stats", timeout=5).status_code == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


# --------------------------------------------------------------------------------------------
# Client against the simulator
# --------------------------------------------------------------------------------------------

def test_symbol_mapping_reaches_the_wire(sim, clock):
    assert to_ticker("BTC") == "X:BTCUSD" and to_ticker("BRK.B") == "BRK.B" and to_ticker("AAPL") == "AAPL"
    btc = run(fetch(client(sim, clock), "BTC", "1h"))
    brk = run(fetch(client(sim, clock), "BRK.B", "1h"))
    assert btc.ticker == "X:BTCUSD" and brk.ticker == "BRK.B" and len(btc.bars) and len(brk.bars)
    paths = [u.split("?")[0] for u in sim_stats(sim)["recent_urls"]]
    assert paths[0].startswith("/v2/aggs/ticker/X:BTCUSD/range/1/hour/")
    assert paths[1].startswith("/v2/aggs/ticker/BRK.B/range/1/hour/")


def test_pagination_small_pages_deliver_every_bar_once_sorted(sim, clock):
    start, end = utc(2024, 1, 1), utc(2024, 2, 1)
    one = run(fetch(client(sim, clock), "AAPL", "5m", start, end))
    paged = run(fetch(client(sim, clock, page_limit=250), "AAPL", "5m", start, end))
    n = len(one.bars)
    assert one.pages == 1 and n == 23 * 78  # 23 weekdays in January 2024, 78 five-minute bars each
    assert paged.pages == math.ceil(n / 250) and paged.requests == paged.pages and paged.retries == 0
    pd.testing.assert_frame_equal(paged.bars, one.bars)
    assert tuple(paged.bars.columns) == BAR_COLUMNS
    assert str(paged.bars["ts"].dtype).endswith("UTC]") and paged.bars["ts"].is_monotonic_increasing
    assert paged.bars["ts"].is_unique
    assert paged.bars["ts"].iloc[0] >= pd.Timestamp(start) and paged.bars["ts"].iloc[-1] <= pd.Timestamp(end)
    urls = sim_stats(sim)["recent_urls"][1:]
    assert all("cursor=" in u for u in urls[1:])  # pages 2.. follow next_url


def test_simulator_desc_sort_pages_to_the_same_bars(sim):
    base = f"{sim.url}/v2/aggs/ticker/X:ETHUSD/range/15/minute/2024-05-01/2024-05-03"
    seen, url = [], httpx.URL(base, params={"sort": "desc", "limit": 100})
    while url:  # the way Polygon's own clients page: next_url plus apiKey
        body = httpx.get(httpx.URL(url).copy_add_param("apiKey", KEY), timeout=5).json()
        seen += [r["t"] for r in body.get("results", [])]
        url = body.get("next_url")
    assert len(seen) == 3 * 96 and seen == sorted(seen, reverse=True) and len(set(seen)) == len(seen)


def test_rate_limit_429_honours_retry_after_then_succeeds(sim, clock):
    sim_config(sim, rate_limit_per_min=2)
    res = run(fetch(client(sim, clock, page_limit=400), "AAPL", "5m"))  # 390 bars: one request
    assert res.rate_limited == 0 and res.requests == 1
    res = run(fetch(client(sim, clock, page_limit=100), "AAPL", "5m", utc(2024, 3, 4), utc(2024, 3, 6)))
    assert res.pages == 2 and res.rate_limited >= 1 and res.retries == res.rate_limited
    assert all(s == pytest.approx(60.0, abs=1) for s in clock.sleeps)  # Retry-After (60) > schedule (1)
    assert res.backoff_seconds == pytest.approx(sum(clock.sleeps))
    stats = sim_stats(sim)
    assert stats["rate_limited"] == res.rate_limited and stats["by_status"]["429"] == res.rate_limited


def test_persistent_429_uses_exact_backoff_sequence_and_opens_breaker(sim, clock):
    sim_config(sim, faults={"force_status": 429, "force_retry_after_s": 1})
    c = RecordingClient(sim.url, KEY, sleep=clock.sleep, breaker=CircuitBreaker(clock=clock))
    with pytest.raises(RateLimitedError) as ei:
        run(fetch(c))
    assert clock.sleeps == [1.0, 5.0, 30.0, 300.0]
    assert [w[0] for w in c.waits] == ["rate_limit"] * 4 and [w[2] for w in c.waits] == [1, 2, 3, 4]
    assert ei.value.status == 429 and ei.value.attempts == 5
    assert "AAPL 5m" in str(ei.value) and "429" in str(ei.value)
    assert sim_stats(sim)["by_status"] == {"429": 5}
    assert c.breaker.opens >= 1 and c.breaker.consecutive == 5


def test_circuit_breaker_pauses_the_next_fetch_then_closes(sim, clock):
    breaker = CircuitBreaker(threshold=2, pause_s=50, clock=clock)
    sim_config(sim, faults={"force_status": 429})
    c1 = RecordingClient(sim.url, KEY, sleep=clock.sleep, breaker=breaker,
                         backoff=BackoffPolicy(schedule=(1.0,), max_attempts=2))
    with pytest.raises(RateLimitedError):
        run(fetch(c1))
    assert breaker.state == "open" and breaker.remaining_pause() == pytest.approx(50.0)
    sim_config(sim, faults={"force_status": None})
    c2 = RecordingClient(sim.url, KEY, sleep=clock.sleep, breaker=breaker)
    res = run(fetch(c2))
    assert c2.waits == [("circuit_open", pytest.approx(50.0), 1)]
    assert res.backoff_seconds == pytest.approx(50.0) and res.requests == 1 and len(res.bars) == 5 * 78
    assert breaker.state == "closed"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_then_succeeds(sim, clock, status):
    sim_config(sim, faults={"force_status": status})
    clock.on_sleep = lambda n: sim_config(sim, faults={"force_status": None})  # recover after one failure
    res = run(fetch(client(sim, clock)))
    assert clock.sleeps == [1.0] and res.retries == 1 and res.requests == 2 and len(res.bars) == 5 * 78
    assert sim_stats(sim)["by_status"] == {str(status): 1, "200": 1}


def test_5xx_exhausted_raises_upstream_error(sim, clock):
    sim_config(sim, faults={"error_5xx_rate": 1.0})
    with pytest.raises(UpstreamError) as ei:
        run(fetch(client(sim, clock, backoff=BackoffPolicy(max_attempts=3))))
    assert clock.sleeps == [1.0, 5.0] and ei.value.attempts == 3 and ei.value.status in (500, 502, 503, 504)


@pytest.mark.parametrize("fault", ["malformed_rate", "truncated_rate", "wrong_content_type_rate"])
def test_bad_bodies_are_retried_then_raise_malformed(sim, clock, fault):
    sim_config(sim, faults={fault: 1.0})
    with pytest.raises(MalformedResponseError) as ei:
        run(fetch(client(sim, clock, backoff=BackoffPolicy(max_attempts=3))))
    assert clock.sleeps == [1.0, 5.0] and ei.value.attempts == 3
    assert "AAPL 5m" in str(ei.value) and KEY not in str(ei.value)
    assert sim_stats(sim)["requests"] == 3


def test_one_truncated_body_then_success(sim, clock):
    sim_config(sim, faults={"truncated_rate": 1.0})
    clock.on_sleep = lambda n: sim_config(sim, faults={"truncated_rate": 0.0})
    res = run(fetch(client(sim, clock)))
    assert res.retries == 1 and len(res.bars) == 5 * 78


def test_pagination_loop_and_page_cap_raise_pagination_error(sim, clock):
    sim_config(sim, faults={"pagination_loop": True})
    with pytest.raises(PaginationError, match="loop") as ei:
        run(fetch(client(sim, clock)))
    assert "AAPL 5m" in str(ei.value) and sim_stats(sim)["requests"] == 1
    sim_config(sim, faults={"pagination_loop": False})
    with pytest.raises(PaginationError, match="max_pages=3"):
        run(fetch(client(sim, clock, page_limit=10, max_pages=3)))


def test_timeouts_fail_within_bounds(sim, clock):
    sim_config(sim, faults={"timeout_rate": 1.0, "timeout_sleep_s": 2.0})
    t0 = time.perf_counter()
    with pytest.raises(UpstreamError, match="timed out") as ei:
        run(fetch(client(sim, clock, timeout_s=0.25, backoff=BackoffPolicy(max_attempts=2))))
    assert time.perf_counter() - t0 < 1.5 and ei.value.attempts == 2 and clock.sleeps == [1.0]
    # A slow drip keeps every read under the per-read timeout: the total deadline still applies.
    sim_config(sim, faults={"timeout_rate": 0.0, "slow_drip_rate": 1.0, "slow_drip_s": 2.0, "slow_drip_chunks": 40})
    t0 = time.perf_counter()
    with pytest.raises(UpstreamError, match="timed out"):
        run(fetch(client(sim, clock, timeout_s=0.4, backoff=BackoffPolicy(max_attempts=1))))
    assert time.perf_counter() - t0 < 1.5


def test_slow_drip_within_deadline_is_fine(sim, clock):
    sim_config(sim, faults={"slow_drip_rate": 1.0, "slow_drip_s": 0.3, "slow_drip_chunks": 10})
    res = run(fetch(client(sim, clock, timeout_s=5)))
    assert len(res.bars) == 5 * 78 and res.retries == 0


def test_auth_errors_are_not_retried(sim, clock):
    with pytest.raises(AuthError) as ei:
        run(fetch(client(sim, clock, key=None)))
    assert ei.value.status == 401 and "AAPL 5m" in str(ei.value) and "API Key was not provided" in str(ei.value)
    assert clock.sleeps == [] and sim_stats(sim)["by_status"] == {"401": 1}
    sim_config(sim, faults={"force_status": 403})
    with pytest.raises(AuthError, match="403"):
        run(fetch(client(sim, clock)))
    sim_config(sim, faults={"force_status": 404})
    with pytest.raises(NotFoundError):
        run(fetch(client(sim, clock)))
    assert clock.sleeps == []


def test_unknown_key_is_401(clock):
    cfg = SimulatorConfig(api_keys=("the-right-key-000000",), clock=clock)
    with BackgroundServer(create_app(cfg)) as srv:
        with pytest.raises(AuthError, match="Unknown API Key") as ei:
            run(fetch(client(srv, clock)))
        assert KEY not in str(ei.value)
        res = run(fetch(client(srv, clock, key="the-right-key-000000")))
        assert len(res.bars) == 5 * 78


def test_key_never_in_a_url_an_error_or_a_log(sim, clock, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[Exception] = []
    run(fetch(client(sim, clock, page_limit=20), "BTC", "15m"))  # 25 pages via next_url
    for patch in ({"force_status": 429}, {"malformed_rate": 1.0}, {"force_status": 503},
                  {"pagination_loop": True}, {"force_status": 403}):
        sim_config(sim, faults=patch)
        try:
            run(fetch(client(sim, clock, backoff=BackoffPolicy(max_attempts=2))))
        except PolygonError as e:
            errors.append(e)
        httpx.post(f"{sim.url}/_sim/config", json={"faults": {k: FaultConfig().__getattribute__(k) for k in patch}})
    assert len(errors) == 5
    urls = sim_stats(sim)["recent_urls"]
    assert len(urls) > 20 and not any(KEY in u or "apiKey" in u for u in urls)
    for e in errors:
        chain = [e, e.__cause__, e.__context__]
        assert not any(x is not None and KEY in str(x) for x in chain)
    assert KEY not in caplog.text and "retrying" in caplog.text


def test_equities_trade_regular_hours_on_weekdays_and_crypto_all_week(sim, clock):
    # Fri 2024-03-08 .. Tue 2024-03-12: a weekend and the US switch to daylight time (Sun 10th).
    start, end = utc(2024, 3, 8), utc(2024, 3, 13)
    aapl = run(fetch(client(sim, clock), "AAPL", "5m", start, end)).bars
    btc = run(fetch(client(sim, clock), "BTC", "5m", start, end)).bars
    local = aapl["ts"].dt.tz_convert(NY)
    minutes = local.dt.hour * 60 + local.dt.minute
    assert (local.dt.day_of_week < 5).all() and minutes.between(9 * 60 + 30, 16 * 60 - 5).all()
    per_day = local.dt.date.value_counts().sort_index()
    assert list(per_day.index.astype(str)) == ["2024-03-08", "2024-03-11", "2024-03-12"]
    assert (per_day == 78).all()
    first = aapl.groupby(local.dt.date)["ts"].min().dt.strftime("%H:%M").tolist()
    assert first == ["14:30", "13:30", "13:30"]  # 09:30 New York in EST, then EDT
    assert len(btc) == 5 * 288 + 1  # end is inclusive: midnight of the 13th starts a bar
    assert (btc["ts"].diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert (btc["ts"].dt.day_of_week >= 5).sum() == 2 * 288
    daily = run(fetch(client(sim, clock), "SPY", "1d", utc(2024, 3, 1), utc(2024, 3, 31, 23))).bars
    assert len(daily) == 21 and (daily["ts"].dt.tz_convert(NY).dt.hour == 0).all()
    assert len(run(fetch(client(sim, clock), "ETH", "1d", utc(2024, 3, 1), utc(2024, 3, 31))).bars) == 31


def test_same_request_same_bytes_and_bars(sim, clock):
    a = run(fetch(client(sim, clock), "NVDA", "15m"))
    b = run(fetch(client(sim, clock, page_limit=37), "NVDA", "15m"))
    pd.testing.assert_frame_equal(a.bars, b.bars)
    url = f"{sim.url}/v2/aggs/ticker/X:SOLUSD/range/1/hour/2024-01-01/2024-01-10"
    bodies = [httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json() for _ in range(2)]
    assert bodies[0]["results"] == bodies[1]["results"] and bodies[0]["request_id"] != bodies[1]["request_id"]
    other = create_app(SimulatorConfig(seed=7))
    with BackgroundServer(other) as srv7:
        c = run(fetch(client(srv7, clock), "NVDA", "15m"))
    assert not np.allclose(c.bars["close"], a.bars["close"])


def test_closes_agree_across_timeframes():
    # A 1h bar's close is the price at its end instant: so is the last 5m bar's close in that hour.
    start, end = 1_704_067_200_000, 1_704_067_200_000 + 86_400_000 - 1
    h = generate_bars("X:BTCUSD", bar_grid("X:BTCUSD", "hour", 1, start, end, 100), 42)
    m5 = generate_bars("X:BTCUSD", bar_grid("X:BTCUSD", "minute", 5, start, end, 1000), 42)
    close5 = dict(zip((m5["t"] + 300_000).tolist(), m5["c"].tolist()))
    assert [close5[t + 3_600_000] for t in h["t"].tolist()] == h["c"].tolist()
    # Equities: a daily bar opens at the 09:30 price and closes at the 16:00 price of its session.
    start, end = 1_709_251_200_000, 1_709_251_200_000 + 14 * 86_400_000  # 2024-03-01 .. 03-14
    d = generate_bars("SPY", bar_grid("SPY", "day", 1, start, end, 100), 42)
    m5 = generate_bars("SPY", bar_grid("SPY", "minute", 5, start, end, 5000), 42)
    day_of = pd.to_datetime(m5["t"], unit="ms", utc=True).tz_convert(NY).date
    first = pd.Series(m5["o"]).groupby(day_of).first().tolist()
    last = pd.Series(m5["c"]).groupby(day_of).last().tolist()
    assert len(d["t"]) == 10 and d["o"].tolist() == first and d["c"].tolist() == last


@pytest.mark.parametrize("n", [0, 1, 3, 500])
def test_results_bytes_matches_row_dicts(n):
    g = bar_grid("AAPL", "minute", 1, 1_704_067_200_000, 1_706_745_600_000, max(n, 1))
    bars = generate_bars("AAPL", g, 42)
    if n == 0:
        bars = {k: v[:0] for k, v in bars.items()}
    rows = [{k: bars[k][i].item() for k in ("v", "vw", "o", "c", "h", "l", "t", "n")} for i in range(n)]
    assert orjson.loads(results_bytes(bars)) == rows


@pytest.mark.parametrize("symbol,tf", [("AAPL", "5m"), ("BTC", "15m"), ("SPY", "1h"), ("XRP", "4h"),
                                       ("BRK.B", "1d"), ("ADA", "1d")])
def test_ohlc_invariants(sim, clock, symbol, tf):
    end = utc(2024, 6, 1)
    bars = run(fetch(client(sim, clock), symbol, tf, end - TIMEFRAMES[tf].lookback, end)).bars
    assert len(bars) > 500
    o, h, l, c, v, vw = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume", "vwap"))
    assert (l <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all() and (l > 0).all()
    assert (v > 0).all() and ((vw >= l) & (vw <= h)).all() and (bars["trades"] >= 1).all()
    r = np.diff(np.log(c))
    assert 1e-4 < r.std() < 0.2 and (h > l).mean() > 0.95  # moves, but plausibly


def test_concurrency_is_capped_per_client(clock):
    cfg = SimulatorConfig(profile="polygon-like", clock=clock)
    with BackgroundServer(create_app(cfg)) as srv:
        async def many():
            async with client(srv, clock, max_concurrency=2) as c:
                return await asyncio.gather(*(c.fetch_bars(s, TIMEFRAMES["1d"], utc(2024, 1, 1), utc(2024, 2, 1))
                                              for s in ("AAPL", "MSFT", "SPY", "QQQ", "BTC", "ETH")))
        results = run(many())
        assert all(len(r.bars) for r in results)
        assert sim_stats(srv)["max_in_flight"] == 2


def test_simulator_parameter_errors_and_control(sim):
    h = {"Authorization": f"Bearer {KEY}"}
    base = f"{sim.url}/v2/aggs/ticker"
    for path, params in ((f"{base}/AAPL/range/1/day/2024-01-01/2024-02-01", {"limit": 0}),
                         (f"{base}/AAPL/range/1/day/2024-01-01/2024-02-01", {"limit": 50001}),
                         (f"{base}/AAPL/range/1/day/2024-01-01/2024-02-01", {"sort": "up"}),
                         (f"{base}/AAPL/range/1/fortnight/2024-01-01/2024-02-01", {}),
                         (f"{base}/aapl!/range/1/day/2024-01-01/2024-02-01", {}),
                         (f"{base}/AAPL/range/1/day/yesterday/2024-02-01", {})):
        r = httpx.get(path, params=params, headers=h, timeout=5)
        assert r.status_code == 400 and r.json()["status"] == "ERROR" and r.json()["error"], (path, params)
    r = httpx.get(f"{sim.url}/v3/nothing", headers=h, timeout=5)
    assert r.status_code == 404 and r.json()["status"] == "NOT_FOUND"
    r = httpx.get(f"{base}/AAPL/range/1/day/2024-01-01/2024-01-31", params={"apiKey": KEY}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "OK" and body["resultsCount"] == 23 == body["count"]
    assert set(body["results"][0]) == {"v", "vw", "o", "c", "h", "l", "t", "n"} and "next_url" not in body
    r = httpx.get(f"{base}/AAPL/range/1/day/2024-01-06/2024-01-07", headers=h, timeout=5)  # a weekend
    assert r.json()["resultsCount"] == 0 and "results" not in r.json()
    assert httpx.post(f"{sim.url}/_sim/config", json={"faults": {"timeout_rate": 3}}, timeout=5).status_code == 400
    assert httpx.post(f"{sim.url}/_sim/config", json={"bogus": 1}, timeout=5).status_code == 400
    assert sim_config(sim, profile="slow")["profile"] == "slow"
    stats = sim_stats(sim)
    assert stats["requests"] == 9 and stats["distinct_request_ids"] == 9 and stats["by_status"]["400"] == 6
    httpx.post(f"{sim.url}/_sim/reset", timeout=5)
    assert sim_stats(sim)["requests"] == 0 and httpx.get(f"{sim.url}/_sim/config").json()["profile"] == "instant"


# --------------------------------------------------------------------------------------------
# Client validation against a scripted (real HTTP) server
# --------------------------------------------------------------------------------------------

def _bar(t, o=10.0, h=11.0, l=9.0, c=10.5, v=100.0, **extra):
    return {"t": t, "o": o, "h": h, "l": l, "c": c, "v": v, **extra}


class Scripted:
    """Serves a fixed sequence of (status, body, content-type) answers; records what it received."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.urls: list[str] = []
        self.auth: list[str | None] = []

        async def handler(request: Request) -> Response:
            self.urls.append(str(request.url))
            self.auth.append(request.headers.get("authorization"))
            status, body, ctype = self.answers.pop(0)
            payload = body if isinstance(body, bytes) else orjson.dumps(body)
            return Response(payload, status_code=status, media_type=ctype)

        self.app = Starlette(routes=[Route("/{p:path}", handler)])


def scripted_fetch(answers, clock, **kw):
    s = Scripted(answers)
    with BackgroundServer(s.app) as srv:
        try:
            return run(fetch(client(srv, clock, **kw))), s
        except PolygonError as e:
            e.scripted = s  # type: ignore[attr-defined]
            raise


J = "application/json"


@pytest.mark.parametrize("bad,what", [
    (_bar(1, h=8.0), "high < low"),
    (_bar(1, v=-1.0), "negative volume"),
    (_bar(1, o=12.0), "outside"),
    (_bar(1, c=0.0, l=0.0), "non-positive"),
    ({"t": 1, "o": "10", "h": 11, "l": 9, "c": 10, "v": 1}, "not numeric"),
    ({"t": 1, "o": 10, "h": 11, "l": 9, "v": 1}, "'c'"),
    (_bar(1.5), "integer milliseconds"),
])
def test_impossible_bars_fail_the_fetch(clock, bad, what):
    body = {"status": "OK", "resultsCount": 2, "results": [_bar(0), bad]}
    with pytest.raises(MalformedResponseError, match=what) as ei:
        scripted_fetch([(200, body, J)], clock)
    assert ei.value.scripted.urls and len(ei.value.scripted.urls) == 1  # not retried


def test_scripted_shapes_duplicates_and_next_url_hygiene(clock):
    day = 86_400_000
    page1 = {"status": "DELAYED", "results": [_bar(2 * day, c=10.1), _bar(0), _bar(day, vw=10.2, n=7)],
             # a foreign host and an apiKey param: the client must strip both
             "next_url": f"https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1/2?cursor=abc&apiKey={KEY}"}
    page2 = {"status": "OK", "results": [_bar(2 * day, c=10.4)]}  # duplicate t: the later page wins
    res, s = scripted_fetch([(200, page1, J), (200, page2, J)], clock)
    b = res.bars
    assert b["ts"].tolist() == [pd.Timestamp(x, unit="ms", tz="UTC") for x in (0, day, 2 * day)]
    assert b["close"].tolist() == [10.5, 10.5, 10.4]
    assert b["vwap"].tolist() == [pytest.approx((11 + 9 + 10.5) / 3), 10.2, pytest.approx((11 + 9 + 10.4) / 3)]
    assert b["trades"].tolist() == [0, 7, 0] and str(b["trades"].dtype) == "int64"
    assert s.urls[1].startswith("http://127.0.0.1:") and s.urls[1].endswith("/v2/aggs/ticker/AAPL/range/1/day/1/2?cursor=abc")
    assert not any(KEY in u for u in s.urls) and s.auth == [f"Bearer {KEY}"] * 2


@pytest.mark.parametrize("answer,exc,retried", [
    ((200, {"status": "OK", "resultsCount": 3}, J), MalformedResponseError, False),
    ((200, {"status": "OK", "results": {"t": 1}}, J), MalformedResponseError, False),
    ((200, {"status": "NOT_AUTHORIZED", "message": "You are not entitled to this data."}, J), AuthError, False),
    ((200, {"status": "WEIRD"}, J), MalformedResponseError, False),
    ((200, [1, 2], J), MalformedResponseError, True),
    ((200, b"", J), MalformedResponseError, True),
    ((400, {"status": "ERROR", "error": f"bad key {KEY} echoed"}, J), BadRequestError, False),
])
def test_scripted_error_shapes(clock, answer, exc, retried):
    n = 2 if retried else 1
    with pytest.raises(exc) as ei:
        scripted_fetch([answer] * n, clock, backoff=BackoffPolicy(max_attempts=n))
    assert len(ei.value.scripted.urls) == n and KEY not in str(ei.value) and "AAPL 5m" in str(ei.value)


def test_empty_result_has_the_bar_columns(clock):
    res, _ = scripted_fetch([(200, {"status": "OK", "resultsCount": 0, "queryCount": 0}, J)], clock)
    assert len(res.bars) == 0 and tuple(res.bars.columns) == BAR_COLUMNS
    assert str(res.bars["ts"].dtype).endswith("UTC]")


def test_client_refuses_keys_in_urls_and_naive_times(sim, clock):
    with pytest.raises(ValueError):
        PolygonClient(f"{sim.url}?apiKey={KEY}", KEY)
    with pytest.raises(ValueError, match="timezone-aware"):
        run(fetch(client(sim, clock), start=datetime(2024, 1, 1), end=datetime(2024, 1, 2)))


def test_build_client_from_settings(tmp_path):
    from quantscope.settings import Settings

    s = Settings(POLYGON_API_KEY=KEY, http_timeout_s=7, http_concurrency=3, page_limit=1234)
    c = build_client_from_settings(s, base_url_override="http://127.0.0.1:9")
    assert (c.base_url, c.timeout_s, c.max_concurrency, c.page_limit) == ("http://127.0.0.1:9", 7.0, 3, 1234)
    assert c.backoff.delays() == [1.0, 5.0, 30.0, 300.0] and c.breaker.threshold == 4
    assert KEY not in repr(c) and KEY not in c.base_url
    run(c.aclose())
