"""The reader's typed fast path gives exactly the general path's table, on every shape it meets.

conftest's autouse check already compares both on every file any test reads; these cases are
the shapes chosen to hit each branch of the fast path (and each reason to leave it).
"""

from __future__ import annotations

import base64
import gzip
import json
import sys
from pathlib import Path

import orjson
import pytest

from conftest import assert_same_outcome, read_both_ways, read_outcome
from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.traces import SpanTableBuilder, read_otlp_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_analysis  # noqa: E402  (the bench's own realistic generator)

TRACE = "0af7651916cd43dd8448eb211c80319c"


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def kv(k, value):
    return {"key": k, "value": value}


def span(sid: str, parent: str = "", **extra) -> dict:
    return {"traceId": TRACE, "spanId": sid, "parentSpanId": parent, "name": "work",
            "startTimeUnixNano": "1000", "endTimeUnixNano": "2000", **extra}


def doc(*spans: dict, resource: dict | None = None) -> dict:
    return {"resourceSpans": [{"resource": resource or {"attributes": [kv("service.name", {"stringValue": "svc"})]},
                               "scopeSpans": [{"spans": list(spans)}]}]}


def write(path: Path, docs: list, gz: bool = False) -> Path:
    data = b"".join(orjson.dumps(d) + b"\n" for d in docs)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def same(path: Path, keep=(), strict=True):
    return assert_same_outcome(*read_both_ways(path, keep=keep, strict=strict))


def test_the_fast_path_is_taken_for_collector_lines(tmp_path: Path) -> None:
    p = write(tmp_path / "t.jsonl", [doc(span("0000000000000001"))])
    b = SpanTableBuilder()
    assert b.add_line(p.read_bytes().splitlines()[0]) == 1  # decoded as structs, not handed back
    assert b.add_line(b'{"trace": {"batches": []}}') is None  # a wrapper: the general path's job
    assert b.add_line(b"[1, 2]") is None


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("foreign", [False, True])
def test_bench_runs_read_identically(tmp_path: Path, gz: bool, foreign: bool) -> None:
    p = tmp_path / ("run.jsonl.gz" if gz else "run.jsonl")
    bench_analysis.generate(p, 3_000, gz=gz, foreign=foreign)
    t = same(p, keep=["ticker", "interval", "acme.attempt"])
    assert len(t) > 2_900 and t.stats["orphan_spans"] == 0


def test_ids_enums_and_old_field_names(tmp_path: Path) -> None:
    s = SpanSet()
    run = s.run(0, 20, run_id="r-1")
    job = s.job(run, 0, 10, symbol="AAPL", timeframe="5m")
    s.span("GET", 1, 5, job, service="quantscope-simulator")
    s.job(run, 10, 20, symbol="MSFT", timeframe="1h", status="failed", message="boom")
    tempo = json.loads(json.dumps(s.documents()))
    for d in tempo:
        rs = d["resourceSpans"][0]
        rs["instrumentationLibrarySpans"] = rs.pop("scopeSpans")
        for sp in rs["instrumentationLibrarySpans"][0]["spans"]:
            for k in ("traceId", "spanId", "parentSpanId"):
                if sp[k]:
                    sp[k] = b64(sp[k])
            sp["kind"] = "SPAN_KIND_SERVER"
            if sp.get("status"):
                sp["status"]["code"] = "STATUS_CODE_ERROR"
    batches = [{"batches": [d["resourceSpans"][0]]} for d in tempo]
    t = same(write(tmp_path / "tempo.jsonl", batches + s.documents()))
    assert len(t) == 4 and t.stats["duplicate_spans"] == 4 and (t.kind == 2).sum() == 4


def test_values_the_fast_path_reads(tmp_path: Path) -> None:
    attrs = [
        kv("quantscope.phase", {"stringValue": "custom"}),
        kv("quantscope.records", {"intValue": 7}),  # a JSON number, not the usual string
        kv("quantscope.ratio", {"doubleValue": "0.5"}),
        kv("quantscope.flag", {"boolValue": True}),
        kv("quantscope.list", {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}}),
        kv("quantscope.map", {"kvlistValue": {"values": [kv("a", {"boolValue": False})]}}),
        kv("http.response.status_code", {"stringValue": "429"}),
        kv("url.full", {"stringValue": "https://api.polygon.io/v2/x?apiKey=SECRET123&limit=5"}),
        kv("ticker", {"stringValue": "AAPL"}),
        kv("db.system", {"stringValue": "postgresql"}),
        kv("empty", None),
    ]
    spans = [
        span("0000000000000001", attributes=attrs, kind=3, status={"code": 2, "message": "Bearer abcdefghijklmnop"}),
        span("0000000000000002", "0000000000000001", attributes=[kv("http.status_code", {"intValue": 429})]),
        span("0000000000000003", "0000000000000001", attributes=[kv("http.status_code", {"doubleValue": 429.0})]),
        span("0000000000000004", "0000000000000001", kind=None, status=None, attributes=None,
             startTimeUnixNano=1500, endTimeUnixNano=1400),
        span("5", "1", name="https://api.polygon.io/v2/aggs?apiKey=SECRET123"),  # leading zeros stripped
    ]
    t = same(write(tmp_path / "v.jsonl", [doc(*spans)]), keep=["ticker", "url.full"])
    assert "SECRET123" not in repr(t.attrs) + repr(t.names) + repr(t.messages)
    assert t.phase_names[t.phase[0]] == "custom" and t.stats["negative_duration_spans"] == 1
    assert list(t.conv[:3]) == [1 | 2 | 8, 8, 0]


@pytest.mark.parametrize(
    "bad",
    [
        span("0000000000000000"),  # an all-zero id
        span("00000000 0000001"),  # a space inside: fromhex would skip it
        span("0x00000000000001"),  # int(…, 16) reads this; bytes.fromhex does not
        span("0000000000000001", startTimeUnixNano="soon"),
        span("0000000000000001", startTimeUnixNano=1.5e3),
        span("0000000000000001", kind=True),
        span("0000000000000001", status="ok"),
        span("0000000000000001", attributes=[kv("quantscope.phase", "api")]),  # value not an AnyValue
        span("0000000000000001", attributes=[kv("http.status_code", {"intValue": "many"})]),
        span("0000000000000001", traceId="zz"),
        {"spanId": "0000000000000001", "name": "x"},
    ],
)
@pytest.mark.parametrize("strict", [True, False])
def test_unusual_spans_get_the_general_answer(tmp_path: Path, bad: dict, strict: bool) -> None:
    good = doc(span("00000000000000a1"), span("00000000000000a2", "00000000000000a1"))
    same(write(tmp_path / "u.jsonl", [good, doc(span("00000000000000b1"), bad), good]), strict=strict)


def test_pretty_documents_and_noise_lines(tmp_path: Path) -> None:
    (tmp_path / "pretty.json").write_text(json.dumps(doc(span("0000000000000001")), indent=2))
    same(tmp_path / "pretty.json")
    mixed = write(tmp_path / "m.jsonl", [{"resourceMetrics": []}, doc(span("0000000000000001")), {}])
    with mixed.open("ab") as fh:
        fh.write(b"\n   \n{broken\n")
    assert "invalid JSON" in same(mixed)
    t = same(mixed, strict=False)
    assert t.stats["malformed_lines"] == 1 and t.stats["non_trace_documents"] == 1


def test_a_line_that_fails_half_way_leaves_no_rows(tmp_path: Path) -> None:
    p = write(tmp_path / "h.jsonl", [doc(span("0000000000000001"), span("0000000000000000"))])
    b = SpanTableBuilder()
    read_otlp_file(p, b, strict=False)
    assert len(b) == 0 and b.stats["malformed_lines"] == 1


def test_gzip_members_truncation_and_no_final_newline(tmp_path: Path) -> None:
    a = gzip.compress(orjson.dumps(doc(span("0000000000000001"))) + b"\n")
    b = gzip.compress(orjson.dumps(doc(span("0000000000000002"))))  # no newline at the end
    (tmp_path / "cat.jsonl.gz").write_bytes(a + b)  # what `cat a.gz b.gz` gives
    assert len(same(tmp_path / "cat.jsonl.gz")) == 2
    (tmp_path / "cut.jsonl.gz").write_bytes((a + b)[:-12])
    assert "cut.jsonl.gz: cannot read: compressed file ended" in same(tmp_path / "cut.jsonl.gz")
    (tmp_path / "empty.jsonl.gz").write_bytes(b"")
    assert len(same(tmp_path / "empty.jsonl.gz")) == 0


# --- a large file read in two halves by two processes ---


def assert_split_same(path: Path, keep=(), strict: bool = True):
    """Read in two halves (two processes) and in one: the same outcome."""
    return assert_same_outcome(*(read_outcome(path, read_otlp_file, keep, strict=strict, split_min_bytes=split)
                                 for split in (0, None)))


@pytest.mark.parametrize("gz", [False, True])
def test_two_halves_read_as_one(tmp_path: Path, gz: bool) -> None:
    p = tmp_path / ("run.jsonl.gz" if gz else "run.jsonl")
    bench_analysis.generate(p, 6_000, gz=gz, foreign=True)  # new names, traces and resources in both halves
    t = assert_split_same(p, keep=["ticker", "interval"])
    assert len(t) > 5_900


@pytest.mark.parametrize("strict", [True, False])
def test_a_second_half_the_child_cannot_read_is_read_here(tmp_path: Path, strict: bool) -> None:
    good = [doc(span(f"{i:016x}", name=f"n{i % 7}")) for i in range(1, 40)]
    jaeger = {"data": [{"traceID": TRACE[:16], "spans": [{"traceID": TRACE[:16], "spanID": "00000000000000ff",
                                                             "operationName": "j", "startTime": 1, "duration": 2}]}]}
    p = write(tmp_path / "mixed.jsonl", good + [jaeger] + good[:5])
    with p.open("ab") as fh:
        fh.write(b"{not json\n")  # a bad line in the second half: its line number must be the file's
    out = assert_split_same(p, strict=strict)
    if strict:
        assert "mixed.jsonl:46:" in out
    else:
        assert out.stats["malformed_lines"] == 1 and "mixed.jsonl:46:" in out.warnings[0]


def test_line_halves_cover_every_line_once(tmp_path: Path) -> None:
    from quantscope.analysis.linereader import iter_lines

    rng = __import__("random").Random(5)
    for trial in range(40):
        lines = [b"x" * rng.randint(0, 30) for _ in range(rng.randint(0, 12))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        for gz in (False, True):
            p = tmp_path / f"l{trial}.jsonl{'.gz' if gz else ''}"
            p.write_bytes(gzip.compress(data) if gz else data)
            whole = list(iter_lines(p))
            assert whole == data.split(b"\n")[: len(whole)]
            for m in range(len(data) + 2):
                assert list(iter_lines(p, until=m)) + list(iter_lines(p, after=m)) == whole, (data, m)


@pytest.mark.parametrize("chunk,gz_chunk", [(1, 1), (5, 2), (64, 7)])
def test_lines_across_chunk_and_member_boundaries(tmp_path: Path, monkeypatch, chunk: int, gz_chunk: int) -> None:
    """Tiny read and inflate sizes, so every line spans chunks, inflate stops at its output cap
    (max_length) with input left over, and gzip members end in the middle of a read."""
    from quantscope.analysis import linereader

    monkeypatch.setattr(linereader, "CHUNK", chunk)
    monkeypatch.setattr(linereader, "_GZ_CHUNK", gz_chunk)
    rng = __import__("random").Random(chunk)
    for trial in range(12):
        lines = [bytes(rng.choice(b"ab{}") for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 9))]
        data = b"\n".join(lines) + (b"\n" if trial % 2 else b"")
        cuts = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))
        members = b"".join(gzip.compress(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)]))
        for name, raw in (("p.jsonl", data), ("p.jsonl.gz", members)):
            p = tmp_path / f"{trial}-{name}"
            p.write_bytes(raw)
            whole = list(linereader.iter_lines(p))
            assert whole == (data[:-1] if data.endswith(b"\n") else data).split(b"\n") or (not data and whole == [])
            for m in range(0, len(data) + 2, 3):
                assert list(linereader.iter_lines(p, until=m)) + list(linereader.iter_lines(p, after=m)) == whole


def test_the_second_process_really_reads_its_half(tmp_path: Path) -> None:
    from quantscope.analysis.split_read import SecondHalf

    p = tmp_path / "run.jsonl"
    bench_analysis.generate(p, 3_000, gz=False)
    half = p.stat().st_size // 2
    with SecondHalf(p, half, []) as child:
        state = child.result()
    assert state is not None, "the child process gave up on plain OTLP lines"
    b = SpanTableBuilder()
    assert b.merge(state) > 1_000 and len(b) == len(state["columns"]["_start"]) // 8
