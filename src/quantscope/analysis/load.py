"""load_test_report.json from k6's raw points, k6's summary, resource samples and server spans.

Pure where it can be: parsed inputs in, report dict out. Reads k6 `--out json` files (gzipped or
not); never imports the service. Percentiles use linear interpolation between closest ranks, the
same rule k6's Trend sink uses, so the report agrees with k6's own summary for the same run.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import orjson

from quantscope.analysis.conventions import (ATTR_CACHE_HIT, PHASE_API, PHASE_DB, SPAN_CACHE_LOOKUP, SPAN_SERIALIZE,
                                              SPAN_STORE_READ, TIMEFRAME_ORDER)
from quantscope.analysis.attribution import merge_intervals
from quantscope.analysis.phases import PhaseRules, classify
from quantscope.analysis.tail import slow_set
from quantscope.analysis.traces import SpanTable

SCHEMA_VERSION = 1
SPAN_KIND_SERVER = 2
FEATURES_ENDPOINT = "features"
BREAKDOWN_TAGS = ("limit", "timeframe", "symbol")
# Server-time components, in the order a request meets them.
COMPONENTS = ("cache_lookup", "store_read", "serialize", "other_server", "unexplained_client")
COMPONENT_SPANS = {SPAN_CACHE_LOOKUP: "cache_lookup", SPAN_STORE_READ: "store_read", SPAN_SERIALIZE: "serialize"}
NAMED_COMPONENTS = tuple(COMPONENT_SPANS.values())  # measured by child spans; the other two are derived
# A process tree whose peak CPU reaches this share of its ceiling (100% per worker: the GIL) is
# treated as saturated. Peak, not mean: a 100-request burst lasts well under a second, and the
# mean is diluted by the samples around it.
CPU_SATURATION = 0.9


class LoadReportError(ValueError):
    """A k6 output or summary that cannot be read."""


@dataclass
class K6Requests:
    """The features requests of one k6 run, row-aligned."""

    end_ns: np.ndarray  # int64 unix ns (k6 stamps a point when the response completes)
    duration_ms: np.ndarray  # float64, k6 http_req_duration (sending + waiting + receiving)
    status: np.ndarray  # int32, 0 = no response
    tags: list[dict[str, str]]
    trace_id: list[str | None]
    skipped_lines: int = 0

    def __len__(self) -> int:
        return int(self.duration_ms.shape[0])

    @property
    def ok(self) -> np.ndarray:
        return self.status == 200


def _rfc3339_ns(s: str) -> int:
    # "2026-11-28T22:06:29.483861601Z": numpy keeps the nanoseconds datetime.fromisoformat drops.
    s = s.rstrip("Z")
    if "+" in s[19:] or "-" in s[19:]:
        # k6 writes UTC with Z; accept an explicit offset too.
        dt = datetime.fromisoformat(s)
        return int(dt.timestamp() * 1e9)
    return int(np.datetime64(s, "ns").astype(np.int64))


def read_k6_points(path: str | Path) -> K6Requests:
    """The `http_req_duration` points tagged endpoint=features from a k6 JSON output file."""
    path = Path(path)
    if not path.is_file():
        raise LoadReportError(f"k6 output {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    end, dur, status, tags, tids = [], [], [], [], []
    skipped = 0
    try:
        with opener(path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if b'"http_req_duration"' not in line or b'"Point"' not in line:
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    skipped += 1  # a truncated last line when k6 was killed; counted, not hidden
                    continue
                data = rec.get("data") or {}
                t = data.get("tags") or {}
                if rec.get("metric") != "http_req_duration" or t.get("endpoint") != FEATURES_ENDPOINT:
                    continue
                end.append(_rfc3339_ns(data["time"]))
                dur.append(float(data["value"]))
                status.append(int(t.get("status") or 0))
                tags.append(t)
                tids.append((data.get("metadata") or {}).get("trace_id") or t.get("trace_id"))
    except (OSError, EOFError, KeyError, ValueError) as e:
        raise LoadReportError(f"cannot read k6 output {path}: {e}") from e
    return K6Requests(np.asarray(end, dtype=np.int64), np.asarray(dur, dtype=np.float64),
                      np.asarray(status, dtype=np.int32), tags, tids, skipped)


DEFAULT_TARGETS = Path(__file__).resolve().parents[3] / "k6" / "lib" / "targets.json"


def read_targets(path: str | Path = DEFAULT_TARGETS) -> dict[str, float]:
    """The seed's targets, from the one file the k6 scripts read too."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise LoadReportError(f"cannot read the targets {path}: {e}") from None
    return {k: float(v) for k, v in doc.items() if not k.startswith("_")}


def concat_requests(parts: Sequence[K6Requests]) -> K6Requests:
    """Several k6 instances' requests as one run (the points themselves, never their summaries)."""
    return K6Requests(np.concatenate([p.end_ns for p in parts]) if parts else np.zeros(0, np.int64),
                      np.concatenate([p.duration_ms for p in parts]) if parts else np.zeros(0),
                      np.concatenate([p.status for p in parts]) if parts else np.zeros(0, np.int32),
                      [t for p in parts for t in p.tags], [t for p in parts for t in p.trace_id],
                      sum(p.skipped_lines for p in parts))


def merge_k6_outputs(paths: Sequence[str | Path]) -> dict[str, K6Requests]:
    """Raw JSON outputs of N k6 instances (a k6-operator TestRun, or local processes with
    --execution-segment) -> one K6Requests per scenario tag, every point kept, so percentiles are
    over all requests, never an average of per-instance percentiles."""
    if not paths:
        raise LoadReportError("no k6 output files given")
    by: dict[str, list[K6Requests]] = defaultdict(list)
    for path in paths:
        req = read_k6_points(path)
        if len(req) == 0:
            raise LoadReportError(f"{path}: no features requests (http_req_duration, endpoint=features)")
        names = np.array([t.get("scenario") or "default" for t in req.tags])
        for name in sorted(set(names.tolist())):
            idx = np.flatnonzero(names == name)
            by[name].append(K6Requests(req.end_ns[idx], req.duration_ms[idx], req.status[idx],
                                       [req.tags[i] for i in idx], [req.trace_id[i] for i in idx],
                                       req.skipped_lines if name == names[0] else 0))
    return {name: concat_requests(parts) for name, parts in sorted(by.items())}


def read_k6_summary(path: str | Path) -> dict[str, Any]:
    """k6 `--summary-export` JSON; the features-scoped submetrics when present."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise LoadReportError(f"cannot read k6 summary {path}: {e}") from e
    metrics = doc.get("metrics") or {}
    dur = metrics.get("http_req_duration{endpoint:features}") or metrics.get("http_req_duration") or {}
    reqs = metrics.get("http_reqs{endpoint:features}") or metrics.get("http_reqs") or {}
    thresholds = {}
    for name, m in metrics.items():
        for expr, res in (m.get("thresholds") or {}).items():
            # summary-export writes {"expr": false} when the threshold was NOT crossed.
            thresholds[f"{name}: {expr}"] = not bool(res if isinstance(res, bool) else res.get("ok") is False)
    return {"http_req_duration": {k: dur.get(k) for k in ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
                                  if k in dur},
            "http_reqs": {"count": reqs.get("count"), "rate": reqs.get("rate")},
            "thresholds": thresholds}


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: np.ndarray, pct: float) -> float | None:
    """k6's rule: linear interpolation at rank pct*(n-1)."""
    if values.size == 0:
        return None
    return float(np.percentile(values, pct, method="linear"))


def latency_stats(ms: np.ndarray) -> dict[str, float | None]:
    if ms.size == 0:
        return {k: None for k in ("avg", "min", "p50", "p90", "p95", "p99", "max")}
    return {"avg": _r(float(ms.mean())), "min": _r(float(ms.min())), "p50": _r(percentile(ms, 50)),
            "p90": _r(percentile(ms, 90)), "p95": _r(percentile(ms, 95)), "p99": _r(percentile(ms, 99)),
            "max": _r(float(ms.max()))}


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def request_stats(req: K6Requests, idx: np.ndarray | None = None) -> dict[str, Any]:
    """Latency of every request (k6 counts failed ones too), success and throughput."""
    idx = np.arange(len(req)) if idx is None else idx
    n = int(idx.size)
    dur = req.duration_ms[idx]
    ok = int(req.ok[idx].sum())
    window_s = 0.0
    if n:
        start = req.end_ns[idx] - (dur * 1e6).astype(np.int64)
        window_s = float(req.end_ns[idx].max() - start.min()) / 1e9
    return {
        "requests": n, "succeeded": ok, "failed": n - ok,
        "success_rate": _r(ok / n, 5) if n else None,
        "status_counts": {str(k): v for k, v in sorted(Counter(req.status[idx].tolist()).items())},
        "latency_ms": latency_stats(dur),
        "window_seconds": _r(window_s),
        # Requests over the span from the first request's start to the last one's end.
        "throughput_rps": _r(n / window_s, 2) if window_s > 0 else None,
    }


def tag_breakdown(req: K6Requests, tag: str, server: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Client stats per tag value, and, when server spans joined, the server's own latency for it:
    under a burst, client latency is mostly queue position, while server time is the tag's cost."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(req.tags):
        if tag in t:
            groups[t[tag]].append(i)
    out = {}
    for k, v in sorted(groups.items(), key=_tag_order):
        idx = np.asarray(v, dtype=np.int64)
        out[k] = request_stats(req, idx)
        if server:
            st = join_server_time(req, idx, server)
            out[k]["server_latency_ms"] = latency_stats(np.asarray(st.server_ms))
    return out


def _tag_order(item: tuple[str, Any]) -> tuple[int, float, str]:
    k = item[0]
    try:
        return (0, float(k), k)
    except ValueError:
        return (1, float(TIMEFRAME_ORDER.get(k, 99)), k)


def slowest(breakdown: dict[str, dict[str, Any]], key: str = "p95", field: str = "latency_ms") -> dict[str, Any] | None:
    """The slowest tag value by `key` of `field` (client latency_ms, or server_latency_ms), and by
    how much it exceeds the fastest."""
    vals = [(k, v[field][key]) for k, v in breakdown.items() if v.get(field) and v[field][key] is not None]
    if len(vals) < 2:
        return None
    (hk, hv), (lk, lv) = max(vals, key=lambda x: x[1]), min(vals, key=lambda x: x[1])
    return {"value": hk, f"{key}_ms": hv, "fastest": lk, f"fastest_{key}_ms": lv,
            "ratio": _r(hv / lv, 2) if lv > 0 else None, "difference_ms": _r(hv - lv)}


# --- targets ------------------------------------------------------------------------------------


def evaluate_targets(stats: dict[str, Any], targets: dict[str, float]) -> dict[str, dict[str, Any]]:
    lat = stats["latency_ms"]
    checks = {
        "avg_ms": (lat["avg"], "<", targets["avg_ms"]),
        "p95_ms": (lat["p95"], "<", targets["p95_ms"]),
        "p99_ms": (lat["p99"], "<", targets["p99_ms"]),
        "success_rate": (stats["success_rate"], ">", targets["success_rate"]),
        "throughput_rps": (stats["throughput_rps"], ">", targets["throughput_rps"]),
    }
    out = {}
    for name, (actual, op, target) in checks.items():
        met = None if actual is None else (actual < target if op == "<" else actual > target)
        out[name] = {"target": f"{op} {target:g}", "actual": actual, "met": met}
    return out


# --- server-side attribution --------------------------------------------------------------------


@dataclass
class ServerTimes:
    """Per-request server time, joined to k6 requests by trace id."""

    joined: int = 0
    joinable: int = 0  # successful requests that carried a trace id
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    components_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    cache_hits: int = 0
    cache_lookups: int = 0
    services: Counter[str] = field(default_factory=Counter)  # the API's service.name, per joined request
    db_named: int = 0  # store.read spans counted as DB read
    db_client: int = 0  # DB client spans (phase rules) counted as DB read


def index_server_spans(spans: SpanTable | None, rules: PhaseRules | None = None,
                       service: str | None = None) -> dict[str, dict[str, Any]]:
    """trace id -> the API's server span duration and its children's time (ms).

    The API's span is the topmost SERVER span of each trace (k6's traceparent makes it a child of
    a span no file holds), of `service` when one is named, else of any service: a foreign API
    needs no configuration. Its children: quantscope's own `cache.lookup` / `store.read` /
    `response.serialize`, then DB spans by the backfill's phase rules (`quantscope.phase`, a
    rules file, `db.system*`) as DB read, their overlap counted once; the rest is other server
    time.
    """
    if spans is None or len(spans) == 0:
        return {}
    out: dict[str, dict[str, Any]] = {}
    server_rows = np.flatnonzero(spans.kind == SPAN_KIND_SERVER)
    by_row: dict[int, dict[str, Any]] = {}
    for row in server_rows.tolist():
        if service is not None and spans.service(row) != service:
            continue
        tid = spans.trace_ids[int(spans.trace[row])]
        prev = out.get(tid)
        if prev is not None and prev["parent_remote"] and int(spans.parent_row[row]) >= 0:
            continue
        rec = {"server_ms": (int(spans.end[row]) - int(spans.start[row])) / 1e6,
               "parent_remote": int(spans.parent_row[row]) < 0, "children": defaultdict(float), "cache_hit": None,
               "service": spans.service(row), "named_db": 0, "db_client": 0}
        if prev is not None:
            by_row.pop(prev["row"], None)
        rec["row"] = row
        out[tid] = rec
        by_row[row] = rec
    if not by_row:
        return out
    parent_row = spans.parent_row
    named_rows = set()
    for name, comp in COMPONENT_SPANS.items():
        for row in spans.rows_named(name).tolist():
            named_rows.add(row)
            parent = int(parent_row[row])
            # Children of the server span, or below it (FastAPI's handler span).
            while parent >= 0 and parent not in by_row:
                parent = int(parent_row[parent])
            if parent < 0:
                continue
            rec = by_row[parent]
            rec["children"][comp] += (int(spans.end[row]) - int(spans.start[row])) / 1e6
            if comp == "store_read":
                rec["named_db"] += 1
            if name == SPAN_CACHE_LOOKUP or (comp == "store_read" and rec["cache_hit"] is None):
                # A bypassed lookup (Cache-Control: no-cache) has no cache.lookup span: its
                # store.read says the cache did not answer.
                hit = spans.attr(row, ATTR_CACHE_HIT)
                if hit is not None:
                    rec["cache_hit"] = bool(hit)
    own = classify(spans, rules)
    db_rows = set(np.flatnonzero(own == spans.phase_names.index(PHASE_DB)).tolist())
    # Outbound calls: a downstream service's DB time is that call's time, not the API's DB read.
    outbound = set(np.flatnonzero(own == spans.phase_names.index(PHASE_API)).tolist())
    stop = db_rows | named_rows | outbound
    owners, rows = [], []
    for row in sorted(db_rows):
        parent = int(parent_row[row])
        # Only the outermost DB span, none inside a named component (store.read's own queries)
        # and none below an outbound call.
        while parent >= 0 and parent not in by_row and parent not in stop:
            parent = int(parent_row[parent])
        if parent >= 0 and parent in by_row:
            owners.append(parent)
            rows.append(row)
    if rows:
        ix, owner = np.asarray(rows, dtype=np.int64), np.asarray(owners, dtype=np.int64)
        parents, counts = np.unique(owner, return_counts=True)
        g, ms, me = merge_intervals(owner, spans.start[ix], spans.end[ix])
        union_ns = np.bincount(np.searchsorted(parents, g), weights=(me - ms).astype(np.float64),
                               minlength=parents.size)  # each server span's DB time, overlap once
        for parent, total_ns, count in zip(parents.tolist(), union_ns.tolist(), counts.tolist()):
            rec = by_row[parent]
            rec["children"]["store_read"] += total_ns / 1e6
            rec["db_client"] += count
    return out


def server_split(rec: dict[str, Any]) -> tuple[dict[str, float], float]:
    """One joined request's named server parts (ms) and the rest of its server span."""
    named = {c: rec["children"].get(c, 0.0) for c in NAMED_COMPONENTS}
    return named, max(rec["server_ms"] - sum(named.values()), 0.0)


def join_server_time(req: K6Requests, idx: np.ndarray, server: dict[str, dict[str, Any]]) -> ServerTimes:
    st = ServerTimes()
    for i in idx.tolist():
        if req.status[i] != 200 or not req.trace_id[i]:
            continue
        st.joinable += 1
        rec = server.get(req.trace_id[i])
        if rec is None:
            continue
        st.joined += 1
        st.services[rec.get("service") or "(no service.name)"] += 1
        st.db_named += rec.get("named_db", 0)
        st.db_client += rec.get("db_client", 0)
        client = float(req.duration_ms[i])
        srv = rec["server_ms"]
        st.server_ms.append(srv)
        st.client_ms.append(client)
        named, other = server_split(rec)
        for comp, ms in named.items():
            st.components_ms[comp] += ms
        st.components_ms["other_server"] += other
        st.components_ms["unexplained_client"] += max(client - srv, 0.0)
        if rec["cache_hit"] is not None:
            st.cache_lookups += 1
            st.cache_hits += rec["cache_hit"]
    return st


def server_section(st: ServerTimes) -> dict[str, Any]:
    total = sum(st.components_ms.values())
    srv = np.asarray(st.server_ms)
    return {
        "joined_requests": st.joined, "joinable_requests": st.joinable,
        "join_rate": _r(st.joined / st.joinable, 4) if st.joinable else None,
        "server_latency_ms": latency_stats(srv),
        "time_ms": {k: _r(v) for k, v in st.components_ms.items()},
        # Share of the client-observed time (summed over joined requests) each component explains.
        "shares": {k: (_r(v / total, 4) if total > 0 else None) for k, v in st.components_ms.items()},
        "cache_hit_ratio": _r(st.cache_hits / st.cache_lookups, 4) if st.cache_lookups else None,
        "services": dict(st.services.most_common()),
        "db_spans": {"store_read": st.db_named, "db_client": st.db_client},
    }


# --- resources ----------------------------------------------------------------------------------


def resource_section(idle: Sequence[tuple[float, float, float]], during: Sequence[tuple[float, float, float]],
                     cores: int, workers: int = 1) -> dict[str, Any]:
    """Samples are (seconds since scenario start, CPU % of one core summed over the tree, RSS bytes)."""

    def agg(samples):
        if not samples:
            return None
        cpu = np.asarray([s[1] for s in samples])
        rss = np.asarray([s[2] for s in samples]) / 2**20
        return {"cpu_percent_mean": _r(float(cpu.mean()), 1), "cpu_percent_peak": _r(float(cpu.max()), 1),
                "rss_mb_mean": _r(float(rss.mean()), 1), "rss_mb_peak": _r(float(rss.max()), 1)}

    i, d = agg(idle), agg(during)
    # One uvicorn worker runs Python on one core at a time (the GIL): its ceiling is 100% per worker.
    ceiling = 100.0 * max(1, min(workers, cores))
    out = {"idle": i, "during": d, "cpu_ceiling_percent": ceiling, "samples": len(during),
           "series": [[_r(t, 2), _r(c, 1), _r(r / 2**20, 1)] for t, c, r in during]}
    if i and d:
        out["impact"] = {"cpu_percent": _r(d["cpu_percent_mean"] - i["cpu_percent_mean"], 1),
                         "cpu_percent_peak": _r(d["cpu_percent_peak"] - i["cpu_percent_mean"], 1),
                         "rss_mb": _r(d["rss_mb_peak"] - i["rss_mb_mean"], 1)}
        out["cpu_saturated"] = bool(d["cpu_percent_peak"] >= CPU_SATURATION * ceiling)
    return out


# --- the report ---------------------------------------------------------------------------------


@dataclass
class ScenarioRun:
    """What the runner collected for one scenario."""

    name: str
    requests: K6Requests
    summary: dict[str, Any] | None = None
    mode: str = "burst"
    cache_mode: str | None = None
    vus: int | None = None
    k6_exit_code: int | None = None
    idle_samples: list[tuple[float, float, float]] = field(default_factory=list)
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    raw_output: str | None = None
    summary_path: str | None = None
    cache_preparation: dict[str, Any] | None = None
    started_at: float | None = None  # unix seconds when k6 started (samples' t is relative to it)
    k6_html: str | None = None  # k6's own web-dashboard report (sustained runs), relative path


def histogram(ms: np.ndarray, bins: int = 30) -> dict[str, list[float] | list[int]]:
    """Log-spaced latency histogram (ms): latency spans orders of magnitude under load."""
    pos = ms[ms > 0]
    if pos.size == 0:
        return {"edges_ms": [], "counts": []}
    lo, hi = float(pos.min()), float(pos.max())
    if hi <= lo:
        hi = lo * 1.01 + 1e-6
    edges = np.geomspace(lo, hi * 1.000001, bins + 1)
    counts, _ = np.histogram(pos, bins=edges)
    return {"edges_ms": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


TAIL_LABELS = {"cache_lookup": "cache lookup", "store_read": "DB read", "serialize": "serialization",
               "other_server": "other server time", "unexplained_client": "queueing (time the server does not explain)"}


def request_tail(req: K6Requests, server: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The slowest 5% of successful requests against the rest: split by the server-side parts
    (over the requests joined to a server span, else by duration and tags alone) and by tag."""
    ok = [i for i in range(len(req)) if req.status[i] == 200]
    joined = [i for i in ok if req.trace_id[i] and req.trace_id[i] in server]
    # Split by server parts only when (nearly) every request joined: a partial join would pick
    # the slow set from a different population than the durations.
    use_server = bool(joined) and len(joined) >= 0.9 * len(ok)
    rows = joined if use_server else ok
    parts: dict[str, list[float]] = {}
    if use_server:
        parts = {c: [] for c in COMPONENTS}
        for i in rows:
            named, other = server_split(server[req.trace_id[i]])
            for c, v in named.items():
                parts[c].append(v)
            parts["other_server"].append(other)
            # The rest of the client's time, so the parts add up to the request's duration.
            parts["unexplained_client"].append(float(req.duration_ms[i]) - sum(named.values()) - other)
        parts = {c: v for c, v in parts.items() if any(v)}
    attrs: dict[str, list[Any]] = {}
    for tag in (*BREAKDOWN_TAGS, "cache_mode"):
        vals = [req.tags[i].get(tag, "") for i in rows]
        if len(set(vals)) > 1:
            attrs[tag] = vals
    if use_server:
        hits = [server[req.trace_id[i]]["cache_hit"] for i in rows]
        if len({h for h in hits if h is not None}) > 1:
            attrs["cache_hit"] = ["yes" if h else ("no" if h is not None else "unknown") for h in hits]
    return slow_set([float(req.duration_ms[i]) for i in rows], parts, attrs, noun="requests", unit="ms",
                    part_labels=TAIL_LABELS)


def scenario_report(run: ScenarioRun, targets: dict[str, float], server: dict[str, dict[str, Any]],
                    cores: int, workers: int = 1) -> dict[str, Any]:
    req = run.requests
    stats = request_stats(req)
    checks = evaluate_targets(stats, targets)
    breakdown = {tag: tag_breakdown(req, tag, server) for tag in BREAKDOWN_TAGS}
    breakdown = {k: v for k, v in breakdown.items() if len(v) > 1}
    out: dict[str, Any] = {
        "name": run.name, "mode": run.mode, "cache_mode": run.cache_mode, "vus": run.vus,
        **stats,
        "targets": checks,
        "passed": all(c["met"] for c in checks.values()),
        "histogram": histogram(req.duration_ms),
        "by_tag": breakdown,
        "slowest": {tag: slowest(b) for tag, b in breakdown.items()},
        # The same question answered by server time (p50): the tag's own cost, free of queueing.
        "slowest_server": {tag: slowest(b, "p50", "server_latency_ms") for tag, b in breakdown.items()},
        "resources": resource_section(run.idle_samples, run.samples, cores, workers),
        "server": server_section(join_server_time(req, np.arange(len(req)), server)) if server else None,
        "tail": request_tail(req, server),
        "k6": {"exit_code": run.k6_exit_code, "raw_output": run.raw_output, "summary": run.summary_path,
               "html_report": run.k6_html,
               "html_report_note": None if run.k6_html else (
                   "k6's HTML report is written in sustained mode only: a burst is over before its "
                   "first aggregation period" if run.mode == "burst" else "k6 wrote no HTML report"),
               "summary_latency_ms": (run.summary or {}).get("http_req_duration"),
               "thresholds": (run.summary or {}).get("thresholds"),
               "skipped_lines": req.skipped_lines},
    }
    if run.cache_preparation is not None:
        out["cache_preparation"] = run.cache_preparation
    return out


def bottleneck(scenarios: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Which component of client-observed time dominates, over all scenarios with server spans."""
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for s in scenarios:
        for k, v in ((s.get("server") or {}).get("time_ms") or {}).items():
            totals[k] += v or 0.0
    total = sum(totals.values())
    saturated = [s["name"] for s in scenarios if (s.get("resources") or {}).get("cpu_saturated")]
    failing = [s["name"] for s in scenarios if not s.get("passed")]
    if total <= 0:
        return {"primary": None, "shares": None, "cpu_saturated_in": saturated, "failing_scenarios": failing,
                "evidence": ["no server spans were joined to the k6 requests: server-side attribution unavailable"]}
    shares = {k: v / total for k, v in totals.items()}
    primary = max(shares, key=shares.__getitem__)
    db = Counter()
    for sc in scenarios:
        db.update(((sc.get("server") or {}).get("db_spans")) or {})
    db_source = ("store.read" if db["store_read"] and not db["db_client"] else
                 "DB client spans" if db["db_client"] and not db["store_read"] else
                 "store.read and DB client spans" if db["db_client"] else "no DB spans")
    labels = {"cache_lookup": "cache lookup", "store_read": f"DB read ({db_source})",
              "serialize": "response serialization", "other_server": "other server time (framework, middleware)",
              "unexplained_client": "time the server does not explain (queueing before the app, saturation)"}
    evidence = [f"{labels[k]}: {shares[k]:.0%} of client-observed time" for k in
                sorted(shares, key=shares.__getitem__, reverse=True) if shares[k] >= 0.01]
    if saturated:
        evidence.append(f"API CPU saturated during: {', '.join(saturated)}")
    return {"primary": primary, "label": labels[primary], "shares": {k: _r(v, 4) for k, v in shares.items()},
            "cpu_saturated_in": saturated, "failing_scenarios": failing, "evidence": evidence,
            "db_read_from": db_source}


def recommendations(b: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    primary = b.get("primary")
    if primary == "unexplained_client":
        if b.get("cpu_saturated_in"):
            out.append("Requests queue while the API process is CPU-bound: run more workers "
                       "(`quantscope serve --workers N`, one per core) or move serialization off the hot path.")
        else:
            out.append("Requests wait outside the handler without CPU saturation: check the event loop for "
                       "blocking calls, the threadpool size and the client/network path.")
    elif primary == "store_read" and b.get("db_read_from") == "DB client spans":
        out.append("DB reads dominate (the API's DB client spans): look at the slowest statements and their "
                   "indexes, cache hot keys in front of the database, and size the connection pool to the "
                   "concurrency.")
    elif primary == "store_read":
        out.append("DB reads dominate: keep the (symbol, timeframe, ts DESC) index, raise the cache size so hot "
                   "keys stay cached, and size the connection pool to the concurrency.")
    elif primary == "serialize":
        out.append("Serialization dominates: cache pre-serialised payloads for more keys, or offer smaller "
                   "pages / compression for large limits.")
    elif primary == "other_server":
        out.append("Framework and middleware time dominates: trim per-request middleware and validation work.")
    elif primary == "cache_lookup":
        out.append("Cache lookups dominate: check lock contention in the cache.")
    for s in scenarios:
        for tag, advice in (("limit", "paginate or cap large pages"),
                            ("timeframe", "pre-warm the cache for it after each backfill")):
            srv = (s.get("slowest_server") or {}).get(tag)
            sl = srv or (s.get("slowest") or {}).get(tag)
            basis = "server p50" if srv else "client p95"
            if sl and sl.get("ratio") and sl["ratio"] >= 1.5:
                what = f"limit={sl['value']}" if tag == "limit" else f"timeframe {sl['value']}"
                than = f"limit={sl['fastest']}" if tag == "limit" else sl["fastest"]
                out.append(f"{what} is {sl['ratio']}x slower than {than} ({basis}) in {s['name']}: {advice}.")
    for name in b.get("failing_scenarios") or []:
        s = next(x for x in scenarios if x["name"] == name)
        missed = [k for k, c in s["targets"].items() if c["met"] is False]
        out.append(f"{name} misses {', '.join(missed)}: fix before Phase 3.")
    if not out:
        out.append("All targets met with headroom; no load-side action needed before Phase 3.")
    return out


def build_report(runs: Iterable[ScenarioRun], *, targets: dict[str, float], spans: SpanTable | None = None,
                 cores: int = 1, workers: int = 1, meta: dict[str, Any] | None = None,
                 rules: PhaseRules | None = None, api_service: str | None = None) -> dict[str, Any]:
    server = index_server_spans(spans, rules, api_service)
    runs = list(runs)
    scenarios = [scenario_report(r, targets, server, cores, workers) for r in runs]
    # One timeline of the API's CPU/RSS across the scenarios, in real seconds from the first.
    t0 = min((r.started_at for r in runs if r.started_at is not None), default=None)
    timeline = []
    for r, s in zip(runs, scenarios):
        if t0 is None or r.started_at is None:
            continue
        off = r.started_at - t0
        s["start_s"] = _r(off, 3)
        timeline += [{"t_s": _r(off + t, 3), "cpu_percent": _r(c, 1), "rss_mb": _r(m / 2**20, 1), "scenario": r.name}
                     for t, c, m in r.samples]
    b = bottleneck(scenarios)
    return {
        "schema_version": SCHEMA_VERSION,
        **(meta or {}),
        "targets": targets,
        "passed": all(s["passed"] for s in scenarios) if scenarios else False,
        "scenarios": scenarios,
        "bottleneck": b,
        "recommendations": recommendations(b, scenarios),
        "server_spans": {"read": len(spans) if spans is not None else 0, "api_requests_indexed": len(server)},
        "resources": {"samples": timeline,
                      "note": "API process tree: CPU % of one core summed over processes, RSS MiB"},
    }


def format_summary(report: dict[str, Any]) -> str:
    lines = ["Load Test Report", "=" * 80]
    for s in report["scenarios"]:
        lat = s["latency_ms"]
        res = (s.get("resources") or {}).get("during") or {}
        flag = "PASS" if s["passed"] else "FAIL"
        lines.append(f"[{flag}] {s['name']:<20} n={s['requests']:<5} avg={_ms(lat['avg'])} p50={_ms(lat['p50'])} "
                     f"p95={_ms(lat['p95'])} p99={_ms(lat['p99'])} max={_ms(lat['max'])} "
                     f"ok={_pct(s['success_rate'])} {s['throughput_rps'] or 0:.1f} req/s "
                     f"cpu peak {res.get('cpu_percent_peak', '-')}% rss peak {res.get('rss_mb_peak', '-')} MB")
        for tag, sl in (s.get("slowest") or {}).items():
            if sl:
                srv = (s.get("slowest_server") or {}).get(tag)
                extra = (f"; server p50: {srv['value']} {srv['p50_ms']:.1f} ms, {srv['ratio']}x {srv['fastest']}"
                         if srv else "")
                lines.append(f"       slowest {tag}: {sl['value']} (client p95 {sl['p95_ms']:.1f} ms, "
                             f"{sl['ratio']}x {sl['fastest']}{extra})")
        tail = s.get("tail") or {}
        if tail.get("status") == "tail":
            lines.append(f"       tail: {tail['headline']}")
    b = report["bottleneck"]
    lines.append("")
    lines.append(f"Bottleneck: {b.get('label') or 'unknown'}")
    lines += [f"  - {e}" for e in b.get("evidence", [])]
    lines.append("Recommendations:")
    lines += [f"  • {r}" for r in report["recommendations"]]
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"
