"""Timeframes and symbols: the vocabulary shared by the client, simulator, backfill and API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from quantscope.settings import get_settings
from quantscope.util.documents import safe_yaml


@dataclass(frozen=True)
class Timeframe:
    name: str          # "5m"
    multiplier: int    # Polygon multiplier
    timespan: str      # Polygon timespan: minute | hour | day
    seconds: int       # bar length
    lookback: timedelta  # default backfill window (~1,000-5,000 bars a job)


TIMEFRAMES: dict[str, Timeframe] = {
    "5m": Timeframe("5m", 5, "minute", 300, timedelta(days=45)),
    "15m": Timeframe("15m", 15, "minute", 900, timedelta(days=120)),
    "1h": Timeframe("1h", 1, "hour", 3600, timedelta(days=365)),
    "4h": Timeframe("4h", 4, "hour", 14400, timedelta(days=3 * 365)),
    "1d": Timeframe("1d", 1, "day", 86400, timedelta(days=10 * 365)),
}
TIMEFRAME_NAMES = tuple(TIMEFRAMES)

# Upper-case letters/digits, optionally one class suffix (BRK.B) or a Polygon prefix (X:BTCUSD).
SYMBOL_RE = re.compile(r"^(?:[A-Z]:)?[A-Z0-9]{1,10}(?:[.\-][A-Z0-9]{1,4})?$")
TIERS = ("critical", "standard", "low")
CRYPTO_QUOTE = "USD"


def parse_timeframe(name: str) -> Timeframe:
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r}; expected one of {', '.join(TIMEFRAME_NAMES)}") from None


def validate_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not SYMBOL_RE.fullmatch(symbol):
        raise ValueError(
            f"invalid symbol {symbol!r}: expected 1-10 upper-case letters or digits, "
            "optionally with a class suffix like BRK.B"
        )
    return symbol


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    tier: str
    asset_class: str  # equity | etf | crypto
    ticker: str       # Polygon ticker

    @property
    def is_crypto(self) -> bool:
        return self.asset_class == "crypto"


def default_symbols_path() -> Path:
    return get_settings().config_dir / "symbols.yaml"


@lru_cache(maxsize=8)
def load_symbols(path: Path | None = None) -> dict[str, SymbolInfo]:
    """Load config/symbols.yaml, validating every entry."""
    path = path or default_symbols_path()
    raw = safe_yaml(Path(path).read_bytes())
    entries = (raw or {}).get("symbols")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty 'symbols' list")
    out: dict[str, SymbolInfo] = {}
    for i, e in enumerate(entries):
        where = f"{path}: symbols[{i}]"
        if not isinstance(e, dict) or "symbol" not in e:
            raise ValueError(f"{where}: expected a mapping with 'symbol'")
        sym = validate_symbol(str(e["symbol"]))
        tier = e.get("tier", "low")
        if tier not in TIERS:
            raise ValueError(f"{where}: tier {tier!r} not one of {TIERS}")
        ac = e.get("asset_class", "equity")
        if ac not in ("equity", "etf", "crypto"):
            raise ValueError(f"{where}: asset_class {ac!r} not one of equity, etf, crypto")
        ticker = e.get("ticker") or (f"X:{sym}{CRYPTO_QUOTE}" if ac == "crypto" else sym)
        if sym in out:
            raise ValueError(f"{where}: duplicate symbol {sym}")
        out[sym] = SymbolInfo(sym, tier, ac, ticker)
    return out


def symbol_info(symbol: str) -> SymbolInfo:
    """Known symbols from config; unknown valid symbols are treated as low-tier equities."""
    known = load_symbols()
    if symbol in known:
        return known[symbol]
    validate_symbol(symbol)
    if symbol.startswith("X:"):
        return SymbolInfo(symbol, "low", "crypto", symbol)
    return SymbolInfo(symbol, "low", "equity", symbol)


def to_ticker(symbol: str) -> str:
    return symbol_info(symbol).ticker
