"""compute_features against plain-Python loop references, plus edge cases and input errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from quantscope.features.compute import (
    FEATURE_COLUMNS,
    FEATURE_WARMUP,
    HEAVY_WINDOWS,
    FeatureInputError,
    compute_features,
    extended_features,
)

NAN = float("nan")


def make_bars(n: int, seed: int = 7, *, zero_volume: float = 0.0, freq: str = "5min",
              start: str = "2024-03-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = np.r_[c[:1], c[:-1]] * (1 + rng.normal(0.0, 0.001, n))
    h = np.maximum(o, c) * (1 + rng.uniform(0.0, 0.004, n))
    low = np.minimum(o, c) * (1 - rng.uniform(0.0, 0.004, n))
    v = rng.integers(1, 5_000, n).astype(np.float64)
    if zero_volume:
        v[rng.random(n) < zero_volume] = 0.0
    vwap = low + (h - low) * rng.uniform(0.2, 0.8, n)
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
        "open": o, "high": h, "low": low, "close": c, "volume": v, "vwap": vwap,
        "trades": rng.integers(0, 100, n),
    })


# ---------------------------------------------------------------------------------------------
# references: plain loops over lists, written from the definitions, independent of the module


def ref_std(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def ref_rv(c, w):
    r = [NAN] + [math.log(c[i] / c[i - 1]) for i in range(1, len(c))]
    return [ref_std(r[i - w + 1:i + 1]) if i >= w else NAN for i in range(len(c))]


def ref_wilder(xs, period, start):
    out = [NAN] * len(xs)
    seed = start + period - 1
    if len(xs) <= seed:
        return out
    avg = sum(xs[start:seed + 1]) / period
    out[seed] = avg
    for i in range(seed + 1, len(xs)):
        avg = (avg * (period - 1) + xs[i]) / period
        out[i] = avg
    return out


def ref_atr(h, low, c):
    tr = []
    for i in range(len(c)):
        if i == 0:
            tr.append(h[i] - low[i])
        else:
            tr.append(max(h[i] - low[i], abs(h[i] - c[i - 1]), abs(low[i] - c[i - 1])))
    return ref_wilder(tr, 14, 0)


def ref_parkinson(h, low, w):
    out = []
    for i in range(len(h)):
        if i < w - 1:
            out.append(NAN)
            continue
        s = 0.0
        for j in range(i - w + 1, i + 1):
            s += math.log(h[j] / low[j]) ** 2 / (4 * math.log(2))
        out.append(math.sqrt(s / w))
    return out


def ref_ret(c, k):
    return [c[i] / c[i - k] - 1 if i >= k else NAN for i in range(len(c))]


def ref_rsi(c):
    gains = [0.0] + [max(c[i] - c[i - 1], 0.0) for i in range(1, len(c))]
    losses = [0.0] + [max(c[i - 1] - c[i], 0.0) for i in range(1, len(c))]
    ag, al = ref_wilder(gains, 14, 1), ref_wilder(losses, 14, 1)
    out = []
    for g, lo in zip(ag, al):
        if math.isnan(g):
            out.append(NAN)
        elif g == 0 and lo == 0:
            out.append(50.0)
        elif lo == 0:
            out.append(100.0)
        else:
            out.append(100 - 100 / (1 + g / lo))
    return out


def ref_ema(xs, span):
    a = 2 / (span + 1)
    out, e = [], None
    for x in xs:
        e = x if e is None else a * x + (1 - a) * e
        out.append(e)
    return out


def ref_macd(c):
    e12, e26 = ref_ema(c, 12), ref_ema(c, 26)
    m = [e12[i] - e26[i] for i in range(len(c))]
    sig = [NAN] * len(c)
    if len(c) > 25:
        s = ref_ema(m[25:], 9)
        for i in range(33, len(c)):
            sig[i] = s[i - 25]
    macd = [NAN if i < 25 else m[i] for i in range(len(c))]
    hist = [macd[i] - sig[i] for i in range(len(c))]
    return macd, sig, hist


def ref_dist(c, hl, w, fn):
    return [c[i] / fn(hl[i - w + 1:i + 1]) - 1 if i >= w - 1 else NAN for i in range(len(c))]


def ref_slope(c, w):
    out = []
    for i in range(len(c)):
        if i < w - 1:
            out.append(NAN)
            continue
        ys = [math.log(x) for x in c[i - w + 1:i + 1]]
        xs = list(range(w))
        mx, my = sum(xs) / w, sum(ys) / w
        num = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        den = sum((x - mx) ** 2 for x in xs)
        out.append(num / den)
    return out


def ref_vwap_dev(c, vwap, vol, w):
    out = []
    for i in range(len(c)):
        if i < w - 1:
            out.append(NAN)
            continue
        pv = sv = 0.0
        for j in range(i - w + 1, i + 1):
            if vol[j] > 0:
                pv += vwap[j] * vol[j]
                sv += vol[j]
        out.append(c[i] / (pv / sv) - 1 if sv > 0 else NAN)
    return out


def reference(bars: pd.DataFrame) -> dict[str, list[float]]:
    h, low, c = (bars[k].tolist() for k in ("high", "low", "close"))
    vol, vwap = bars["volume"].tolist(), bars["vwap"].tolist()
    macd, sig, hist = ref_macd(c)
    return {
        "rv_20": ref_rv(c, 20), "rv_60": ref_rv(c, 60), "atr_14": ref_atr(h, low, c),
        "parkinson_20": ref_parkinson(h, low, 20),
        "ret_1": ref_ret(c, 1), "ret_5": ref_ret(c, 5), "ret_20": ref_ret(c, 20),
        "rsi_14": ref_rsi(c), "macd": macd, "macd_signal": sig, "macd_hist": hist,
        "dist_high_20": ref_dist(c, h, 20, max), "dist_low_20": ref_dist(c, low, 20, min),
        "trend_slope_20": ref_slope(c, 20), "vwap_dev": ref_vwap_dev(c, vwap, vol, 20),
    }


def assert_matches_reference(bars: pd.DataFrame) -> pd.DataFrame:
    out = compute_features(bars)
    ref = reference(bars)
    for col in FEATURE_COLUMNS:
        # equal_nan also checks that NaN positions agree exactly
        assert_allclose(out[col].to_numpy(), np.array(ref[col], dtype=float),
                        rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=col)
    return out


def leading_nans(x: np.ndarray) -> int:
    finite = np.flatnonzero(~np.isnan(x))
    return len(x) if len(finite) == 0 else int(finite[0])


# ---------------------------------------------------------------------------------------------
# correctness


@pytest.mark.parametrize("seed", [1, 2])
def test_features_match_loop_reference(seed):
    bars = make_bars(400, seed)
    out = assert_matches_reference(bars)
    assert list(out.columns) == ["ts", *FEATURE_COLUMNS]
    assert all(out[c].dtype == np.float64 for c in FEATURE_COLUMNS)
    assert out["ts"].equals(bars["ts"])
    for col, warm in FEATURE_WARMUP.items():
        x = out[col].to_numpy()
        assert leading_nans(x) == warm, col
        assert np.isfinite(x[warm:]).all(), col  # no NaN holes after warm-up on clean data


def test_output_keeps_input_index_and_converts_ts_to_utc():
    bars = make_bars(50).set_index(pd.RangeIndex(100, 150))
    bars["ts"] = bars["ts"].dt.tz_convert("America/New_York")
    out = compute_features(bars)
    assert out.index.equals(bars.index)
    assert str(out["ts"].dt.tz) == "UTC"
    assert (out["ts"] == bars["ts"]).all()  # same instants


def test_warmup_honest_for_short_series():
    full = compute_features(make_bars(80, 3))
    for n in (0, 1, 2, 13, 14, 15, 19, 20, 21, 25, 26, 33, 34, 59, 60, 61):
        out = compute_features(make_bars(80, 3).iloc[:n])
        assert len(out) == n
        for col in FEATURE_COLUMNS:
            x = out[col].to_numpy()
            assert leading_nans(x) == min(n, FEATURE_WARMUP[col]), (n, col)
            # a prefix never sees future bars: values equal the full-series values
            assert_allclose(x, full[col].to_numpy()[:n], rtol=0, atol=0, equal_nan=True)


def test_empty_and_single_bar():
    empty = compute_features(make_bars(0))
    assert list(empty.columns) == ["ts", *FEATURE_COLUMNS] and len(empty) == 0
    assert all(empty[c].dtype == np.float64 for c in FEATURE_COLUMNS)
    # an empty frame built without dtypes is accepted too
    untyped = compute_features(pd.DataFrame(columns=list(make_bars(1).columns)))
    assert list(untyped.columns) == ["ts", *FEATURE_COLUMNS] and len(untyped) == 0
    one = compute_features(make_bars(1))
    assert len(one) == 1 and one[list(FEATURE_COLUMNS)].isna().all(axis=None)


def test_gaps_are_treated_as_consecutive_bars():
    bars = make_bars(120, 4)
    gappy = bars.copy()
    ts = bars["ts"].to_list()
    # drop-in irregular spacing: overnight and weekend-sized jumps
    shift = np.zeros(len(ts), dtype="int64")
    shift[30:] += 16 * 3600
    shift[70:] += 2 * 86400
    gappy["ts"] = bars["ts"] + pd.to_timedelta(shift, unit="s")
    a, b = compute_features(bars), compute_features(gappy)
    pd.testing.assert_frame_equal(a.drop(columns="ts"), b.drop(columns="ts"))
    assert_matches_reference(gappy)


def test_zero_volume_bars():
    bars = make_bars(200, 5, zero_volume=0.3)
    bars.loc[100:130, "volume"] = 0.0  # 31 silent bars: windows fully inside have no volume
    bars.loc[100:130, "vwap"] = np.nan  # a silent bar's vwap is irrelevant, even if missing
    out = assert_matches_reference(bars)
    vd = out["vwap_dev"].to_numpy()
    assert not np.isinf(out[list(FEATURE_COLUMNS)].to_numpy()).any()
    assert np.isnan(vd[119:131]).all()  # windows ending 119..130 lie inside the silent run
    assert np.isfinite(vd[19:119]).all() and np.isfinite(vd[131:]).all()


def test_all_zero_volume_gives_nan_vwap_dev_not_error():
    bars = make_bars(40)
    bars["volume"] = 0.0
    out = compute_features(bars)
    assert out["vwap_dev"].isna().all()
    assert out["rv_20"].notna().sum() == 20  # other features unaffected


def test_missing_vwap_with_volume_blanks_only_affected_windows():
    bars = make_bars(60)
    bars.loc[30, "vwap"] = np.nan
    vd = compute_features(bars)["vwap_dev"].to_numpy()
    assert np.isnan(vd[30:50]).all() and np.isfinite(vd[19:30]).all() and np.isfinite(vd[50:]).all()


def test_constant_prices():
    n = 80
    bars = make_bars(n)
    for k in ("open", "high", "low", "close", "vwap"):
        bars[k] = 42.5
    out = compute_features(bars)
    expect = {"rv_20": 0.0, "rv_60": 0.0, "atr_14": 0.0, "parkinson_20": 0.0, "ret_1": 0.0,
              "ret_5": 0.0, "ret_20": 0.0, "rsi_14": 50.0, "macd": 0.0, "macd_signal": 0.0,
              "macd_hist": 0.0, "dist_high_20": 0.0, "dist_low_20": 0.0, "trend_slope_20": 0.0,
              "vwap_dev": 0.0}
    for col, v in expect.items():
        x = out[col].to_numpy()[FEATURE_WARMUP[col]:]
        assert (x == v).all(), (col, x[:5])  # exact, not approximately


def test_rsi_extremes():
    up = make_bars(40)
    up["close"] = up["high"] = up["open"] = up["vwap"] = 100.0 + np.arange(40.0)
    up["low"] = 99.0 + np.arange(40.0)
    assert (compute_features(up)["rsi_14"].to_numpy()[14:] == 100.0).all()
    down = up.copy()
    down["close"] = down["high"] = down["open"] = down["vwap"] = 200.0 - np.arange(40.0)
    down["low"] = 199.0 - np.arange(40.0)
    assert (compute_features(down)["rsi_14"].to_numpy()[14:] == 0.0).all()


def test_large_series_precision():
    # long enough for rolling-sum drift to matter if there were any
    assert_matches_reference(make_bars(3000, 11, zero_volume=0.05))


# ---------------------------------------------------------------------------------------------
# heavy mode


def test_heavy_returns_identical_features():
    bars = make_bars(300, 8, zero_volume=0.1)
    pd.testing.assert_frame_equal(compute_features(bars), compute_features(bars, heavy=True),
                                  check_exact=True)
    pd.testing.assert_frame_equal(compute_features(bars.iloc[:5]),
                                  compute_features(bars.iloc[:5], heavy=True))


def test_extended_features_are_real_values():
    bars = make_bars(600, 9)
    ext = extended_features(bars)
    base = compute_features(bars)
    assert all(c.startswith("x_") for c in ext.columns[1:])
    assert len(ext.columns) == 1 + 6 * len(HEAVY_WINDOWS) + 1
    assert_allclose(ext["x_rv_20"], base["rv_20"], rtol=1e-12, equal_nan=True)
    assert_allclose(ext["x_trend_slope_20"], base["trend_slope_20"], rtol=1e-12, equal_nan=True)
    assert_allclose(ext["x_rv_60"], ref_rv(bars["close"].tolist(), 60), rtol=1e-9, equal_nan=True)
    hurst = ext["x_hurst_128"].to_numpy()
    assert leading_nans(hurst) == 128 and np.isfinite(hurst[128:]).all()
    # a random walk's returns are uncorrelated: R/S Hurst near 0.5 (small-window bias pushes it up)
    assert 0.45 < hurst[128:].mean() < 0.7
    # a flat series has undefined R/S: NaN, never inf
    flat = bars.copy()
    for k in ("open", "high", "low", "close", "vwap"):
        flat[k] = 10.0
    assert extended_features(flat)["x_hurst_128"].isna().all()


# ---------------------------------------------------------------------------------------------
# input validation


def _broken(kind: str) -> pd.DataFrame:
    b = make_bars(30)
    if kind == "missing":
        return b.drop(columns=["vwap"])
    if kind == "duplicate_ts":
        b.loc[10, "ts"] = b.loc[9, "ts"]
    elif kind == "decreasing_ts":
        b.loc[[10, 11], "ts"] = b.loc[[11, 10], "ts"].to_numpy()
    elif kind == "naive_ts":
        b["ts"] = b["ts"].dt.tz_localize(None)
    elif kind == "string_ts":
        b["ts"] = b["ts"].astype(str)
    elif kind == "nat_ts":
        b.loc[5, "ts"] = pd.NaT
    elif kind == "negative_price":
        b.loc[3, "low"] = -1.0
    elif kind == "zero_price":
        b.loc[3, "close"] = 0.0
    elif kind == "nan_close":
        b.loc[3, "close"] = np.nan
    elif kind == "inf_high":
        b.loc[3, "high"] = np.inf
    elif kind == "negative_volume":
        b.loc[4, "volume"] = -5.0
    elif kind == "high_below_low":
        b.loc[7, "high"] = b.loc[7, "low"] * 0.99
    elif kind == "zero_vwap_with_volume":
        b.loc[7, "vwap"] = 0.0
    elif kind == "text_volume":
        b["volume"] = b["volume"].astype(str) + "x"
    return b


@pytest.mark.parametrize("kind, words", [
    ("missing", "missing column"),
    ("duplicate_ts", "duplicate"),
    ("decreasing_ts", "decreasing"),
    ("naive_ts", "tz-aware"),
    ("string_ts", "tz-aware"),
    ("nat_ts", "NaT"),
    ("negative_price", "'low'"),
    ("zero_price", "'close'"),
    ("nan_close", "'close'"),
    ("inf_high", "'high'"),
    ("negative_volume", "'volume'"),
    ("high_below_low", "high < low"),
    ("zero_vwap_with_volume", "'vwap'"),
    ("text_volume", "'volume'"),
])
def test_invalid_input_raises(kind, words):
    with pytest.raises(FeatureInputError, match=words) as info:
        compute_features(_broken(kind))
    assert isinstance(info.value, ValueError)


def test_error_names_the_row():
    with pytest.raises(FeatureInputError, match="row 7"):
        compute_features(_broken("high_below_low"))
