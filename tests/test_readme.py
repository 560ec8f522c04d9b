"""The README's commands, as a person types them, in a throwaway copy of the checkout.

Every command in a fenced ```bash block must be covered by a row of PLAN below (a new README
command with no row fails the suite): commands that finish run (with reduced options where the
row says so), commands that never exit are started, probed and stopped, and the rest say why they
cannot run here. Every `quantscope` command also parses against the real CLI.
"""

from __future__ import annotations

import os
import hashlib
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer.main

from quantscope.settings import PROJECT_ROOT
from quantscope.util.net import free_port as _free_port

README = PROJECT_ROOT / "README.md"
FAST = ["--symbols", "AAPL,MSFT,SPY", "--timeframes", "1h,1d", "--bars", "200", "--profile", "instant"]
FAST_VALIDATE = [*FAST, "--load-requests", "20", "--load-vus", "10", "--time-scale", "0.05"]


def readme_commands(text: str) -> list[str]:
    """Commands of the fenced bash blocks: comments dropped, `\\` continuations joined."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if not pending and (not line or line.startswith("#")):
                continue
            if pending:
                line = pending + " " + line
            if line.endswith("\\"):
                pending = line[:-1].strip()
                continue
            pending = ""
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


@dataclass(frozen=True)
class Row:
    pattern: str  # full match against the normalised command
    action: str  # run | serve | skip
    extra: tuple[str, ...] = ()  # appended (reduced options)
    why: str = ""  # skip: why it cannot run here; run/serve: what the reduction is
    probe: Callable[[int], str] | None = None  # serve: URL to GET on the substituted port
    port_flag: str = "--port"


PLAN: tuple[Row, ...] = (
    Row(r"\./scripts/run", "run", tuple(FAST_VALIDATE), "the full run is .ci/run's; here reduced"),
    Row(r"\./scripts/test", "skip", why="it is this test suite"),
    Row(r"\./scripts/run --strategy row --run-id before", "run", (*FAST, "--parts", "backfill"),
        "backfill part only, reduced"),
    Row(r"\./scripts/run --strategy copy --run-id after --compare-to reports/before", "run",
        (*FAST, "--parts", "backfill"), "backfill part only, reduced"),
    Row(r"\.venv/bin/quantscope backfill --symbols AAPL,MSFT --timeframes 1h,1d --strategy copy --concurrency 5",
        "run", ("--bars", "200")),
    Row(r"\.venv/bin/quantscope serve --port 8000", "serve", probe=lambda p: f"http://127.0.0.1:{p}/readyz"),
    Row(r"\.venv/bin/quantscope simulate --profile polygon-like --port 8600", "serve",
        probe=lambda p: f"http://127.0.0.1:{p}/_sim/stats"),
    Row(r"\.venv/bin/python scripts/phase_2_backfill_baseline\.py", "run", tuple(FAST)),
    Row(r"\.venv/bin/quantscope baseline --strategy (row|copy) --out (before|after)\.json", "run", tuple(FAST)),
    Row(r"\.venv/bin/quantscope compare before\.json after\.json", "run"),
    Row(r"\.venv/bin/quantscope whatif phase_2_backfill_baseline\.json --concurrency 12", "run"),
    Row(r"\.venv/bin/python bench/bench_write_strategies\.py --calibrate", "run", ("--strategies", "row,copy"),
        "two strategies"),
    Row(r"\.venv/bin/quantscope whatif phase_2_backfill_baseline\.json --strategy row --json", "run"),
    Row(r"\.venv/bin/quantscope whatif their_report\.json .*", "skip",
        why="needs your own report and traces; tests/test_whatif.py runs --traces and --limit on a hand-made trace"),
    Row(r"\.venv/bin/quantscope analyze backfill --traces \.quantscope/traces --out phase_2_backfill_baseline\.json",
        "run"),
    Row(r"\.venv/bin/quantscope analyze backfill --traces http://localhost:3200 .*", "skip",
        why="needs Tempo from the compose stack (no Docker engine here); Tempo reading is tested with recorded answers"),
    Row(r"\.venv/bin/quantscope analyze backfill --traces my-traces/ .*", "skip",
        why="needs your own traces; tests/test_foreign_traces.py runs the same options on examples/foreign_backfill"),
    Row(r"\.venv/bin/quantscope loadtest", "run", ("--requests", "20", "--vus", "10"), "20 requests per scenario"),
    Row(r"\.venv/bin/quantscope loadtest --scenario variable_limits --mode sustained --vus 50 --duration 30s", "run",
        ("--vus", "5", "--duration", "3s"), "5 VUs for 3 s"),
    Row(r"\.venv/bin/quantscope loadtest --api-url http://127\.0\.0\.1:8000", "skip",
        why="needs an API already running on :8000; tests/test_phase_2_validation.py drives --api-url style runs"),
    Row(r"\.venv/bin/python examples/foreign_api/app\.py .*", "skip",
        why="needs a DATABASE_URL; tests/test_foreign_api_load.py starts it on 127.0.0.2 with the embedded server"),
    Row(r"\.venv/bin/quantscope loadtest --api-url http://127\.0\.0\.1:8700 .*", "skip",
        why="needs the example API running; tests/test_foreign_api_load.py runs the same load test against it"),
    Row(r"BASE_URL=http://127\.0\.0\.1:8000 \.venv/bin/k6 run k6/scenarios/cached_symbol\.js", "skip",
        why="needs an API already running on :8000; tests/test_loadtest.py runs the same scripts with k6"),
    Row(r"\.venv/bin/pytest tests/test_phase_2_validation\.py::test_\w+ -v -s", "skip",
        why="the suite runs these seed tests itself"),
    Row(r"\.venv/bin/quantscope rto-rpo --out-dir \.", "run"),
    Row(r"\.venv/bin/quantscope rto-rpo --drills", "run", ("--only", "feature_computation_failure", "--time-scale", "0.05"),
        "one drill"),
    Row(r"\.venv/bin/quantscope scheduler", "serve", ("--poll", "1", "--bars", "100", "--profile", "instant"),
        probe=lambda p: f"http://127.0.0.1:{p}/metrics", port_flag="--metrics-port"),
    Row(r"curl -X POST .*/api/v1/admin/backfill/trigger\?force=true'", "skip",
        why="needs a running API with QUANTSCOPE_ADMIN_TOKEN; tests/test_scheduler.py posts the trigger"),
    Row(r"docker compose .*", "skip", why="no Docker engine here; tests/test_stack.py checks compose.yaml"),
    Row(r"cat > \.env .*", "skip", why="compose secrets, used only by docker compose"),
    Row(r"open http://localhost:3000", "skip", why="Grafana from the compose stack"),
)


def row_for(cmd: str) -> Row:
    hits = [r for r in PLAN if re.fullmatch(r.pattern, cmd)]
    assert len(hits) == 1, f"README command {cmd!r} matches {len(hits)} rows of tests/test_readme.py PLAN"
    return hits[0]


def test_every_readme_command_is_covered():
    cmds = readme_commands(README.read_text())
    assert len(cmds) >= 15, cmds
    for cmd in cmds:
        row_for(cmd)
    skipped = [(c, row_for(c).why) for c in cmds if row_for(c).action == "skip"]
    assert all(why for _, why in skipped), "each command the test cannot run says why"


def test_the_parse_check_can_fail():
    from quantscope.cli import app

    group = typer.main.get_command(app)
    for bad in (["backfill", "--nope"], ["analyze", "bakfill"], ["validate", "--strategy"]):
        with pytest.raises(Exception, match="No such|Missing|requires an argument"):
            _parse(group, bad)


def test_every_quantscope_command_parses_with_the_real_cli():
    from quantscope.cli import app

    group = typer.main.get_command(app)
    for cmd in readme_commands(README.read_text()):
        words = shlex.split(cmd)
        if words[0].endswith("bin/quantscope"):
            args = words[1:]
        elif words[:2] == ["./scripts/run"] or words[0] == "./scripts/run":
            args = ["validate", *words[1:]]
        else:
            continue
        _parse(group, args)


def _parse(group, args: list[str]):
    """Parse as the CLI would, without running: unknown options or commands raise UsageError.
    (typer ships its own click, so groups are recognised by what they do, not their class.)"""
    cmd = group
    name, parent = "quantscope", None
    while True:
        ctx = cmd.make_context(name, list(args), parent=parent)
        if not hasattr(cmd, "resolve_command"):
            return ctx
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


# --- running them ---------------------------------------------------------------------------------


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT_ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = PROJECT_ROOT / f.decode()
        if src.is_file():
            (dest / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f.decode())
    # The copy shares the installed venv. Its bootstrap must find a current stamp, or it would
    # reinstall quantscope into the shared venv pointing at this throwaway copy's src/.
    stamp = (PROJECT_ROOT / ".venv" / ".quantscope-installed").read_text().strip()
    want = hashlib.sha256((PROJECT_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    if stamp.rpartition("-")[0] != want:
        pytest.fail("pyproject.toml changed since the venv was installed: run ./scripts/bootstrap --test "
                    "(./scripts/test does) before this test")
    (dest / ".venv").symlink_to(PROJECT_ROOT / ".venv")


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if not (PROJECT_ROOT / ".venv" / "bin" / "quantscope").exists():
        pytest.fail("run the suite through ./scripts/test, which creates .venv")
    dest = tmp_path_factory.mktemp("readme") / "quantscope"
    dest.mkdir()
    _copy_checkout(dest)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))
           and k not in ("DATABASE_URL", "POLYGON_API_KEY")}
    env.update(PYTHONPATH=str(dest / "src"), COLUMNS="120")  # the copy's code, its own .quantscope/
    return dest, env


def _argv(cmd: str, row: Row) -> tuple[list[str], dict[str, str]]:
    words = shlex.split(cmd)
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return [*words, *row.extra], env


def _run(cmd: str, row: Row, cwd: Path, env: dict[str, str]) -> None:
    argv, extra_env = _argv(cmd, row)
    r = subprocess.run(argv, cwd=cwd, env={**env, **extra_env}, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{shlex.join(argv)} exited {r.returncode}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert "A shutdown MeterProvider" not in out, "a meter was taken after the providers shut down"


def _serve(cmd: str, row: Row, cwd: Path, env: dict[str, str]) -> None:
    argv, extra_env = _argv(cmd, row)
    port = _free_port()
    if row.port_flag in argv:
        argv[argv.index(row.port_flag) + 1] = str(port)
    else:
        argv += [row.port_flag, str(port)]
    proc = subprocess.Popen(argv, cwd=cwd, env={**env, **extra_env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"{shlex.join(argv)} exited {proc.returncode}: {proc.stdout.read()[-2000:]}"
            try:
                if httpx.get(row.probe(port), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{shlex.join(argv)} never answered {row.probe(port)}"
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    out = proc.stdout.read()
    assert "Traceback" not in out, out[-3000:]


def test_readme_commands_run_as_typed_in_a_fresh_copy(clone):
    """In README order, so `compare before.json after.json` finds the two baselines before it."""
    dest, env = clone
    ran = []
    for cmd in readme_commands(README.read_text()):
        row = row_for(cmd)
        if row.action == "run":
            _run(cmd, row, dest, env)
        elif row.action == "serve":
            _serve(cmd, row, dest, env)
        ran.append((row.action, cmd))
    assert sum(a != "skip" for a, _ in ran) >= 12, ran
    # Relative paths landed where a person expects them, in the copy, not in the checkout.
    runs = sorted((dest / "reports").iterdir())
    assert {"before", "after"} <= {p.name for p in runs}
    assert (dest / "reports" / "after" / "comparison.json").exists()
    assert (dest / "before.json").exists() and (dest / "after.json").exists()
    assert (dest / "RTO_RPO_DEFINITION.md").exists() and (dest / "rto_rpo_definition.json").exists()
    assert (dest / "reports" / "loadtest" / "load_test_report.json").exists()
    full = [p for p in runs if p.name not in ("before", "after", "loadtest")]
    assert full and all((full[0] / f).exists() for f in
                        ("phase_2_backfill_baseline.json", "load_test_report.json", "RTO_RPO_DEFINITION.md",
                         "rto_rpo_definition.json", "report.html"))
