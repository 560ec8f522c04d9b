"""The Polygon-compatible HTTP app: auth, rate window, faults, request parsing, paging, latency.

Runtime control for drills: POST /_sim/config, GET /_sim/config, GET /_sim/stats, POST /_sim/reset."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import math
import random
import re
from collections import Counter, deque
from datetime import date, datetime, timezone
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from quantscope.instrumentation import names, phases

from .config import (
    FAULT_RATES,
    FaultConfig,
    PROFILES,
    SimulatorConfig,
)
from .model import (
    DAY_MS,
    TICKER_RE,
    TIMESPANS,
    bar_grid,
    generate_bars,
    results_bytes,
    seed_key,
)


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------

class SimulatorState:
    def __init__(self, config: SimulatorConfig):
        self.initial = config
        self.reset()

    def reset(self) -> None:
        self.config = self.initial
        self.fault_rng = random.Random(seed_key("faults", self.initial.seed))
        self.latency_rng = random.Random(seed_key("latency", self.initial.seed))
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
        return f"{seed_key('rid', self.initial.seed, n):016x}{seed_key('rid2', self.initial.seed, n):016x}"

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
    if DATE_RE.match(value):
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


@dataclass(frozen=True)
class AggsQuery:
    """One parsed aggregates request (path and query, a cursor already merged in)."""

    ticker: str
    timespan: str
    multiplier: int
    from_raw: str
    to_raw: str
    from_ms: int
    to_ms: int
    adjusted: str
    sort: str
    limit: int


def _auth_failure(key: str | None, cfg: SimulatorConfig, rid: str) -> Response | None:
    if key is None and cfg.require_key:
        return _error(401, rid, "API Key was not provided", "NOT_AUTHORIZED")
    if key is not None and cfg.api_keys is not None and key not in cfg.api_keys:
        return _error(401, rid, "Unknown API Key")
    return None


def _rate_limited(state: SimulatorState, key: str | None, cfg: SimulatorConfig, rid: str) -> Response | None:
    """Polygon's sliding one-minute window per key: 429 with Retry-After once it is full."""
    if cfg.rate_limit_per_min is None:
        return None
    now = cfg.clock()
    win = state.windows.setdefault(key or "", deque())
    while win and win[0] <= now - 60.0:
        win.popleft()
    if len(win) >= cfg.rate_limit_per_min:
        r = _error(429, rid, _RATE_MSG)
        r.headers["Retry-After"] = str(max(1, math.ceil(win[0] + 60.0 - now)))
        return r
    win.append(now)
    return None


def _parse_query(request: Request, cfg: SimulatorConfig, rid: str) -> AggsQuery | Response:
    """The request's parameters, or the 400 Polygon answers for the first bad one."""
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
    if cfg.faults.huge_page:
        limit = cfg.max_limit
    return AggsQuery(ticker, timespan, multiplier, p["from_"], p["to"], from_ms, to_ms, adjusted, sort, limit)


def _page(state: SimulatorState, request: Request, q: AggsQuery, cfg: SimulatorConfig, rid: str) -> tuple[bytes, int]:
    """The JSON body of one page (bars spliced in pre-serialised) and its number of bars."""
    grid = bar_grid(q.ticker, q.timespan, q.multiplier, q.from_ms, q.to_ms, q.limit, descending=q.sort == "desc")
    bars = generate_bars(q.ticker, grid, cfg.seed)
    n = len(grid.starts)
    state.bars_served += n
    body: dict[str, Any] = {"ticker": q.ticker, "queryCount": n, "resultsCount": n, "adjusted": q.adjusted == "true"}
    if n:
        body["results"] = None  # spliced in below as pre-serialised bytes
    body.update(status=cfg.response_status, request_id=rid, count=n)
    base = str(request.base_url).rstrip("/")
    if cfg.faults.pagination_loop:
        state.faults["pagination_loop"] += 1
        keep = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "apiKey"]
        body["next_url"] = f"{base}{request.url.path}" + (f"?{urlencode(keep)}" if keep else "")
    elif grid.more is not None:
        nf, nt = (q.from_raw, grid.more) if q.sort == "desc" else (grid.more, q.to_raw)
        cursor = _encode_cursor({"limit": str(q.limit), "sort": q.sort, "adjusted": q.adjusted})
        body["next_url"] = (f"{base}/v2/aggs/ticker/{q.ticker}/range/{q.multiplier}/{q.timespan}/{nf}/{nt}"
                            f"?cursor={cursor}")
    payload = orjson.dumps(body)
    if n:
        payload = payload.replace(b'"results":null', b'"results":' + results_bytes(bars), 1)
    return payload, n


def _deliver(state: SimulatorState, draws: dict[str, bool], f: FaultConfig, payload: bytes, rid: str) -> Response:
    """The page as drawn: whole, or malformed, truncated, HTML, or dripped slowly."""
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
        refused = _auth_failure(key, cfg, rid) or _rate_limited(state, key, cfg, rid)
        if refused is not None:
            return refused
        f = cfg.faults
        if f.force_status is not None:
            state.faults["force_status"] += 1
            return _forced(f.force_status, rid, f.force_retry_after_s)
        # A fixed number of draws per request keeps the fault sequence reproducible.
        draws = {name: state.fault_rng.random() < getattr(f, name) for name in FAULT_RATES}
        pick = state.fault_rng.random()
        if draws["error_5xx_rate"]:
            state.faults["error_5xx"] += 1
            return _forced((500, 502, 503, 504)[int(pick * 4)], rid, 1)
        if draws["timeout_rate"]:
            state.faults["timeout"] += 1
            await asyncio.sleep(f.timeout_sleep_s)
        query = _parse_query(request, cfg, rid)
        if isinstance(query, Response):
            return query
        (payload, n), cpu = phases.thread_cpu(_page, state, request, query, cfg, rid)
        # In-process, this CPU is the backfill process's, spent while its client holds a slot:
        # the what-if replay needs to know (a real Polygon's is on its side of the network).
        phases.set_attrs(phases.current(), **{names.ATTR_CPU_SECONDS: cpu})
        prof = PROFILES[cfg.profile]
        if prof.base_ms or prof.jitter_ms or prof.per_1000_results_ms:
            jitter = state.latency_rng.expovariate(1.0 / prof.jitter_ms) if prof.jitter_ms else 0.0
            await asyncio.sleep((prof.base_ms + jitter + prof.per_1000_results_ms * n / 1000.0) / 1000.0)
        return _deliver(state, draws, f, payload, rid)

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
    import uvicorn  # serving only; the app itself runs inside tests and benches without it

    # No access log: clients that pass apiKey in the query string would have it written out.
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
