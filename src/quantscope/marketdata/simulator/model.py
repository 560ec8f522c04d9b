"""The bar model: deterministic OHLCV bars for any ticker and window, without generating history.

Same request -> byte-identical `results`. Prices come from a closed-form path (drift plus a
spectrum of sinusoids whose increments scale like a random walk) plus counter-based noise keyed on
(seed, ticker, timestamp), so any window is produced without generating history, and a close at
10:00 is the same number whether it was asked for in 5m or 1h bars.

Same request -> byte-identical `results`."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd


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


def seed_key(*parts: object) -> int:
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
    key = seed_key("ticker", seed, ticker)
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
    k = m.key ^ seed_key("bar", int(bar_s[0]))
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
