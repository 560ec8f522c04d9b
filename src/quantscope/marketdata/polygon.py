"""Async client for Polygon's aggregates endpoint (`/v2/aggs/ticker/...`), real or simulated.

- The API key travels only in `Authorization: Bearer`; it never enters a URL, an exception
  message or a log line. `next_url` is followed with any `apiKey` parameter removed and on the
  configured origin only, so the key is never sent to another host.
- Retries 429 (honouring Retry-After), 5xx, timeouts, connection errors and unparsable bodies with
  `BackoffPolicy` delays; a shared `CircuitBreaker` pauses every request after repeated 429s. All
  waiting goes through `_wait` (one choke point for instrumentation).
- Validates every bar; a bad bar fails the fetch (never silently dropped).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import pandas as pd

from quantscope.instrumentation import metrics as qmetrics, phases
from quantscope.marketdata.backoff import BackoffPolicy, CircuitBreaker, parse_retry_after
from quantscope.marketdata.timeframes import Timeframe, parse_timeframe, to_ticker
from quantscope.settings import POLYGON_BASE_URL

log = logging.getLogger(__name__)

BAR_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume", "vwap", "trades")
OK_STATUSES = frozenset({"OK", "DELAYED"})
_REQUIRED = (("t", "t"), ("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class PolygonError(Exception):
    """Base of every client error. Messages name ticker, timeframe and status, never the key."""

    def __init__(self, message: str, *, ticker: str | None = None, timeframe: str | None = None,
                 status: int | None = None, attempts: int | None = None):
        super().__init__(message)
        self.ticker = ticker
        self.timeframe = timeframe
        self.status = status
        self.attempts = attempts


class AuthError(PolygonError):
    """401/403: missing, unknown or unentitled key. Not retried."""


class NotFoundError(PolygonError):
    """404. Not retried."""


class BadRequestError(PolygonError):
    """Other 4xx (bad parameters). Not retried."""


class RateLimitedError(PolygonError):
    """Still 429 after every attempt."""


class UpstreamError(PolygonError):
    """5xx, timeouts or connection failures after every attempt."""


class MalformedResponseError(PolygonError):
    """Not JSON, wrong content type, truncated, wrong shape or an impossible bar."""


class PaginationError(PolygonError):
    """next_url loops, is unusable, or pages exceed max_pages."""


class _Retry(Exception):
    """Internal: a retryable failure of one attempt."""

    def __init__(self, reason: str, error: PolygonError, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.retry_after = retry_after


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------

@dataclass
class FetchResult:
    bars: pd.DataFrame          # BAR_COLUMNS; ts tz-aware UTC, ascending, unique
    pages: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0       # 429 answers seen
    backoff_seconds: float = 0.0
    ticker: str = ""
    symbol: str = ""
    timeframe: str = ""


@dataclass
class _Page:
    t: np.ndarray
    cols: dict[str, np.ndarray]
    next_url: str | None


@dataclass
class _Ctx:
    symbol: str
    ticker: str
    timeframe: str
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    backoff_seconds: float = 0.0
    pages: int = 0
    arrays: list[_Page] = field(default_factory=list)
    on_rate_limited: Callable[[], Awaitable[Any]] | None = None

    async def rate_limited_once(self) -> None:
        hook, self.on_rate_limited = self.on_rate_limited, None
        if hook is not None:
            await hook()

    def where(self) -> str:
        return f"{self.ticker} {self.timeframe}"


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------

class PolygonClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 30.0, max_concurrency: int = 5,
                 page_limit: int = 50_000, backoff: BackoffPolicy | None = None,
                 breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, max_pages: int = 1000,
                 transport: httpx.AsyncBaseTransport | None = None):
        base = httpx.URL(base_url.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        if base.query or "apikey" in str(base).lower():
            raise ValueError("base_url must not carry a query string (the key goes in a header)")
        if timeout_s <= 0 or max_concurrency < 1 or not 1 <= page_limit <= 50_000 or max_pages < 1:
            raise ValueError("timeout_s > 0, max_concurrency >= 1, page_limit 1..50000 and max_pages >= 1 required")
        self.base_url = str(base)
        self._base = base
        self._api_key = api_key or None
        self.timeout_s = float(timeout_s)
        self.max_concurrency = max_concurrency
        self.page_limit = page_limit
        self.backoff = backoff or BackoffPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        self.max_pages = max_pages
        self._sem = asyncio.Semaphore(max_concurrency)
        headers = {"Accept": "application/json", "User-Agent": "quantscope/0.1"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(self.timeout_s), transport=transport,
            follow_redirects=False,  # a redirect could carry the Authorization header elsewhere
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency))

    async def __aenter__(self) -> PolygonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- public --------------------------------------------------------------------------

    async def fetch_bars(self, symbol: str, timeframe: Timeframe | str, start: datetime, end: datetime, *,
                         on_rate_limited: Callable[[], Awaitable[Any]] | None = None) -> FetchResult:
        """All bars of `symbol` with start time in [start, end], following pagination.
        `on_rate_limited()` is awaited once, at the first 429 or circuit-breaker pause of this
        fetch, before it waits (the backfill records it, so the API can say why data is old)."""
        tf = parse_timeframe(timeframe) if isinstance(timeframe, str) else timeframe
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware datetimes")
        ticker = to_ticker(symbol)
        ctx = _Ctx(symbol=symbol, ticker=ticker, timeframe=tf.name, on_rate_limited=on_rate_limited)
        from_ms, to_ms = _ms(start), _ms(end)
        path = (f"/v2/aggs/ticker/{quote(ticker, safe=':.-')}/range/{tf.multiplier}/{tf.timespan}"
                f"/{from_ms}/{to_ms}")
        url: httpx.URL | None = self._base.copy_with(
            path=self._base.path.rstrip("/") + path,
            params={"adjusted": "true", "sort": "asc", "limit": str(self.page_limit)})
        seen: set[str] = set()
        while url is not None:
            key = _loop_key(url)
            if key in seen:
                raise PaginationError(f"{ctx.where()}: pagination loop (next_url repeats a page already "
                                      f"fetched) after {ctx.pages} pages", ticker=ticker, timeframe=tf.name)
            if ctx.pages >= self.max_pages:
                raise PaginationError(f"{ctx.where()}: more than max_pages={self.max_pages} pages",
                                      ticker=ticker, timeframe=tf.name)
            seen.add(key)
            page = await self._get_page(url, ctx)
            ctx.pages += 1
            ctx.arrays.append(page)
            url = self._follow(page.next_url, ctx) if page.next_url else None
        return FetchResult(bars=_frame(ctx.arrays), pages=ctx.pages, requests=ctx.requests, retries=ctx.retries,
                           rate_limited=ctx.rate_limited, backoff_seconds=ctx.backoff_seconds,
                           ticker=ticker, symbol=symbol, timeframe=tf.name)

    # -- waiting: the one place that sleeps --------------------------------------------

    async def _wait(self, seconds: float, reason: str, attempt: int) -> None:
        """Every backoff or circuit-breaker pause goes through here: one span, one metric."""
        if seconds > 0:
            with phases.backoff_span(seconds, reason, attempt):
                await self._sleep(seconds)
            qmetrics.polygon_backoff.add(seconds, {"reason": reason})

    # -- one page, with retries -----------------------------------------------------------

    async def _get_page(self, url: httpx.URL, ctx: _Ctx) -> _Page:
        attempts = self.backoff.max_attempts
        for attempt in range(1, attempts + 1):
            pause = self.breaker.remaining_pause()
            if pause > 0:
                await ctx.rate_limited_once()
                await self._wait(pause, "circuit_open", attempt)
                ctx.backoff_seconds += pause
            try:
                return await self._attempt(url, ctx, attempt)
            except _Retry as r:
                if attempt == attempts:
                    r.error.attempts = attempts
                    raise r.error from r.error.__cause__
                delay = self.backoff.delay(attempt, r.retry_after)
                log.warning("%s: %s (attempt %d/%d), retrying in %.1fs", ctx.where(), r.reason, attempt,
                            attempts, delay)
                ctx.retries += 1
                if r.reason == "rate_limit":
                    await ctx.rate_limited_once()
                await self._wait(delay, r.reason, attempt)
                ctx.backoff_seconds += delay
        raise AssertionError("unreachable")

    async def _attempt(self, url: httpx.URL, ctx: _Ctx, attempt: int) -> _Page:
        ctx.requests += 1
        where, tf = ctx.where(), ctx.timeframe
        kw = {"ticker": ctx.ticker, "timeframe": tf}
        try:
            async with self._sem:
                async with asyncio.timeout(self.timeout_s):  # total, so a slow drip cannot hang a job
                    resp = await self._http.get(url)
        except (httpx.TimeoutException, TimeoutError) as e:
            err = UpstreamError(f"{where}: request timed out after {self.timeout_s:g}s", **kw)
            err.__cause__ = e
            raise _Retry("timeout", err) from None
        except httpx.DecodingError as e:
            err = MalformedResponseError(f"{where}: undecodable response body ({type(e).__name__})", **kw)
            err.__cause__ = e
            raise _Retry("malformed", err) from None
        except httpx.RequestError as e:
            err = UpstreamError(f"{where}: connection failed ({type(e).__name__})", **kw)
            err.__cause__ = e
            raise _Retry("connection", err) from None

        status = resp.status_code
        qmetrics.polygon_requests.add(1, {"status": str(status)})
        if status == 200:
            try:
                body = self._parse_json(resp, where, kw)
            except MalformedResponseError as e:
                raise _Retry("malformed", e) from None
            api_status = body.get("status")
            if api_status is not None and api_status not in OK_STATUSES:
                msg = f"{where}: HTTP 200 with status {self._scrub(str(api_status))[:40]}{self._detail(resp)}"
                if api_status == "NOT_AUTHORIZED":
                    raise AuthError(msg, status=200, **kw)
                if api_status == "ERROR":
                    raise _Retry("server_error", UpstreamError(msg, status=200, **kw))
                raise MalformedResponseError(msg, status=200, **kw)
            page = _validate(body, where, kw)
            self.breaker.record_success()
            return page
        detail = self._detail(resp)
        if status == 429:
            ctx.rate_limited += 1
            self.breaker.record_rate_limit()
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
            err = RateLimitedError(f"{where}: HTTP 429 rate limited after {self.backoff.max_attempts} attempts{detail}",
                                   status=429, **kw)
            raise _Retry("rate_limit", err, retry_after)
        if status >= 500:
            raise _Retry("server_error", UpstreamError(f"{where}: HTTP {status}{detail}", status=status, **kw))
        if status in (401, 403):
            raise AuthError(f"{where}: HTTP {status} not authorized{detail}", status=status, **kw)
        if status == 404:
            raise NotFoundError(f"{where}: HTTP 404 not found{detail}", status=status, **kw)
        raise BadRequestError(f"{where}: HTTP {status}{detail}", status=status, **kw)

    def _parse_json(self, resp: httpx.Response, where: str, kw: dict[str, Any]) -> dict[str, Any]:
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise MalformedResponseError(f"{where}: HTTP 200 with content type {ctype[:60] or 'none'!r}, "
                                         "expected application/json", status=200, **kw)
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError as e:
            raise MalformedResponseError(f"{where}: HTTP 200 body is not valid JSON "
                                         f"({len(resp.content)} bytes; truncated?): {e.msg}", status=200, **kw) from None
        if not isinstance(body, dict):
            raise MalformedResponseError(f"{where}: HTTP 200 body is a JSON {type(body).__name__}, expected an object",
                                         status=200, **kw)
        return body

    def _detail(self, resp: httpx.Response) -> str:
        """The server's own error text, short and with the key scrubbed (never echo it)."""
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            return ""
        if not isinstance(body, dict):
            return ""
        parts = [str(body[k]) for k in ("status", "error", "message") if isinstance(body.get(k), str)]
        return f": {self._scrub(' - '.join(parts))[:200]}" if parts else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[REDACTED]") if self._api_key else text

    def _follow(self, next_url: Any, ctx: _Ctx) -> httpx.URL:
        kw = {"ticker": ctx.ticker, "timeframe": ctx.timeframe}
        if not isinstance(next_url, str):
            raise MalformedResponseError(f"{ctx.where()}: next_url is not a string", **kw)
        try:
            u = self._base.join(next_url)
        except (httpx.InvalidURL, ValueError):
            raise PaginationError(f"{ctx.where()}: unusable next_url after page {ctx.pages}", **kw) from None
        params = [(k, v) for k, v in u.params.multi_items() if k.lower() != "apikey"]
        # Stay on the configured origin (proxies, the simulator): the key goes nowhere else.
        u = u.copy_with(scheme=self._base.scheme, host=self._base.host, port=self._base.port,
                        params=params or None)
        if self._key_in(u):
            raise PaginationError(f"{ctx.where()}: next_url embeds the API key; refusing to follow it", **kw)
        return u

    def _key_in(self, u: httpx.URL) -> bool:
        k = self._api_key
        if not k:
            return False
        parts = [v for _, v in u.params.multi_items()] + u.path.split("/")
        # Substring search only for realistic key lengths; a 1-char test key matches anything.
        return k in parts or (len(k) >= 16 and k in str(u))


def build_client_from_settings(settings: Any, base_url_override: str | None = None, **kwargs: Any) -> PolygonClient:
    """A client configured from `Settings` and the backoff section of config/objectives.yaml."""
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None
    base = base_url_override or settings.polygon_base_url or POLYGON_BASE_URL
    objectives = settings.config_dir / "objectives.yaml"
    if "backoff" not in kwargs and objectives.exists():
        kwargs["backoff"] = BackoffPolicy.from_objectives(objectives)
    if "breaker" not in kwargs and objectives.exists():
        kwargs["breaker"] = CircuitBreaker.from_objectives(objectives)
    return PolygonClient(base, key, timeout_s=settings.http_timeout_s, max_concurrency=settings.http_concurrency,
                         page_limit=settings.page_limit, **kwargs)


# --------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------

def _ms(t: datetime) -> int:
    return int(math.floor(t.timestamp() * 1000))


def _loop_key(url: httpx.URL) -> str:
    params = sorted(url.params.multi_items())
    return f"{url.scheme}://{url.host}:{url.port}{url.path}?{params}"


def _numeric(values: list[Any], name: str, where: str, kw: dict[str, Any], optional: bool = False) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr
    if optional and arr.dtype.kind == "O" and all(v is None or type(v) in (int, float) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    raise MalformedResponseError(f"{where}: results field {name!r} is not numeric in every bar", status=200, **kw)


def _validate(body: dict[str, Any], where: str, kw: dict[str, Any]) -> _Page:
    next_url = body.get("next_url")
    if next_url is not None and not isinstance(next_url, str):
        raise MalformedResponseError(f"{where}: next_url is not a string", status=200, **kw)
    results = body.get("results")
    if results is None:
        count = body.get("resultsCount", 0)
        if count not in (0, None):
            raise MalformedResponseError(f"{where}: resultsCount={count!r} but no results", status=200, **kw)
        empty = np.empty(0, np.float64)
        return _Page(np.empty(0, np.int64), {c: empty for c in BAR_COLUMNS[1:]}, next_url)
    if not isinstance(results, list):
        raise MalformedResponseError(f"{where}: results is a {type(results).__name__}, expected a list",
                                     status=200, **kw)
    if not all(isinstance(r, dict) for r in results):
        raise MalformedResponseError(f"{where}: results must be a list of objects", status=200, **kw)
    raw: dict[str, np.ndarray] = {}
    for src, name in _REQUIRED:
        try:
            values = [r[src] for r in results]
        except KeyError:
            raise MalformedResponseError(f"{where}: a bar lacks required field {src!r}", status=200, **kw) from None
        raw[name] = _numeric(values, src, where, kw)
    raw["vwap"] = _numeric([r.get("vw") for r in results], "vw", where, kw, optional=True).astype(np.float64)
    raw["trades"] = _numeric([r.get("n") for r in results], "n", where, kw, optional=True).astype(np.float64)

    t = raw.pop("t")
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or np.any(t != np.floor(t)):
            raise MalformedResponseError(f"{where}: bar timestamps must be integer milliseconds", status=200, **kw)
    t = t.astype(np.int64)
    cols = {k: raw[k].astype(np.float64) for k in ("open", "high", "low", "close", "volume")}
    o, h, lo, c, v = (cols[k] for k in ("open", "high", "low", "close", "volume"))
    checks = (
        (t < 0, "negative timestamp"),
        (~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)), "non-finite value"),
        ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "non-positive price"),
        (h < lo, "high < low"),
        ((o < lo) | (o > h) | (c < lo) | (c > h), "open/close outside [low, high]"),
        (v < 0, "negative volume"),
        (raw["vwap"] < 0, "negative vwap"),
        (raw["trades"] < 0, "negative trade count"),
    )
    for bad, what in checks:
        if bad.any():
            i = int(np.argmax(bad))
            when = pd.Timestamp(int(t[i]), unit="ms", tz="UTC").isoformat() if t[i] >= 0 else str(t[i])
            raise MalformedResponseError(f"{where}: bar at {when} has {what} ({int(bad.sum())} bad bars)",
                                         status=200, **kw)
    cols["vwap"] = raw["vwap"]
    cols["trades"] = raw["trades"]
    return _Page(t, cols, next_url)


def _frame(pages: list[_Page]) -> pd.DataFrame:
    t = np.concatenate([p.t for p in pages]) if pages else np.empty(0, np.int64)
    cols = {c: (np.concatenate([p.cols[c] for p in pages]) if pages else np.empty(0)) for c in BAR_COLUMNS[1:]}
    # Duplicates (overlapping pages): the later answer wins. np.unique on the reversed array
    # keeps each timestamp's last occurrence and sorts ascending in one pass.
    rev_t = t[::-1]
    uniq, first_in_rev = np.unique(rev_t, return_index=True)
    pick = len(t) - 1 - first_in_rev
    out = {c: cols[c][pick] for c in cols}
    vwap = out["vwap"]
    missing = np.isnan(vwap)
    if missing.any():  # Polygon omits vw on some bars: fall back to the typical price
        vwap = np.where(missing, (out["high"] + out["low"] + out["close"]) / 3.0, vwap)
    trades = np.nan_to_num(out["trades"], nan=0.0).astype(np.int64)
    return pd.DataFrame({
        "ts": pd.to_datetime(uniq, unit="ms", utc=True),
        "open": out["open"], "high": out["high"], "low": out["low"], "close": out["close"],
        "volume": out["volume"], "vwap": vwap, "trades": trades,
    }, columns=list(BAR_COLUMNS))
