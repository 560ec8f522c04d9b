"""Vectorised quant features over OHLCV bars.

``compute_features(bars, heavy=False)`` takes a DataFrame with columns
``ts, open, high, low, close, volume, vwap, trades`` (``ts`` tz-aware, strictly increasing) and
returns ``ts`` (converted to UTC) followed by ``FEATURE_COLUMNS`` as float64, one row per input
row, same order and index. A value is NaN until its window is full (``FEATURE_WARMUP`` gives the
number of leading NaN rows); nothing is back-filled or extrapolated, and inf never appears.

Definitions (c = close, h = high, l = low, r_t = ln(c_t / c_{t-1})). All values are per bar,
not annualised: the bar length differs per timeframe and annualisation is left to the reader.

Volatility
  rv_20, rv_60   sample std (ddof=1) of r over the last 20 / 60 returns.
  atr_14         Wilder ATR. TR_0 = h_0 - l_0, TR_t = max(h-l, |h-c_{t-1}|, |l-c_{t-1}|);
                 ATR_13 = mean(TR_0..TR_13), then ATR_t = ATR_{t-1} + (TR_t - ATR_{t-1}) / 14.
  parkinson_20   sqrt(mean over 20 bars of ln(h/l)^2 / (4 ln 2)).
Momentum
  ret_n          c_t / c_{t-n} - 1 for n = 1, 5, 20.
  rsi_14         Wilder RSI: gains/losses of c_t - c_{t-1}, each averaged like atr_14 (seed =
                 simple mean of the first 14 changes). RSI = 100 * G / (G + L), which is
                 100 - 100 / (1 + G/L); L = 0 gives 100, G = L = 0 gives 50.
  macd           EMA12(c) - EMA26(c) (pandas ewm, span, adjust=False, seeded by c_0); NaN for
                 the first 25 bars (the slow EMA has not seen 26 bars yet).
  macd_signal    EMA9 of macd, started at macd's first reported bar; NaN for the first 33 bars.
  macd_hist      macd - macd_signal.
Structure
  dist_high_20   c / max(h over 20 bars) - 1.
  dist_low_20    c / min(l over 20 bars) - 1.
  trend_slope_20 OLS slope of ln(c) on bar index over 20 bars, in log units per bar. Computed as
                 the closed-form fixed-weight sum sum_k (k - 9.5) / 665 * y_k: exact to rounding,
                 and exactly 0 for constant prices (cumulative-sum formulas are not).
  vwap_dev       c / (sum(vwap * volume) / sum(volume) over 20 bars) - 1; NaN when those 20
                 bars have no volume. Zero-volume bars contribute nothing (their vwap is unused).

Gaps: bars are treated as consecutive whatever the time between them (a missing bar is not
interpolated); windows count bars, not time.

Input errors raise ``FeatureInputError`` (a ValueError): missing columns, ``ts`` not tz-aware
datetime / NaT / not strictly increasing, non-finite or non-positive open/high/low/close,
non-finite or negative volume, high < low, and vwap that is negative, or non-positive where
volume > 0. ``vwap`` may be NaN (Polygon omits ``vw`` on some bars): windows that need it are NaN.
``trades`` must be present but is not used.

heavy=True also computes ``extended_features`` (a multi-window panel and a rolling R/S Hurst
estimate, roughly 20-50x the cost of the base features) and discards it, so a compute-bound
backfill can be planted without changing the stored contract: the returned frame is identical.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

FEATURE_COLUMNS: tuple[str, ...] = (
    # volatility
    "rv_20", "rv_60", "atr_14", "parkinson_20",
    # momentum
    "ret_1", "ret_5", "ret_20", "rsi_14", "macd", "macd_signal", "macd_hist",
    # structure
    "dist_high_20", "dist_low_20", "trend_slope_20", "vwap_dev",
)

# Leading NaN rows of each feature (= bars needed before the first value, minus one).
FEATURE_WARMUP: dict[str, int] = {
    "rv_20": 20, "rv_60": 60, "atr_14": 13, "parkinson_20": 19,
    "ret_1": 1, "ret_5": 5, "ret_20": 20, "rsi_14": 14,
    "macd": 25, "macd_signal": 33, "macd_hist": 33,
    "dist_high_20": 19, "dist_low_20": 19, "trend_slope_20": 19, "vwap_dev": 19,
}

INPUT_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume", "vwap", "trades")

# Extended panel used by heavy=True (see extended_features).
HEAVY_WINDOWS: tuple[int, ...] = tuple(range(5, 205, 5))
HURST_WINDOW = 128
HURST_SCALES: tuple[int, ...] = (8, 16, 32, 64)
_BLOCK = 4096  # windows per block in the Hurst estimate: bounds memory to ~BLOCK*128 floats


class FeatureInputError(ValueError):
    """The bars handed to compute_features break the input contract."""


# --------------------------------------------------------------------------------------------
# validation


def _as_float(bars: pd.DataFrame, name: str) -> np.ndarray:
    try:
        arr = bars[name].to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise FeatureInputError(f"column {name!r} is not numeric ({bars[name].dtype})") from e
    return arr


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _validate(bars: pd.DataFrame) -> tuple[pd.Series, dict[str, np.ndarray]]:
    if not isinstance(bars, pd.DataFrame):
        raise FeatureInputError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in INPUT_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureInputError(f"bars is missing column(s) {missing}; expected {list(INPUT_COLUMNS)}")

    ts = bars["ts"]
    if len(bars) == 0 and not isinstance(ts.dtype, pd.DatetimeTZDtype):
        # an empty frame often comes with object columns; nothing in it can be wrong
        ts = pd.Series(pd.DatetimeIndex([], tz="UTC"), index=bars.index, name="ts")
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise FeatureInputError(f"column 'ts' must be tz-aware datetime64 (UTC), got {ts.dtype}")
    ts = ts.dt.tz_convert("UTC")
    if ts.isna().any():
        raise FeatureInputError(f"column 'ts' has NaT at row {_first(ts.isna().to_numpy())}")
    if len(ts) > 1:
        steps = np.diff(ts.dt.tz_localize(None).to_numpy())
        bad = steps <= np.timedelta64(0)
        if bad.any():
            i = _first(bad) + 1
            kind = "duplicate" if steps[i - 1] == np.timedelta64(0) else "decreasing"
            raise FeatureInputError(
                f"column 'ts' must be strictly increasing: {kind} value at row {i} ({ts.iloc[i]})")

    a = {c: _as_float(bars, c) for c in ("open", "high", "low", "close", "volume", "vwap")}
    for c in ("open", "high", "low", "close"):
        bad = ~np.isfinite(a[c]) | (a[c] <= 0)
        if bad.any():
            i = _first(bad)
            raise FeatureInputError(f"column {c!r} must be finite and > 0: row {i} has {a[c][i]}")
    bad = ~np.isfinite(a["volume"]) | (a["volume"] < 0)
    if bad.any():
        i = _first(bad)
        raise FeatureInputError(f"column 'volume' must be finite and >= 0: row {i} has {a['volume'][i]}")
    bad = a["high"] < a["low"]
    if bad.any():
        i = _first(bad)
        raise FeatureInputError(f"high < low at row {i} (high={a['high'][i]}, low={a['low'][i]})")
    v = a["vwap"]
    bad = np.isinf(v) | (v < 0) | ((a["volume"] > 0) & (v == 0))
    if bad.any():
        i = _first(bad)
        raise FeatureInputError(
            f"column 'vwap' must be finite, >= 0 and > 0 where volume > 0: row {i} has {v[i]}")
    return ts, a


# --------------------------------------------------------------------------------------------
# building blocks (all O(n) or O(n * window) numpy/pandas; no Python loop over bars)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _log_returns(c: np.ndarray) -> np.ndarray:
    r = _nan(len(c))
    r[1:] = np.log(c[1:] / c[:-1])
    return r


def _shift_ratio(c: np.ndarray, k: int) -> np.ndarray:
    out = _nan(len(c))
    if len(c) > k:
        out[k:] = c[k:] / c[:-k] - 1.0
    return out


def _roll(x: np.ndarray, w: int):
    # min_periods=w: a window containing NaN (warm-up or missing vwap) stays NaN
    return pd.Series(x, copy=False).rolling(w, min_periods=w)


def _wilder(x: np.ndarray, period: int, start: int) -> np.ndarray:
    """Wilder smoothing of x[start:], seeded at start+period-1 with the simple mean of the first
    `period` values; NaN before the seed."""
    out = _nan(len(x))
    seed = start + period - 1
    if len(x) <= seed:
        return out
    s = x[seed:].copy()
    s[0] = x[start:seed + 1].mean()
    out[seed:] = pd.Series(s).ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()
    return out


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(x).ewm(span=span, adjust=False).mean().to_numpy()


def _ols_slope(y: np.ndarray, w: int) -> np.ndarray:
    """Rolling OLS slope of y on 0..w-1. slope = sum_k (k - xbar) * y_k / sum_k (k - xbar)^2;
    y is taken relative to the window's last value (weights sum to 0, so the slope is unchanged)
    which keeps the sum well conditioned and exactly 0 for flat windows."""
    n = len(y)
    out = _nan(n)
    if n < w:
        return out
    xbar = (w - 1) / 2.0
    denom = w * (w * w - 1) / 12.0  # sum_k (k - xbar)^2
    ref = y[w - 1:]
    acc = np.zeros(n - w + 1)
    for k in range(w):  # loop over window offsets (w vector ops), not over bars
        acc += (k - xbar) * (y[k:n - w + 1 + k] - ref)
    out[w - 1:] = acc / denom
    return out


def _vwap_dev(c: np.ndarray, vwap: np.ndarray, vol: np.ndarray, w: int) -> np.ndarray:
    traded = vol > 0
    pv = np.where(traded, vwap * vol, 0.0)  # zero-volume bars: vwap irrelevant (may be NaN)
    s_pv = _roll(pv, w).sum().to_numpy()
    s_v = _roll(vol, w).sum().to_numpy()
    # decide "no volume" from a count, not from s_v == 0: a float rolling sum can leave residue
    any_traded = _roll(traded.astype(np.float64), w).sum().to_numpy() > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = c / (s_pv / s_v) - 1.0
    out[~any_traded] = np.nan
    return out


def _base_features(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, l, c = a["high"], a["low"], a["close"]  # noqa: E741
    n = len(c)
    r = _log_returns(c)
    f: dict[str, np.ndarray] = {}

    f["rv_20"] = _roll(r, 20).std(ddof=1).to_numpy()
    f["rv_60"] = _roll(r, 60).std(ddof=1).to_numpy()
    tr = h - l
    if n > 1:
        pc = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - pc), np.abs(l[1:] - pc)))
    f["atr_14"] = _wilder(tr, 14, 0)
    hl2 = np.log(h / l) ** 2 / (4.0 * math.log(2.0))
    f["parkinson_20"] = np.sqrt(_roll(hl2, 20).mean().to_numpy())

    f["ret_1"] = _shift_ratio(c, 1)
    f["ret_5"] = _shift_ratio(c, 5)
    f["ret_20"] = _shift_ratio(c, 20)
    d = _nan(n)
    d[1:] = np.diff(c)
    ag = _wilder(np.maximum(d, 0.0), 14, 1)  # NaN at 0 stays out of the seed (start=1)
    al = _wilder(np.maximum(-d, 0.0), 14, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 * ag / (ag + al)
    rsi[(ag == 0) & (al == 0)] = 50.0
    f["rsi_14"] = rsi

    macd = _ema(c, 12) - _ema(c, 26)
    macd[:25] = np.nan
    sig = _nan(n)
    if n > 25:
        sig[25:] = _ema(macd[25:], 9)
        sig[:33] = np.nan
    f["macd"] = macd
    f["macd_signal"] = sig
    f["macd_hist"] = macd - sig

    f["dist_high_20"] = c / _roll(h, 20).max().to_numpy() - 1.0
    f["dist_low_20"] = c / _roll(l, 20).min().to_numpy() - 1.0
    f["trend_slope_20"] = _ols_slope(np.log(c), 20)
    f["vwap_dev"] = _vwap_dev(c, a["vwap"], a["volume"], 20)
    return f


# --------------------------------------------------------------------------------------------
# heavy extras


def _rolling_hurst(r: np.ndarray, window: int = HURST_WINDOW,
                   scales: tuple[int, ...] = HURST_SCALES) -> np.ndarray:
    """Rescaled-range (R/S) Hurst exponent over the last `window` log returns: for each scale s,
    mean R/S of the window's window/s chunks; H = OLS slope of ln(R/S) on ln(s). NaN when a chunk
    is flat (R/S undefined)."""
    n = len(r)
    out = _nan(n)
    rr = r[1:]  # r[0] is NaN
    m = len(rr) - window + 1
    if m <= 0:
        return out
    lx = np.log(np.asarray(scales, dtype=np.float64))
    lx -= lx.mean()
    lden = float((lx ** 2).sum())
    views = sliding_window_view(rr, window)
    for start in range(0, m, _BLOCK):  # loop over blocks of windows, bounding memory
        win = views[start:start + _BLOCK]
        b = len(win)
        h = np.zeros(b)
        for k, s in enumerate(scales):
            ch = win.reshape(b, window // s, s)
            dev = ch - ch.mean(axis=2, keepdims=True)
            z = np.cumsum(dev, axis=2)
            rng = z.max(axis=2) - z.min(axis=2)
            sd = np.sqrt((dev * dev).mean(axis=2))  # same dev as rng: sd == 0 only if rng == 0
            with np.errstate(divide="ignore", invalid="ignore"):
                h += lx[k] * np.log((rng / sd).mean(axis=1))
        # window over rr[start .. start+window-1] ends at bar start+window
        out[start + window:start + window + b] = h / lden
    return out


def _extended(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h, l, c = a["high"], a["low"], a["close"]  # noqa: E741
    r = _log_returns(c)
    y = np.log(c)
    hl2 = np.log(h / l) ** 2 / (4.0 * math.log(2.0))
    out: dict[str, np.ndarray] = {}
    for w in HEAVY_WINDOWS:
        out[f"x_rv_{w}"] = _roll(r, w).std(ddof=1).to_numpy()
        out[f"x_parkinson_{w}"] = np.sqrt(_roll(hl2, w).mean().to_numpy())
        out[f"x_dist_high_{w}"] = c / _roll(h, w).max().to_numpy() - 1.0
        out[f"x_dist_low_{w}"] = c / _roll(l, w).min().to_numpy() - 1.0
        out[f"x_trend_slope_{w}"] = _ols_slope(y, w)
        out[f"x_vwap_dev_{w}"] = _vwap_dev(c, a["vwap"], a["volume"], w)
    out[f"x_hurst_{HURST_WINDOW}"] = _rolling_hurst(r)
    return out


# --------------------------------------------------------------------------------------------
# public API


def _frame(ts: pd.Series, index: pd.Index, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    data: dict[str, object] = {"ts": ts.array}  # .array: no index alignment, keeps the dtype
    for k, v in cols.items():
        # only reachable through float overflow on absurd inputs
        data[k] = np.where(np.isfinite(v), v, np.nan).astype(np.float64, copy=False)
    return pd.DataFrame(data, index=index)


def compute_features(bars: pd.DataFrame, *, heavy: bool = False) -> pd.DataFrame:
    """Return ``ts`` + FEATURE_COLUMNS (float64) for `bars`; see the module docstring.

    heavy=True performs the extended computation as well and discards it (identical output)."""
    ts, a = _validate(bars)
    feats = _base_features(a)
    if heavy:
        _extended(a)  # deliberate extra CPU for planted compute-bound runs
    return _frame(ts, bars.index, {k: feats[k] for k in FEATURE_COLUMNS})


def extended_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The heavy panel on its own: ``ts`` + ``x_*`` columns (rv, parkinson, dist_high/low,
    trend_slope, vwap_dev at each of HEAVY_WINDOWS, plus x_hurst_128). Same conventions as
    compute_features (per-bar values, NaN during warm-up)."""
    ts, a = _validate(bars)
    return _frame(ts, bars.index, _extended(a))
