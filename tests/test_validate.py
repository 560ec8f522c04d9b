"""`quantscope validate` end to end on embedded defaults (reduced: few symbols, short load, scaled
drills), its JSON outputs against the published schemas, --compare-to, and report.html in headless
Chromium: charts render, no console errors, no network request leaves the machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from quantscope.settings import PROJECT_ROOT

SCHEMAS = PROJECT_ROOT / "schemas"
DELIVERABLES = {"phase_2_backfill_baseline.json", "load_test_report.json", "RTO_RPO_DEFINITION.md",
                "rto_rpo_definition.json", "report.html"}
REDUCED = ["--symbols", "AAPL,MSFT,GOOGL,SPY", "--timeframes", "1h,1d", "--bars", "300", "--profile", "instant",
           "--load-requests", "40", "--load-vus", "20", "--time-scale", "0.05"]


def _validate(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_")) and k != "DATABASE_URL"}
    env.update(QUANTSCOPE_HOME=str(home), PYTHONPATH=str(PROJECT_ROOT / "src"), COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "quantscope", "validate", *args],
                          capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    home = tmp_path_factory.mktemp("validate-home")  # embedded PostgreSQL of its own
    # As a person types it: no --out (the default, relative reports/), from another directory
    # than the project, so k6 (which runs in k6/) and the API get paths that only resolve here.
    before = _validate(tmp, home, *REDUCED, "--strategy", "row", "--concurrency", "1", "--run-id", "before")
    assert before.returncode == 0, before.stdout[-3000:] + before.stderr[-3000:]
    after = _validate(tmp, home, *REDUCED, "--parts", "backfill,load", "--strategy", "copy", "--concurrency", "4",
                      "--out", "reports", "--run-id", "after", "--compare-to", "reports/before")
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
    return tmp / "reports" / "before", tmp / "reports" / "after", before.stdout, after.stdout


def _schema(name: str):
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()),
                                           format_checker=jsonschema.FormatChecker())


def test_a_run_writes_every_deliverable_and_they_validate(runs):
    before, _, stdout, _ = runs
    names = {p.name for p in before.iterdir()}
    assert DELIVERABLES <= names, "the five deliverables under the default reports/<run-id>/"
    assert {"phase_2_backfill_baseline.json", "load_test_report.json", "RTO_RPO_DEFINITION.md",
            "rto_rpo_definition.json", "report.html", "validate_run.json", "traces", "k6"} <= names
    _schema("phase_2_backfill_baseline.schema.json").validate(json.loads((before / "phase_2_backfill_baseline.json").read_text()))
    _schema("load_test_report.schema.json").validate(json.loads((before / "load_test_report.json").read_text()))
    _schema("rto_rpo_definition.schema.json").validate(json.loads((before / "rto_rpo_definition.json").read_text()))
    assert list((before / "k6").glob("*.k6.json.gz")), "k6 raw output is kept, gzipped"
    assert list((before / "traces").glob("*.jsonl")), "the traces are kept"
    baseline = json.loads((before / "phase_2_backfill_baseline.json").read_text())
    assert baseline["totals"]["jobs_total"] == 8 and baseline["metadata"]["strategy"] == "row"
    rto = json.loads((before / "rto_rpo_definition.json").read_text())
    assert rto["drills_run"] and all(r["drill"]["met"] for r in rto["rto"])
    # The closing summary answers "what is the bottleneck and what next" in a few lines.
    verdict = stdout.split("Verdict")[-1]
    assert "bottleneck" in verdict.lower() and "Next:" in verdict


def test_compare_to_shows_the_change_with_its_significance(runs):
    before, after, _, stdout = runs
    comp = json.loads((after / "comparison.json").read_text())
    assert comp["before"]["metadata"]["strategy"] == "row" and comp["after"]["metadata"]["strategy"] == "copy"
    assert "speedup" in json.dumps(comp)
    html = (after / "report.html").read_text()
    assert 'id="compare"' in html and "before" in html.lower()
    assert not (after / "rto_rpo_definition.json").exists(), "--parts limits what runs"
    run = json.loads((after / "validate_run.json").read_text())
    assert run["compare_to"] == str(before) and run["errors"] == {}


def test_bad_options_fail_clearly(tmp_path):
    home = tmp_path / "home"
    for args, msg in ((["--parts", "nope"], "unknown part"), (["--api-url", "http://example.com"], "127.0.0.1"),
                      (["--compare-to", str(tmp_path)], "no earlier validate run"),
                      (["--profile", "warp"], "unknown profile"),
                      (["--run-id", "../escape"], "it names a directory")):
        r = _validate(tmp_path, home, *args)
        out = " ".join((r.stdout + r.stderr).split())
        assert r.returncode == 2 and msg in out and "Traceback" not in out, (args, out[-500:])


# --- report.html in headless Chromium -------------------------------------------------------------

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.fail("Chromium is needed (scripts/bootstrap installs Debian's chromium)")
    return exe


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--no-first-run", "--disable-default-apps", "--hide-scrollbars"]


def _load(page: Path, tmp: Path, *extra: str) -> tuple[str, str, list[str]]:
    """DOM after load, Chromium's stderr (console messages), and the URLs the page itself requested."""
    netlog = tmp / f"{page.stem}.netlog.json"
    r = subprocess.run([_chromium(), *FLAGS, "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}",
                        "--user-data-dir=" + str(tmp / "profile"), *extra, "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    log = json.loads(netlog.read_text())
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = [e["params"]["url"] for e in log["events"]
            if types.get(e["type"]) == "URL_REQUEST_START_JOB" and (e.get("params") or {}).get("url")
            # Chromium's own background fetches carry no page origin.
            and e["params"].get("initiator") != "not an origin"]
    return r.stdout, r.stderr, urls


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]


def test_the_network_and_console_checks_can_fail(tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png">'
                    '<script>console.error("boom")</script></body></html>')
    _, stderr, urls = _load(page, tmp_path)
    assert any(u.startswith("http://127.0.0.1:9/") for u in urls), urls
    assert _console_errors(stderr), "a console error must be visible to the check"


def test_report_renders_charts_offline_without_console_errors(runs, tmp_path):
    before, after, _, _ = runs
    for run in (before, after):
        dom, stderr, urls = _load(run / "report.html", tmp_path)
        assert urls == [], f"the report made network requests: {urls}"
        assert _console_errors(stderr) == []
        assert dom.count("<svg") >= 6, "the charts are in the rendered page"
        assert re.search(r"<h2[^>]*>.*Verdict", dom) or "Verdict" in dom
        for section in ("backfill", "load", "objectives"):
            assert f'id="{section}"' in dom
        # The seed's questions: which limit / timeframe is slowest, and CPU/RSS over time.
        assert "Response time by limit (slowest:" in dom and "Response time by timeframe (slowest:" in dom
        assert "CPU and memory" in dom


def test_report_screenshot(runs, tmp_path):
    """Kept as a picture of the page (tests/artifacts when QUANTSCOPE_KEEP_SCREENSHOTS is set), and
    checked: a real PNG of the page, far richer than a blank page shot the same way."""
    before, _, _, _ = runs
    shot, blank = tmp_path / "report.png", tmp_path / "blank.png"
    (tmp_path / "blank.html").write_text("<!DOCTYPE html><html><body></body></html>")
    for page, out in ((before / "report.html", shot), (tmp_path / "blank.html", blank)):
        r = subprocess.run([_chromium(), *FLAGS, "--user-data-dir=" + str(tmp_path / "profile"),
                            "--window-size=1280,4000", f"--screenshot={out}", page.as_uri()],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and out.exists(), r.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 4000)
    assert len(data) > 8 * len(blank.read_bytes()), "the screenshot is nearly blank"
    keep = os.environ.get("QUANTSCOPE_KEEP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")


def test_report_html_reads_only_keys_the_schemas_define(runs):
    """The renderer against the JSON Schemas: every key it looks up in the reports of a real run
    (baseline, load, RTO/RPO, the comparison, the load report before, validate_run.json) must be
    defined, and what those reports hold must show."""
    from quantscope.analysis.report import render_report, verdict_lines
    from report_contract import log_of, track, undefined

    before, after, _, _ = runs

    def doc(d: Path, name: str):
        raw = json.loads((d / f"{name}.json").read_text())
        _schema(f"{'comparison' if name == 'comparison' else name}.schema.json").validate(raw)
        return track(raw)

    docs = {"phase_2_backfill_baseline": doc(before, "phase_2_backfill_baseline"),
            "load_test_report": doc(before, "load_test_report"),
            "rto_rpo_definition": doc(before, "rto_rpo_definition"),
            "validate_run": doc(before, "validate_run")}
    kw = dict(baseline=docs["phase_2_backfill_baseline"], load=docs["load_test_report"],
              rto_rpo=docs["rto_rpo_definition"])
    html = render_report(**kw, run=docs["validate_run"])
    verdict_lines(**kw)
    later = {"phase_2_backfill_baseline": doc(after, "phase_2_backfill_baseline"),
             "load_test_report": doc(after, "load_test_report"), "comparison": doc(after, "comparison"),
             "validate_run": doc(after, "validate_run")}
    render_report(baseline=later["phase_2_backfill_baseline"], load=later["load_test_report"],
                  comparison=later["comparison"], load_before=docs["load_test_report"], run=later["validate_run"])
    verdict_lines(later["phase_2_backfill_baseline"], later["load_test_report"], None, later["comparison"])
    problems = {}
    for tag, group in (("before", docs), ("after", later)):
        for name, d in group.items():
            problems[f"{tag}/{name}"] = undefined(json.loads((SCHEMAS / f"{name}.schema.json").read_text()), log_of(d))
    assert problems == {k: [] for k in problems}, problems
    load = json.loads((before / "load_test_report.json").read_text())
    assert load["environment"]["k6"] and f"k6 {load['environment']['k6']}" in html, "the k6 version renders"
    assert "started by quantscope loadtest" in html, "the API URL renders"


def test_the_key_check_can_fail():
    from report_contract import track, undefined

    schema = json.loads((SCHEMAS / "load_test_report.schema.json").read_text())
    d = track({"scenarios": [{"name": "x"}]})
    d.get("api")  # what the renderer used to read
    d["scenarios"][0].get("response_time_ms")
    d["scenarios"][0].get("latency_ms")
    assert undefined(schema, d._log) == ["api", "scenarios/[]/response_time_ms"]
