"""Feature computation contract (implementation pending)."""

FEATURE_COLUMNS: tuple[str, ...] = (
    # volatility
    "rv_20", "rv_60", "atr_14", "parkinson_20",
    # momentum
    "ret_1", "ret_5", "ret_20", "rsi_14", "macd", "macd_signal", "macd_hist",
    # structure
    "dist_high_20", "dist_low_20", "trend_slope_20", "vwap_dev",
)
