"""A Polygon-compatible aggregates server: deterministic data, realistic latency, injectable faults.

Same request -> byte-identical `results`. Prices come from a closed-form path (drift plus a
spectrum of sinusoids whose increments scale like a random walk) plus counter-based noise keyed on
(seed, ticker, timestamp), so any window is produced without generating history, and a close at
10:00 is the same number whether it was asked for in 5m or 1h bars.

Equities/ETFs (no "X:" prefix) trade 09:30-16:00 America/New_York on weekdays (exchange holidays
are not modelled); crypto ("X:...") trades 24/7. Bars are aligned like Polygon's: intraday on
epoch multiples of the bar length, daily on local midnight (New York for equities, UTC for
crypto), weekly on Sunday.

Runtime control for drills: POST /_sim/config, GET /_sim/config, GET /_sim/stats, POST /_sim/reset.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import math
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

NY = ZoneInfo("America/New_York")
MINUTE_MS = 60_000
DAY_MS = 86_400_000
YEAR_S = 365.25 * 86400
SESSION_OPEN_MS = (9 * 60 + 30) * MINUTE_MS
SESSION_CLOSE_MS = 16 * 60 * MINUTE_MS
SESSION_MIN = 390
T0_MS = 1_577_836_800_000  # 2020-01-01T00:00Z: the anchor price applies here
TICKER_RE = re.compile(r"^(?:[A-Z]:)?[A-Z0-9]{1,12}(?:\.[A-Z0-9]{1,4})?$")
TIMESPAN_MS = {"minute": MINUTE_MS, "hour": 60 * MINUTE_MS}
TIMESPANS = ("minute", "hour", "day", "week")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatencyProfile:
    base_ms: float
    jitter_ms: float             # mean of an exponential tail on top of base (right-skewed, like WAN)
    per_1000_results_ms: float   # serialisation/transfer cost of big pages


PROFILES: dict[str, LatencyProfile] = {
    "instant": LatencyProfile(0.0, 0.0, 0.0),
    "polygon-like": LatencyProfile(80.0, 35.0, 8.0),   # median ~105 ms, p99 ~250 ms
    "slow": LatencyProfile(650.0, 150.0, 40.0),        # median ~750 ms
}

_RATE_FIELDS = ("error_5xx_rate", "timeout_rate", "malformed_rate", "truncated_rate",
                "wrong_content_type_rate", "slow_drip_rate")


@dataclass(frozen=True)
class FaultConfig:
    error_5xx_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    wrong_content_type_rate: float = 0.0
    slow_drip_rate: float = 0.0
    slow_drip_s: float = 2.0          # total time to drip one body
    slow_drip_chunks: int = 20
    pagination_loop: bool = False     # next_url points at the request itself
    huge_page: bool = False           # ignore `limit`, answer up to max_limit bars
    force_status: int | None = None   # answer every aggregates request with this status
    force_retry_after_s: int = 1      # Retry-After sent with force_status=429

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"faults.{name} must be a number within 0..1, got {v!r}")
        if self.timeout_sleep_s < 0 or self.slow_drip_s < 0 or self.slow_drip_chunks < 1:
            raise ValueError("faults: timeout_sleep_s and slow_drip_s must be >= 0, slow_drip_chunks >= 1")
        if self.force_status is not None and not (isinstance(self.force_status, int) and 100 <= self.force_status <= 599):
            raise ValueError(f"faults.force_status must be an HTTP status or null, got {self.force_status!r}")


@dataclass(frozen=True)
class SimulatorConfig:
    profile: str = "instant"
    seed: int = 42
    rate_limit_per_min: int | None = None    # sliding 60 s window per API key
    require_key: bool = True
    api_keys: tuple[str, ...] | None = None  # when set, other keys get 401 "Unknown API Key"
    default_limit: int = 5000
    max_limit: int = 50000
    response_status: str = "OK"              # real free plans answer "DELAYED"
    faults: FaultConfig = field(default_factory=FaultConfig)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; expected one of {', '.join(PROFILES)}")
        if self.rate_limit_per_min is not None and (isinstance(self.rate_limit_per_min, bool)
                                                    or not isinstance(self.rate_limit_per_min, int)
                                                    or self.rate_limit_per_min < 1):
            raise ValueError(f"rate_limit_per_min must be a positive integer or null, got {self.rate_limit_per_min!r}")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ValueError("default_limit must be within 1..max_limit")
        if isinstance(self.faults, dict):
            object.__setattr__(self, "faults", FaultConfig(**self.faults))

    def public(self) -> dict[str, Any]:
        return {"profile": self.profile, "seed": self.seed, "rate_limit_per_min": self.rate_limit_per_min,
                "require_key": self.require_key, "default_limit": self.default_limit,
                "max_limit": self.max_limit, "response_status": self.response_status,
                "faults": dataclasses.asdict(self.faults)}


# --------------------------------------------------------------------------------------------
# Counter-based randomness (splitmix64): any element computable on its own
# --------------------------------------------------------------------------------------------

_MASK = (1 << 64) - 1
_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x + _G
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _key(*parts: object) -> int:
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def _hash(key: int, counters: np.ndarray) -> np.ndarray:
    return _mix(_mix(counters.astype(np.uint64) ^ np.uint64(key & _MASK)))


def _normal(key: int, counters: np.ndarray) -> np.ndarray:
    """Approximately standard normal (Irwin-Hall of four 16-bit lanes of one hash: cheaper than
    Box-Muller, tails end at +-3.5 sigma, which is fine for synthetic bars)."""
    x = _hash(key, counters)
    lane = np.uint64(0xFFFF)
    s = ((x & lane) + ((x >> np.uint64(16)) & lane) + ((x >> np.uint64(32)) & lane) + (x >> np.uint64(48)))
    return (s.astype(np.float64) * (1.0 / 65536.0) - 2.0) * 1.7320508075688772


# --------------------------------------------------------------------------------------------
# Per-ticker model
# --------------------------------------------------------------------------------------------

# Rough levels for familiar tickers so charts look plausible; others are drawn from the hash.
_ANCHORS: dict[str, tuple[float, float]] = {  # ticker -> (price at 2020-01-01, annual vol)
    "AAPL": (75.0, 0.30), "MSFT": (160.0, 0.27), "GOOGL": (68.0, 0.29), "AMZN": (93.0, 0.33),
    "TSLA": (28.0, 0.60), "NVDA": (6.0, 0.50), "META": (205.0, 0.38), "NFLX": (325.0, 0.42),
    "AVGO": (31.0, 0.33), "ASML": (295.0, 0.38), "BRK.B": (226.0, 0.18), "JPM": (139.0, 0.26),
    "V": (188.0, 0.24), "WMT": (39.0, 0.20), "JNJ": (146.0, 0.17),
    "SPY": (322.0, 0.17), "QQQ": (212.0, 0.22), "DIA": (285.0, 0.17), "IWM": (168.0, 0.23),
    "EEM": (45.0, 0.20),
    "X:BTCUSD": (7200.0, 0.65), "X:ETHUSD": (130.0, 0.80), "X:XRPUSD": (0.19, 0.90),
    "X:SOLUSD": (1.5, 1.00), "X:ADAUSD": (0.033, 0.90),
}
_N_WAVES = 20
_PERIODS_S = np.geomspace(20 * 60, 8 * YEAR_S, _N_WAVES)  # 20 minutes .. 8 years
_OMEGAS_MIN = 2 * np.pi / _PERIODS_S * 60.0               # radians per minute
# sin(A + B) = sin A cos B + cos A sin B with B over 1024 minutes tabulated once: a window of
# contiguous bars then needs a few small matrix products instead of n x waves sines.
_TABLE_MIN = 1024
_COS_TAB = np.cos(np.multiply.outer(np.arange(_TABLE_MIN), _OMEGAS_MIN))
_SIN_TAB = np.sin(np.multiply.outer(np.arange(_TABLE_MIN), _OMEGAS_MIN))


@dataclass(frozen=True)
class TickerModel:
    ticker: str
    crypto: bool
    key: int
    p0: float
    vol: float              # annualised
    drift: float            # annualised log drift
    amps: np.ndarray
    omegas: np.ndarray
    phases: np.ndarray
    base_at_t0: float
    volume_per_min: float   # shares (equities) or coins (crypto) per active minute at p0
    trade_size: float
    decimals: int


_MODELS: dict[tuple[int, str], TickerModel] = {}


def ticker_model(ticker: str, seed: int) -> TickerModel:
    cached = _MODELS.get((seed, ticker))
    if cached is not None:
        return cached
    crypto = ticker.startswith("X:")
    key = _key("ticker", seed, ticker)
    rng = np.random.default_rng(key)
    if ticker in _ANCHORS:
        p0, vol = _ANCHORS[ticker]
    elif crypto:
        p0, vol = float(np.exp(rng.uniform(np.log(0.05), np.log(5000)))), float(rng.uniform(0.6, 1.0))
    else:
        p0, vol = float(np.exp(rng.uniform(np.log(10), np.log(600)))), float(rng.uniform(0.18, 0.5))
    drift = float(rng.uniform(-0.05, 0.20))
    omegas = 2 * np.pi / _PERIODS_S
    phases = rng.uniform(0, 2 * np.pi, _N_WAVES)
    # a_j ~ sqrt(P_j) on a log-spaced grid gives increment variance ~ linear in the lag (a random
    # walk's signature); scale so a one-day increment has the ticker's daily variance.
    shape = np.sqrt(_PERIODS_S)
    day_var = float(np.sum(shape**2 * (1 - np.cos(omegas * 86400))))
    amps = shape * math.sqrt(vol**2 / 365.25 / day_var) * 0.8  # 0.8: bar noise adds the rest
    base_at_t0 = float(np.sum(amps * np.sin(phases)))
    notional_per_min = float(np.exp(rng.uniform(np.log(2e5), np.log(8e6))))
    volume_per_min = notional_per_min / p0
    trade_size = (float(np.exp(rng.uniform(np.log(300), np.log(5000)))) / p0) if crypto else float(rng.uniform(60, 180))
    decimals = 2 if p0 >= 1000 else 4 if p0 >= 1 else 6
    model = TickerModel(ticker, crypto, key, p0, vol, drift, amps, omegas, phases, base_at_t0,
                        volume_per_min, trade_size, decimals)
    if len(_MODELS) > 4096:
        _MODELS.clear()
    _MODELS[(seed, ticker)] = model
    return model


def _waves(m: TickerModel, t_ms: np.ndarray) -> np.ndarray:
    k_min, rem = np.divmod(t_ms - T0_MS, MINUTE_MS)
    hi, lo = np.divmod(k_min, _TABLE_MIN)
    uhi, inv = np.unique(hi, return_inverse=True)
    if rem.any() or len(uhi) * 10 > len(t_ms):  # sparse or off-minute instants: direct sines
        s = (t_ms - T0_MS).astype(np.float64) / 1000.0
        return np.sin(np.multiply.outer(s, m.omegas) + m.phases) @ m.amps
    a = np.multiply.outer(uhi.astype(np.float64) * _TABLE_MIN, _OMEGAS_MIN) + m.phases
    table = (np.sin(a) * m.amps) @ _COS_TAB.T + (np.cos(a) * m.amps) @ _SIN_TAB.T
    return table[inv.reshape(-1), lo]


def _log_level(m: TickerModel, t_ms: np.ndarray) -> np.ndarray:
    """Smooth log price at instants t_ms plus noise keyed on the instant alone."""
    s = (t_ms - T0_MS).astype(np.float64) / 1000.0
    noise = _normal(m.key ^ 0xB0B, t_ms) * (m.vol * math.sqrt(300 / YEAR_S) * 0.6)
    return math.log(m.p0) + m.drift * s / YEAR_S + _waves(m, t_ms) - m.base_at_t0 + noise


# --------------------------------------------------------------------------------------------
# Bar grids
# --------------------------------------------------------------------------------------------

def _local_midnights(days: np.ndarray) -> np.ndarray:
    """UTC ms of New York midnight for local day numbers (days since 1970-01-01)."""
    if len(days) == 0:
        return days.astype(np.int64)
    idx = pd.DatetimeIndex((days.astype(np.int64) * DAY_MS).astype("datetime64[ms]")).tz_localize(NY)
    return idx.as_unit("ms").asi8


def _weekday(days: np.ndarray) -> np.ndarray:
    return (days + 3) % 7  # Monday=0; 1970-01-01 was a Thursday


def _session_slots(days: np.ndarray, bar_ms: int) -> tuple[np.ndarray, ...]:
    """Intraday bar starts overlapping the regular session of the given weekdays, with the
    overlapping milliseconds, the position in the session (0..1; both drive volume) and the
    instants of the first and last trade (the bar's open and close prices)."""
    mid = _local_midnights(days)
    s, e = mid + SESSION_OPEN_MS, mid + SESSION_CLOSE_MS
    k_lo, k_hi = s // bar_ms, (e - 1) // bar_ms
    counts = k_hi - k_lo + 1
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    ks = np.repeat(k_lo, counts) + (np.arange(total) - first)
    starts = ks * bar_ms
    s_rep, e_rep = np.repeat(s, counts), np.repeat(e, counts)
    o_at, c_at = np.maximum(starts, s_rep), np.minimum(starts + bar_ms, e_rep)
    active = c_at - o_at
    pos = np.clip((starts - s_rep) / (SESSION_CLOSE_MS - SESSION_OPEN_MS), 0.0, 1.0)
    out = (starts, active, pos, o_at, c_at)
    if bar_ms > DAY_MS - (SESSION_CLOSE_MS - SESSION_OPEN_MS):  # one slot may span two sessions
        _, i = np.unique(starts, return_index=True)
        out = tuple(x[i] for x in out)
    return out


@dataclass
class Grid:
    starts: np.ndarray   # int64 ms, in the requested order
    ends: np.ndarray     # int64 ms
    active_min: np.ndarray  # trading minutes inside each bar
    more: int | None     # start of the next bar after this page, None on the last page
    session_pos: np.ndarray | None = None  # equities intraday: bar start's position in the session
    open_at: np.ndarray | None = None   # instants of the open and close prices when they differ
    close_at: np.ndarray | None = None  # from the bar bounds (equities: first/last trade)


def bar_grid(ticker: str, timespan: str, multiplier: int, from_ms: int, to_ms: int, limit: int,
             descending: bool = False) -> Grid:
    """Up to `limit` bar starts within [from_ms, to_ms] (inclusive), plus the next start if any."""
    crypto = ticker.startswith("X:")
    need = limit + 1
    if to_ms < from_ms:
        e = np.empty(0, np.int64)
        return Grid(e, e, e.astype(np.float64), None)
    pos = o_at = c_at = None
    if timespan in TIMESPAN_MS:
        bar_ms = TIMESPAN_MS[timespan] * multiplier
        if crypto:
            k0, k1 = -(-from_ms // bar_ms), to_ms // bar_ms
            ks = np.arange(max(k0, k1 - need + 1), k1 + 1)[::-1][:need] if descending \
                else np.arange(k0, min(k1, k0 + need - 1) + 1)
            starts = ks.astype(np.int64) * bar_ms
            active = np.full(len(starts), bar_ms / MINUTE_MS)
        else:
            starts, active, pos, o_at, c_at = _equity_intraday(bar_ms, from_ms, to_ms, need, descending)
            active = active / MINUTE_MS
            pos, o_at, c_at = pos[:limit], o_at[:limit], c_at[:limit]
        ends = starts + bar_ms
    else:
        days_len = multiplier * (7 if timespan == "week" else 1)
        d_lo, d_hi = from_ms // DAY_MS - days_len - 1, to_ms // DAY_MS + 1
        days = np.arange(d_lo, d_hi + 1, dtype=np.int64)
        if timespan == "week":
            days = days[(days - 3) % (7 * multiplier) == 0]  # Sundays, epoch-aligned groups
        else:
            days = days[days % multiplier == 0]
        if crypto:
            starts = days * DAY_MS
            active = np.full(len(days), 1440.0 * days_len)
            extra: list[np.ndarray] = []
        else:
            trading = np.stack([_weekday(days + i) < 5 for i in range(days_len)], axis=1)
            n_trading = trading.sum(axis=1)
            days, trading, n_trading = days[n_trading > 0], trading[n_trading > 0], n_trading[n_trading > 0]
            active = (n_trading * SESSION_MIN).astype(np.float64)
            starts = _local_midnights(days)
            first = days + np.argmax(trading, axis=1)
            last = days + days_len - 1 - np.argmax(trading[:, ::-1], axis=1)
            # open at the first session's 09:30, close at the last session's 16:00
            extra = [_local_midnights(first) + SESSION_OPEN_MS, _local_midnights(last) + SESSION_CLOSE_MS]
        keep = (starts >= from_ms) & (starts <= to_ms)
        cols = [x[keep] for x in (starts, active, *extra)]
        if descending:
            cols = [x[::-1] for x in cols]
        cols = [x[:need] for x in cols]
        starts, active = cols[0], cols[1]
        if extra:
            o_at, c_at = cols[2][:limit], cols[3][:limit]
        ends = starts + days_len * DAY_MS
    more = int(starts[limit]) if len(starts) > limit else None
    return Grid(starts[:limit], ends[:limit], active[:limit], more, pos, o_at, c_at)


def _equity_intraday(bar_ms: int, from_ms: int, to_ms: int, need: int, descending: bool):
    first_day, last_day = (from_ms - DAY_MS) // DAY_MS, (to_ms + DAY_MS) // DAY_MS
    per_day = max(1, SESSION_MIN * MINUTE_MS // bar_ms)
    chunk = max(8, int(need / per_day * 7 / 5) + 4)  # calendar days likely to hold `need` bars
    got: list[tuple[np.ndarray, ...]] = []
    n = 0
    lo, hi = (last_day - chunk + 1, last_day) if descending else (first_day, first_day + chunk - 1)
    while n < need and hi >= first_day and lo <= last_day:
        days = np.arange(max(lo, first_day), min(hi, last_day) + 1, dtype=np.int64)
        days = days[_weekday(days) < 5]
        cols = _session_slots(days, bar_ms)
        keep = (cols[0] >= from_ms) & (cols[0] <= to_ms)
        cols = tuple(x[keep][::-1] if descending else x[keep] for x in cols)
        got.append(cols)
        n += len(cols[0])
        lo, hi = (lo - chunk, lo - 1) if descending else (hi + 1, hi + chunk)
    if not got:
        e = np.empty(0, np.int64)
        return e, e.astype(np.float64), e.astype(np.float64), e, e
    out = [np.concatenate([g[j] for g in got]) for j in range(5)]
    if bar_ms > DAY_MS // 2 and len(out[0]):  # slots spanning two days can repeat across chunks
        _, i = np.unique(out[0], return_index=True)
        i = np.sort(i)
        out = [x[i] for x in out]
    out = [x[:need] for x in out]
    out[1] = out[1].astype(np.float64)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Bars
# --------------------------------------------------------------------------------------------

def generate_bars(ticker: str, grid: Grid, seed: int) -> dict[str, np.ndarray]:
    """OHLCV for the grid's bars: columns t,o,h,l,c,v,vw,n (Polygon's names)."""
    m = ticker_model(ticker, seed)
    n = len(grid.starts)
    if n == 0:
        return {k: np.empty(0) for k in ("t", "o", "h", "l", "c", "v", "vw", "n")}
    # Contiguous bars share boundaries: price each instant once.
    o_at = grid.starts if grid.open_at is None else grid.open_at
    c_at = grid.ends if grid.close_at is None else grid.close_at
    instants, inv = np.unique(np.concatenate([o_at, c_at]), return_inverse=True)
    prices = np.exp(_log_level(m, instants))[inv.reshape(-1)]
    o, c = prices[:n], prices[n:]
    bar_s = (grid.ends - grid.starts).astype(np.float64) / 1000.0
    span = m.vol * np.sqrt(np.minimum(bar_s, 86400.0) / YEAR_S)
    k = m.key ^ _key("bar", int(bar_s[0]))
    hi = np.maximum(o, c) * np.exp(np.abs(_normal(k ^ 1, grid.starts)) * span * 0.5)
    lo = np.minimum(o, c) * np.exp(-np.abs(_normal(k ^ 2, grid.starts)) * span * 0.5)
    d = m.decimals
    o, c, hi, lo = (np.maximum(np.round(x, d), 10.0**-d) for x in (o, c, hi, lo))
    hi = np.maximum(hi, np.maximum(o, c))  # rounding is monotone, but keep the invariant explicit
    lo = np.minimum(lo, np.minimum(o, c))
    typical = (hi + lo + c) / 3.0
    vw = np.clip(np.round(typical + _normal(k ^ 3, grid.starts) * 0.1 * (hi - lo), d), lo, hi)
    shape = 1.0
    if grid.session_pos is not None:  # U-shaped intraday volume: busy open and close
        shape = 0.7 + 1.2 * (grid.session_pos * 2.0 - 1.0) ** 2
    vol_mult = np.exp(_normal(k ^ 4, grid.starts) * 0.45 - 0.1)
    v = m.volume_per_min * (m.p0 / c) ** 0.3 * grid.active_min * shape * vol_mult
    v = np.maximum(np.round(v, 4 if m.crypto else 0), 1e-4 if m.crypto else 1.0)
    trades = np.maximum(1, np.round(v / m.trade_size * np.exp(_normal(k ^ 5, grid.starts) * 0.2))).astype(np.int64)
    return {"t": grid.starts, "o": o, "h": hi, "l": lo, "c": c, "v": v, "vw": vw, "n": trades}


_RESULT_KEYS = ("v", "vw", "o", "c", "h", "l", "t", "n")  # Polygon's field order


def results_bytes(bars: dict[str, np.ndarray]) -> bytes:
    """The `results` JSON array. orjson formats each numpy column in C and the rows are
    interleaved by list-slice assignment: ~2x faster than building 5,000 dicts."""
    n = len(bars["t"])
    if n == 0:
        return b"[]"
    parts: list[bytes | None] = [None] * (16 * n)
    for j, k in enumerate(_RESULT_KEYS):
        label = f'"{k}":'.encode()
        parts[2 * j::16] = ([b"{" + label] + [b"},{" + label] * (n - 1)) if j == 0 else [b"," + label] * n
        parts[2 * j + 1::16] = orjson.dumps(bars[k], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    return b"[" + b"".join(parts) + b"}]"  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------

class SimulatorState:
    def __init__(self, config: SimulatorConfig):
        self.initial = config
        self.reset()

    def reset(self) -> None:
        self.config = self.initial
        self.fault_rng = random.Random(_key("faults", self.initial.seed))
        self.latency_rng = random.Random(_key("latency", self.initial.seed))
        self.windows: dict[str, deque[float]] = {}
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.request_ids: set[str] = set()
        self.recent_urls: deque[str] = deque(maxlen=200)
        self.bars_served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._rid_counter = 0

    def update(self, patch: dict[str, Any]) -> None:
        if not isinstance(patch, dict):
            raise ValueError("expected a JSON object")
        allowed = {"profile", "rate_limit_per_min", "require_key", "default_limit", "max_limit",
                   "response_status", "faults"}
        unknown = set(patch) - allowed
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        changes = dict(patch)
        if "faults" in changes:
            f = changes["faults"]
            if not isinstance(f, dict):
                raise ValueError("faults must be an object")
            bad = set(f) - {x.name for x in dataclasses.fields(FaultConfig)}
            if bad:
                raise ValueError(f"unknown fault fields: {', '.join(sorted(bad))}")
            changes["faults"] = dataclasses.replace(self.config.faults, **f)
        self.config = dataclasses.replace(self.config, **changes)

    def next_request_id(self) -> str:
        # 32 hex like Polygon's; reproducible for a given seed and request order
        n = self._rid_counter = self._rid_counter + 1
        return f"{_key('rid', self.initial.seed, n):016x}{_key('rid2', self.initial.seed, n):016x}"

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "rate_limited": self.rate_limited, "distinct_request_ids": len(self.request_ids),
                "faults": dict(self.faults), "bars_served": self.bars_served,
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "recent_urls": list(self.recent_urls)}

    def record(self, request: Request) -> str:
        rid = self.next_request_id()
        self.requests += 1
        self.request_ids.add(rid)
        qs = request.scope.get("query_string", b"").decode("latin-1")
        self.recent_urls.append(request.url.path + (f"?{qs}" if qs else ""))
        return rid


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, rid: str, message: str, kind: str = "ERROR") -> Response:
    # Polygon: "ERROR" bodies carry `error`, "NOT_AUTHORIZED"/"NOT_FOUND" bodies carry `message`.
    key = "error" if kind == "ERROR" else "message"
    return _json({"status": kind, "request_id": rid, key: message}, status)


_RATE_MSG = ("You've exceeded the maximum requests per minute, please wait or upgrade your "
             "subscription to continue. https://polygon.io/pricing")
_GATEWAY_HTML = b"<html><head><title>{s} Bad Gateway</title></head><body><center><h1>{s}</h1></center></body></html>"


def _forced(status: int, rid: str, retry_after: int) -> Response:
    if status == 429:
        r = _error(429, rid, _RATE_MSG)
        r.headers["Retry-After"] = str(retry_after)
        return r
    if status in (401, 403):
        return _error(status, rid, "You are not entitled to this data. Please upgrade your plan at "
                                   "https://polygon.io/pricing", "NOT_AUTHORIZED")
    if status == 404:
        return _error(404, rid, "Data not found.", "NOT_FOUND")
    if status in (502, 504):  # load balancers answer HTML, not JSON
        return Response(_GATEWAY_HTML.replace(b"{s}", str(status).encode()), status_code=status,
                        media_type="text/html")
    return _error(status, rid, "Internal server error" if status >= 500 else f"HTTP {status}")


def _parse_bound(value: str, end: bool) -> int:
    if value.isdigit():
        return int(value)
    if _DATE_RE.match(value):
        d = date.fromisoformat(value)
        ms = int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
        return ms + DAY_MS - 1 if end else ms
    raise ValueError(value)


def _encode_cursor(params: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return dict(parse_qsl(raw, strict_parsing=True))


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    return request.query_params.get("apiKey") or None


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    state = SimulatorState(config or SimulatorConfig())

    async def aggs(request: Request) -> Response:
        cfg = state.config
        rid = state.record(request)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            response = await _answer(request, cfg, rid)
        finally:
            state.in_flight -= 1
        state.by_status[response.status_code] += 1
        if response.status_code == 429:
            state.rate_limited += 1
        return response

    async def _answer(request: Request, cfg: SimulatorConfig, rid: str) -> Response:
        key = _api_key(request)
        if key is None and cfg.require_key:
            return _error(401, rid, "API Key was not provided", "NOT_AUTHORIZED")
        if key is not None and cfg.api_keys is not None and key not in cfg.api_keys:
            return _error(401, rid, "Unknown API Key")

        if cfg.rate_limit_per_min is not None:
            now = cfg.clock()
            win = state.windows.setdefault(key or "", deque())
            while win and win[0] <= now - 60.0:
                win.popleft()
            if len(win) >= cfg.rate_limit_per_min:
                r = _error(429, rid, _RATE_MSG)
                r.headers["Retry-After"] = str(max(1, math.ceil(win[0] + 60.0 - now)))
                return r
            win.append(now)

        f = cfg.faults
        if f.force_status is not None:
            state.faults["force_status"] += 1
            return _forced(f.force_status, rid, f.force_retry_after_s)
        # A fixed number of draws per request keeps the fault sequence reproducible.
        draws = {name: state.fault_rng.random() < getattr(f, name) for name in _RATE_FIELDS}
        pick = state.fault_rng.random()
        if draws["error_5xx_rate"]:
            state.faults["error_5xx"] += 1
            return _forced((500, 502, 503, 504)[int(pick * 4)], rid, 1)
        if draws["timeout_rate"]:
            state.faults["timeout"] += 1
            await asyncio.sleep(f.timeout_sleep_s)

        p = request.path_params
        ticker, timespan = p["ticker"], p["timespan"]
        if not TICKER_RE.fullmatch(ticker):
            return _error(400, rid, f"Invalid ticker {ticker!r}")
        if timespan not in TIMESPANS:
            return _error(400, rid, f"Could not parse the timespan {timespan!r}; the simulator supports "
                                    f"{', '.join(TIMESPANS)}")
        try:
            multiplier = int(p["multiplier"])
            if not 1 <= multiplier <= 10_000:
                raise ValueError
        except ValueError:
            return _error(400, rid, f"Could not parse the multiplier {p['multiplier']!r}")
        try:
            from_ms, to_ms = _parse_bound(p["from_"], end=False), _parse_bound(p["to"], end=True)
        except ValueError as e:
            return _error(400, rid, f"Could not parse the time parameter: {e}. Use YYYY-MM-DD or a "
                                    "millisecond timestamp")
        q = dict(request.query_params)
        if "cursor" in q:
            try:
                q.update(_decode_cursor(q["cursor"]))
            except ValueError:
                return _error(400, rid, "Invalid cursor")
        adjusted = q.get("adjusted", "true").lower()
        sort = q.get("sort", "asc").lower()
        if adjusted not in ("true", "false"):
            return _error(400, rid, "adjusted must be true or false")
        if sort not in ("asc", "desc"):
            return _error(400, rid, "sort must be asc or desc")
        try:
            limit = int(q.get("limit", cfg.default_limit))
            if not 1 <= limit <= cfg.max_limit:
                raise ValueError
        except ValueError:
            return _error(400, rid, f"limit must be an integer within 1..{cfg.max_limit}")
        if f.huge_page:
            limit = cfg.max_limit

        grid = bar_grid(ticker, timespan, multiplier, from_ms, to_ms, limit, descending=sort == "desc")
        bars = generate_bars(ticker, grid, cfg.seed)
        n = len(grid.starts)
        state.bars_served += n
        body: dict[str, Any] = {"ticker": ticker, "queryCount": n, "resultsCount": n, "adjusted": adjusted == "true"}
        if n:
            body["results"] = None  # spliced in below as pre-serialised bytes
        body.update(status=cfg.response_status, request_id=rid, count=n)
        base = str(request.base_url).rstrip("/")
        if f.pagination_loop:
            state.faults["pagination_loop"] += 1
            keep = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "apiKey"]
            body["next_url"] = f"{base}{request.url.path}" + (f"?{urlencode(keep)}" if keep else "")
        elif grid.more is not None:
            nf, nt = (p["from_"], grid.more) if sort == "desc" else (grid.more, p["to"])
            cursor = _encode_cursor({"limit": str(limit), "sort": sort, "adjusted": adjusted})
            body["next_url"] = f"{base}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{nf}/{nt}?cursor={cursor}"
        payload = orjson.dumps(body)
        if n:
            payload = payload.replace(b'"results":null', b'"results":' + results_bytes(bars), 1)

        prof = PROFILES[cfg.profile]
        if prof.base_ms or prof.jitter_ms or prof.per_1000_results_ms:
            jitter = state.latency_rng.expovariate(1.0 / prof.jitter_ms) if prof.jitter_ms else 0.0
            await asyncio.sleep((prof.base_ms + jitter + prof.per_1000_results_ms * n / 1000.0) / 1000.0)

        if draws["malformed_rate"]:
            state.faults["malformed"] += 1
            return Response(b'{"status":"OK","request_id":"' + rid.encode() + b'","results":[{"v":NaN,,}',
                            media_type="application/json")
        if draws["truncated_rate"]:
            state.faults["truncated"] += 1
            return Response(payload[: max(1, len(payload) // 2)], media_type="application/json")
        if draws["wrong_content_type_rate"]:
            state.faults["wrong_content_type"] += 1
            return Response(b"<html><body><h1>Service temporarily unavailable</h1></body></html>",
                            media_type="text/html")
        if draws["slow_drip_rate"]:
            state.faults["slow_drip"] += 1
            return _drip(payload, f.slow_drip_chunks, f.slow_drip_s)
        return Response(payload, media_type="application/json")

    async def not_found(request: Request) -> Response:
        state.by_status[404] += 1
        return _error(404, state.record(request), "Data not found.", "NOT_FOUND")

    async def get_config(request: Request) -> Response:
        return _json(state.config.public())

    async def post_config(request: Request) -> Response:
        try:
            state.update(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            return _json({"status": "ERROR", "error": str(e)}, 400)
        return _json(state.config.public())

    async def stats(request: Request) -> Response:
        return _json(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return _json(state.config.public())

    routes = [
        Route("/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from_}/{to}", aggs, methods=["GET"]),
        Route("/_sim/config", get_config, methods=["GET"]),
        Route("/_sim/config", post_config, methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/{path:path}", not_found),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app


def _drip(payload: bytes, chunks: int, total_s: float) -> StreamingResponse:
    size = max(1, math.ceil(len(payload) / chunks))
    pause = total_s / chunks

    async def body():
        for i in range(0, len(payload), size):
            yield payload[i:i + size]
            await asyncio.sleep(pause)

    return StreamingResponse(body(), media_type="application/json",
                             headers={"content-length": str(len(payload))})


def run_simulator(host: str = "127.0.0.1", port: int = 8600, config: SimulatorConfig | None = None) -> None:
    """Serve the simulator in the foreground (the `quantscope simulate` command)."""
    import uvicorn

    # No access log: clients that pass apiKey in the query string would have it written out.
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
