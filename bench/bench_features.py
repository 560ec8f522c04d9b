"""Time compute_features on 5,000 bars, normal vs heavy=True, and print the ratio.

Run: PYTHONPATH=src .venv/bin/python bench/bench_features.py [--bars N] [--repeat R]
Median of R timed calls after one warm-up call each, so imports and first-call caches are out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from quantscope.features.compute import compute_features


def random_walk_bars(n: int, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = np.r_[c[:1], c[:-1]]
    h = np.maximum(o, c) * (1 + rng.uniform(0.0, 0.004, n))
    low = np.minimum(o, c) * (1 - rng.uniform(0.0, 0.004, n))
    return pd.DataFrame({
        "ts": pd.date_range("2024-01-02", periods=n, freq="5min", tz="UTC"),
        "open": o, "high": h, "low": low, "close": c,
        "volume": rng.integers(0, 5_000, n).astype(np.float64),
        "vwap": (h + low + c) / 3.0, "trades": rng.integers(0, 100, n),
    })


def time_calls(bars: pd.DataFrame, heavy: bool, repeat: int) -> list[float]:
    compute_features(bars, heavy=heavy)  # warm-up
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        compute_features(bars, heavy=heavy)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    bars = random_walk_bars(args.bars)
    normal = time_calls(bars, False, max(args.repeat, 20))  # cheap: more samples, steadier median
    heavy = time_calls(bars, True, args.repeat)
    n_ms, h_ms = statistics.median(normal) * 1e3, statistics.median(heavy) * 1e3
    print(f"bars={args.bars}")
    print(f"normal: {n_ms:8.2f} ms/call (median of {len(normal)}, min {min(normal) * 1e3:.2f})")
    print(f"heavy:  {h_ms:8.2f} ms/call (median of {len(heavy)}, min {min(heavy) * 1e3:.2f})")
    print(f"ratio heavy/normal: {h_ms / n_ms:.1f}x")


if __name__ == "__main__":
    main()
