"""`analyze backfill` end to end: files in, report and seed-style summary out, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import typer
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from quantscope.cli.analyze import analyze_app
from quantscope.analysis.spanset import SpanSet

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "phase_2_backfill_baseline.schema.json").read_text())


@pytest.fixture()
def app() -> typer.Typer:
    main = typer.Typer()
    main.add_typer(analyze_app, name="analyze")  # as the main CLI mounts it
    return main


def write_run(tmp_path: Path) -> list[Path]:
    s = SpanSet()
    run = s.run(0, 20, run_id="r-7", write_strategy="values", concurrency=2)
    for i, sym in enumerate(("AAPL", "MSFT")):
        j = s.job(run, 0, 10 + i, sym, "1h", records_inserted=500)
        f = s.span("marketdata.fetch", 0, 2, j, phase="api")
        s.span("GET /v2/aggs", 0.5, 1.5, f, service="quantscope-simulator")  # a second file
        s.span("store.write", 2, 10 + i, j, phase="db")
    docs = s.documents()
    paths = []
    for i, d in enumerate(docs):
        p = tmp_path / f"part{i}.jsonl"
        p.write_bytes(orjson.dumps(d) + b"\n")
        paths.append(p)
    return paths


def test_backfill_writes_a_valid_report_and_prints_the_summary(app: typer.Typer, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTSCOPE_GIT_REVISION", "deadbeef")
    srcs = write_run(tmp_path)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"simulator_profile": "polygon-like", "versions": {"k6": "1.1.0"}}))
    out = tmp_path / "out" / "phase_2_backfill_baseline.json"
    # A machine's write calibration (bench_write_strategies.py --calibrate writes one): values at
    # 100 µs a row against COPY's 10 µs, so the plan predicts what COPY buys this DB-bound run.
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"strategies": {"values": {"job_seconds": 0.005, "row_seconds": 1e-4},
                                              "copy": {"job_seconds": 0.005, "row_seconds": 1e-5}}}))
    res = CliRunner().invoke(app, ["analyze", "backfill", "--traces", *map(str, srcs), "--out", str(out),
                                   "--metadata-json", str(meta), "--calibration", str(cal)])
    assert res.exit_code == 0, res.output
    for line in ("Total Duration: 20.00s", "Completed Jobs: 2 / 2 (Success Rate: 100%)",
                 "DB Inserts: 17.0s (81%)    ← BOTTLENECK", "PRIMARY BOTTLENECK: Database inserts (81% of time)",
                 "Write with COPY instead of 'values'"):
        assert "".join(line.split()) in "".join(res.output.split()), line  # rich wraps long lines
    report = json.loads(out.read_text())
    assert not list(Draft202012Validator(SCHEMA).iter_errors(report))
    m = report["metadata"]
    assert (m["strategy"], m["concurrency"], m["simulator_profile"], m["git_revision"]) == \
        ("values", 2, "polygon-like", "deadbeef")
    assert m["versions"]["k6"] == "1.1.0" and "python" in m["versions"]
    assert report["run"]["run_id"] == "r-7" and len(report["diagnostics"]["sources"]) == 2
    copy = next(a for a in report["plan"]["actions"] if a["kind"] == "strategy")
    # 500 rows at 55 ms against 10 ms: the slower job's 9 s of DB becomes 1.6 s, so it ends at
    # 3.6 s instead of 11 s; the run span's 9 s after its jobs is not DB time and stays: 12.6 s.
    assert copy["value"] == "copy" and copy["predicted_wall_seconds"] == pytest.approx(12.64, abs=0.05)
    assert report["bottleneck"]["recommendations"][0].startswith("Write with COPY")


def test_errors_are_one_clear_line(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"resourceSpans": []}\n{"resourceSpans": [}\n')
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", "backfill", "--traces", str(bad), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert f"error: {bad}:2:" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r.json").exists()

    srcs = write_run(tmp_path)
    res = runner.invoke(app, ["analyze", "backfill", "--traces", str(srcs[0]), "--run-id", "nope",
                              "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "run 'nope' not found; runs present: r-7" in res.output

    meta = tmp_path / "m.json"
    meta.write_text("[1,")
    res = runner.invoke(app, ["analyze", "backfill", "--traces", str(srcs[0]), "--metadata-json", str(meta)])
    assert res.exit_code == 2 and "m.json:1:" in res.output


def test_lenient_flag(app: typer.Typer, tmp_path: Path) -> None:
    srcs = write_run(tmp_path)
    with srcs[0].open("ab") as fh:
        fh.write(b'{"resourceSpans": [{"scopeSp\n')
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", "backfill", "--traces", str(srcs[0]), "--traces", str(srcs[1]),
                                   "--lenient", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["diagnostics"]["malformed_lines"] == 1
    assert "note:" in res.output and "part0.jsonl:2: skipped" in res.output
