"""OTLP JSON file reading: formats, id encodings, malformed input."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import orjson
import pytest

from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.traces import (
    STATUS_ERROR,
    SpanTableBuilder,
    TraceSourceError,
    classify_source,
    normalize_trace_id,
    read_spans,
)


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def sample() -> SpanSet:
    s = SpanSet()
    run = s.run(0, 20, run_id="r-1", write_strategy="copy")
    job = s.job(run, 0, 10, symbol="AAPL", timeframe="5m", records_inserted=100)
    f = s.span("marketdata.fetch", 0, 6, job, phase="api")
    s.span("GET", 1, 5, f, service="quantscope-simulator")
    s.job(run, 10, 20, symbol="MSFT", timeframe="1h", status="failed", message="boom")
    return s


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def test_jsonl_file_is_read_into_typed_columns(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "traces.jsonl", sample().documents())
    t = read_spans([p])
    assert len(t) == 5
    assert t.start.dtype.name == "int64" and t.span_id.dtype.name == "uint64"
    spans = {sp.name + sp.attributes.get("quantscope.symbol", ""): sp for sp in t}
    assert spans["backfill.jobAAPL"].attributes["quantscope.records_inserted"] == 100
    assert spans["backfill.jobMSFT"].status == STATUS_ERROR
    assert spans["GET"].service == "quantscope-simulator"
    assert spans["backfill.run"].attributes == {"quantscope.run_id": "r-1", "quantscope.write_strategy": "copy"}
    job = [i for i in range(len(t)) if t.names[t.name[i]] == "backfill.job"][0]
    assert t.parent_row[job] == [i for i in range(len(t)) if t.names[t.name[i]] == "backfill.run"][0]
    assert t.stats["orphan_spans"] == 0


def test_whole_documents_gzip_and_folders(tmp_path: Path) -> None:
    docs = sample().documents()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pretty.json").write_text(json.dumps({"resourceSpans": docs[0]["resourceSpans"]}, indent=2))
    with gzip.open(tmp_path / "a" / "rest.jsonl.gz", "wb") as fh:
        for d in docs[1:]:
            fh.write(orjson.dumps(d) + b"\n")
    (tmp_path / "a" / "notes.txt").write_text("not a trace file")
    (tmp_path / "a" / "metrics.jsonl").write_bytes(orjson.dumps({"resourceMetrics": []}) + b"\n")
    t = read_spans([tmp_path / "a"])
    assert len(t) == 5
    assert t.stats["non_trace_documents"] == 1


def test_base64_ids_and_enum_names_as_tempo_returns_them() -> None:
    hex_docs = sample().documents()
    tempo = json.loads(json.dumps(hex_docs))
    for d in tempo:
        rs = d["resourceSpans"][0]
        rs["instrumentationLibrarySpans"] = rs.pop("scopeSpans")  # older Tempo
        for sp in rs["instrumentationLibrarySpans"][0]["spans"]:
            for k in ("traceId", "spanId", "parentSpanId"):
                if sp[k]:
                    sp[k] = b64(sp[k])
            sp["kind"] = "SPAN_KIND_INTERNAL"
            if sp["status"]:
                sp["status"]["code"] = "STATUS_CODE_ERROR"
    b = SpanTableBuilder()
    b.add_document({"batches": [d["resourceSpans"][0] for d in tempo]}, "tempo")
    t = b.finish()
    ref = sample().table()
    assert sorted(t) == sorted(ref)


def test_the_same_span_in_hex_and_base64_is_one_span() -> None:
    docs = sample().documents()
    again = json.loads(json.dumps(docs))
    for d in again:
        for sp in d["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            sp["traceId"], sp["spanId"] = b64(sp["traceId"]), b64(sp["spanId"])
    b = SpanTableBuilder()
    b.add_document(docs, "files")
    b.add_document(again, "tempo")
    t = b.finish()
    assert len(t) == 5 and t.stats["duplicate_spans"] == 5


def test_trace_id_forms() -> None:
    h = "0af7651916cd43dd8448eb211c80319c"
    assert normalize_trace_id(h.upper()) == h
    assert normalize_trace_id(b64(h)) == h
    assert normalize_trace_id("7651916cd43dd8448eb211c80319c") == "000" + "7651916cd43dd8448eb211c80319c"
    with pytest.raises(ValueError):
        normalize_trace_id("not-an-id!")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"resourceSpans": []}\n{"resourceSpans": [}\n', r"bad\.jsonl:2:\d+: invalid JSON"),
        (b'{"resourceSpans": []}\n\n{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "name": "x"}]}]}]}\n',
         r"bad\.jsonl:3: span #1: missing field 'spanId'"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "0000000000000001", "name": "x", '
         b'"startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}\n', r"bad\.jsonl:1: span #1: .*traceId 'zz'"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0af7651916cd43dd8448eb211c80319c", '
         b'"spanId": "0000000000000001", "name": "x", "startTimeUnixNano": "soon", "endTimeUnixNano": "2"}]}]}]}\n',
         r"bad\.jsonl:1: span #1: ValueError"),
        (b'{"data": [{"traceID": "abc", "spans": [{"spanID": "1"}]}]}\n', r"bad\.jsonl:1: Jaeger JSON: .*missing field"),
        (b'{"hello": "world"}\n', r"bad\.jsonl:1: not OTLP trace JSON"),
        (b'[1, 2]\n', r"bad\.jsonl:1: expected a JSON object"),
        (b'{\n  "resourceSpans": [\n    {"scopeSpans": [}\n  ]\n}\n', r"bad\.jsonl:3:\d+: invalid JSON"),
        (b'\xff\xfe{"resourceSpans": []}\n', r"bad\.jsonl:1:\d+: invalid JSON"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path: Path, content: bytes, expected: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(TraceSourceError, match=expected):
        read_spans([p])


def test_broken_gzip_and_missing_paths(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(b"definitely not gzip")
    with pytest.raises(TraceSourceError, match=r"t\.jsonl\.gz: cannot read"):
        read_spans([p])
    with pytest.raises(TraceSourceError, match="no such file"):
        read_spans([tmp_path / "nope.jsonl"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceSourceError, match="no trace files"):
        read_spans([tmp_path / "empty"])


def test_lenient_mode_skips_and_counts_bad_lines(tmp_path: Path) -> None:
    docs = sample().documents()
    lines = [orjson.dumps(d) for d in docs]
    lines.insert(1, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"bad": 1}]}]}]}')
    lines.append(b'{"resourceSpans": [{"scopeSp')  # a collector killed mid-write
    p = tmp_path / "t.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(TraceSourceError):
        read_spans([p])
    t = read_spans([p], strict=False)
    assert len(t) == 5
    assert t.stats["malformed_lines"] == 2
    assert any("t.jsonl:2" in w for w in t.warnings)


def test_a_bad_document_leaves_no_partial_rows() -> None:
    b = SpanTableBuilder()
    good = sample().documents()
    bad = json.loads(json.dumps(good[0]))
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][-1]["endTimeUnixNano"] = "later"
    with pytest.raises(TraceSourceError, match=r"span #\d+"):
        b.add_document(bad, "x")
    b.add_document(good, "y")
    t = b.finish()
    assert len(t) == 5 and len(t.attrs) == 3


def test_source_classification() -> None:
    assert classify_source("traces/") == ("file", "traces/")
    assert classify_source("http://tempo:3200") == ("tempo", "http://tempo:3200")
    assert classify_source("http://j:16686/api/v3/traces?query.service_name=x")[0] == "jaeger"
    assert classify_source("jaeger+http://j:16686") == ("jaeger", "http://j:16686/api/v3/traces")
    assert classify_source("tempo+https://t/prefix") == ("tempo", "https://t/prefix")


def test_lenient_mode_survives_a_broken_first_line(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_bytes(b'{"resourceSpans": [{"scopeSp\n' + b"".join(orjson.dumps(d) + b"\n" for d in sample().documents()))
    with pytest.raises(TraceSourceError, match=r"t\.jsonl:\d+:\d+: invalid JSON"):
        read_spans([p])
    t = read_spans([p], strict=False)
    assert len(t) == 5 and t.stats["malformed_lines"] == 1


def test_duplicates_and_parents_match_a_lookup_by_hand() -> None:
    """finish(): the first of each (trace, span id) is kept, and a parent is the kept span with
    that id in the same trace; span ids shared across traces, repeated, missing or pointing at
    themselves, on the sorted fast path (no id repeats) and the general one."""
    import random

    from quantscope.analysis.traces import SpanTableBuilder

    rng = random.Random(19)
    traces_ = ["%032x" % (i + 1) for i in range(3)]
    for trial in range(150):
        pool = ["%016x" % rng.randint(1, 10 if trial % 3 else 10**6) for _ in range(rng.randint(1, 14))]
        rows = [(rng.choice(traces_), sid, rng.choice(["", *pool, "%016x" % 99]), i)
                for i, sid in enumerate(pool if trial % 2 else [rng.choice(pool) for _ in pool])]
        b = SpanTableBuilder()
        line = orjson.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [
            {"traceId": t, "spanId": s, "parentSpanId": p, "name": f"n{i}", "startTimeUnixNano": "1",
             "endTimeUnixNano": "2"} for t, s, p, i in rows]}]}]})
        assert b.add_line(line) == len(rows)
        table = b.finish()
        seen, kept = set(), []
        for t, s, p, i in rows:
            if (t, s) not in seen:
                seen.add((t, s))
                kept.append((t, s, p, i))
        want = []
        for k, (t, s, p, i) in enumerate(kept):
            hit = [j for j, (t2, s2, _, _) in enumerate(kept) if t2 == t and s2 == p and p]
            want.append(hit[0] if hit and hit[0] != k else -1)
        assert [table.names[c] for c in table.name] == [f"n{i}" for *_, i in kept], trial
        assert table.parent_row.tolist() == want, (trial, rows)
        assert table.stats["duplicate_spans"] == len(rows) - len(kept)
        assert table.stats["orphan_spans"] == sum(1 for (_, _, p, _), w in zip(kept, want) if p and w < 0)
        assert table.stats["traces"] == len({t for t, *_ in kept})
