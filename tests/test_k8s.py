"""Load beyond one machine: deploy/k8s (k6-operator TestRuns) checked against the operator's CRD
schema, setup() leaves the cache alone in a distributed run, and `quantscope analyze load`
merges N k6 instances' raw outputs into percentiles over every point."""

from __future__ import annotations

import asyncio
import copy
import gzip
import http.server
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from quantscope.settings import PROJECT_ROOT as ROOT

K8S = ROOT / "deploy" / "k8s"
CRD = json.loads((ROOT / "tests" / "fixtures" / "k6-operator" / "testrun.openapi.json").read_text())
K6 = Path(sys.executable).parent / "k6"
SCENARIOS = sorted(p.stem for p in (ROOT / "k6" / "scenarios").glob("*.js"))
TESTRUNS = sorted((K8S / "testruns").glob("*.yaml"))
SEQUENCE = "0,1/3,2/3,1"
SEGMENTS = ("0:1/3", "1/3:2/3", "2/3:1")


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(CRD)


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.mark.parametrize("path", TESTRUNS, ids=lambda p: p.stem)
def test_testruns_validate_against_the_operators_crd_and_fit_together(path):
    doc = yaml.safe_load(path.read_text())
    _validator().validate(doc)
    assert (doc["apiVersion"], doc["kind"]) == ("k6.io/v1alpha1", "TestRun")
    spec = doc["spec"]
    assert spec["parallelism"] >= 2
    kust = _kustomization()
    (cm,) = kust["configMapGenerator"]
    assert spec["script"]["configMap"]["name"] == cm["name"] and kust["generatorOptions"]["disableNameSuffixHash"]
    assert f"archives/{spec['script']['configMap']['file']}" in cm["files"]
    assert path.stem in SCENARIOS and spec["script"]["configMap"]["file"] == f"{path.stem}.tar"
    args = spec["args"]
    env = {e["name"] for e in spec["runner"]["env"]}
    assert set(re.findall(r"\$\((\w+)\)", " ".join(args))) <= env, "every $(VAR) in args is a runner env var"
    assert "DISTRIBUTED=1" in args, "setup() must not touch the cache on every instance"
    out = args[args.index("--out") + 1]
    assert out.startswith("json=/output/") and "$(POD_NAME)" in out, "each pod writes its own output"
    mount = {m["name"]: m["mountPath"] for m in spec["runner"]["volumeMounts"]}
    vol = {v["name"]: v for v in spec["runner"]["volumes"]}
    assert mount["output"] == "/output"
    pvc = yaml.safe_load((K8S / "output-pvc.yaml").read_text())
    assert vol["output"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert kust["resources"] == ["output-pvc.yaml"]


def test_every_scenario_has_a_testrun():
    assert [p.stem for p in TESTRUNS] == SCENARIOS


def test_the_schema_check_can_fail():
    doc = yaml.safe_load(TESTRUNS[0].read_text())
    for mutate in (lambda d: d["spec"].update(parallelism="four"),
                   lambda d: d["spec"]["script"].update(configMap={"file": "x.tar"}),  # name is required
                   lambda d: d["spec"]["runner"]["env"].append({"value": "no name"})):
        bad = copy.deepcopy(doc)
        mutate(bad)
        assert list(_validator().iter_errors(bad)), "the vendored schema rejects this"


def test_build_archives_packs_every_scenario_with_its_imports(tmp_path):
    r = subprocess.run([str(K8S / "build-archives"), str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "K6": str(K6)})
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert files == [f"{s}.tar" for s in SCENARIOS]
    assert [f"archives/{f}" for f in files] == _kustomization()["configMapGenerator"][0]["files"]
    with tarfile.open(tmp_path / "variable_limits.tar") as tar:
        names = tar.getnames()
    for needed in ("lib/features.js", "lib/targets.js", "lib/targets.json", "scenarios/variable_limits.js"):
        assert any(n.endswith(needed) for n in names), needed
    assert sum(p.stat().st_size for p in tmp_path.glob("*.tar")) < 900_000, "a ConfigMap holds at most 1 MiB"


# --- a distributed run's setup() --------------------------------------------------------------------


class _Counting(http.server.BaseHTTPRequestHandler):
    admin = 0

    def _answer(self) -> None:
        if self.path.startswith("/api/v1/admin/"):
            type(self).admin += 1
            body = b'{"cleared": 0, "warmed": [], "missing": []}'
        else:
            body = b'{"symbol": "AAPL", "count": 0, "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("extra, admin_calls", [
    ((), "some"),
    (("--execution-segment", "1/3:2/3", "--execution-segment-sequence", SEQUENCE), 0),
    (("-e", "DISTRIBUTED=1"), 0),
])
def test_setup_prepares_the_cache_only_in_a_single_instance(tmp_path, extra, admin_calls):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Counting.admin = 0
    try:
        r = subprocess.run([str(K6), "run", "--quiet", "-e", f"BASE_URL=http://127.0.0.1:{srv.server_port}",
                            "-e", "ADMIN_TOKEN=t0k3n", "-e", "REQUESTS=6", "-e", "VUS=2", *extra,
                            "scenarios/cached_symbol.js"], cwd=ROOT / "k6", capture_output=True, text=True,
                           timeout=120, env={**os.environ, "K6_NO_USAGE_REPORT": "true"})
    finally:
        srv.shutdown()
    assert r.returncode in (0, 99), r.stdout[-1500:] + r.stderr[-1500:]
    if admin_calls == "some":
        assert _Counting.admin >= 2  # clear + warm
    else:
        assert _Counting.admin == 0 and "leaves the API cache" in r.stdout + r.stderr


# --- N instances merged ------------------------------------------------------------------------------


def _api():
    """An API on 127.0.0.1 whose latency depends on the limit and varies: the pooled p95 of three
    instances then differs from the average of their p95s."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    rng = random.Random(9)

    async def features(request):
        limit = int(request.query_params.get("limit", "500"))
        await asyncio.sleep(limit / 20_000 + rng.expovariate(1 / 0.01))
        return JSONResponse({"symbol": request.path_params["symbol"], "count": limit, "data": []})

    return Starlette(routes=[Route("/api/v1/features/quant/{symbol}", features)])


def _durations(path: Path) -> list[float]:
    """An independent reading of k6's JSON lines: features http_req_duration points."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("type") == "Point" and rec.get("metric") == "http_req_duration" \
                    and rec["data"]["tags"].get("endpoint") == "features":
                out.append(rec["data"]["value"])
    return out


def test_three_segmented_k6_processes_merge_into_one_report(tmp_path):
    from quantscope.util.asgi_server import BackgroundServer

    with BackgroundServer(_api()) as srv:
        procs = [subprocess.Popen(
            [str(K6), "run", "--quiet", "--execution-segment", seg, "--execution-segment-sequence", SEQUENCE,
             "-e", f"BASE_URL={srv.url}", "-e", "REQUESTS=90", "-e", "VUS=9", "-e", "DISTRIBUTED=1",
             "--out", f"json={tmp_path / f'seg{i}.k6.json.gz'}", "scenarios/variable_limits.js"],
            cwd=ROOT / "k6", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "K6_NO_USAGE_REPORT": "true"}) for i, seg in enumerate(SEGMENTS)]
        for p in procs:
            out, _ = p.communicate(timeout=180)
            assert p.returncode in (0, 99), out.decode()[-1500:]
    per = [_durations(tmp_path / f"seg{i}.k6.json.gz") for i in range(3)]
    assert [len(d) for d in per] == [30, 30, 30], "k6 split the 90 iterations over the segments"
    # What a person types, from the folder with the files: relative paths.
    r = subprocess.run([sys.executable, "-m", "quantscope", "analyze", "load", "--k6", "seg0.k6.json.gz",
                        "seg1.k6.json.gz", "seg2.k6.json.gz", "--out", "merged.json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "merged.json").read_text())
    jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "load_test_report.schema.json").read_text())
                                    ).validate(report)
    (sc,) = report["scenarios"]
    assert sc["name"] == "variable_limits" and sc["requests"] == 90 and sc["mode"] == "merged"
    pooled = np.concatenate([np.asarray(d) for d in per])
    for q in (50, 95, 99):
        assert sc["latency_ms"][f"p{q}"] == pytest.approx(float(np.percentile(pooled, q)), abs=1e-3)
    assert sc["latency_ms"]["max"] == pytest.approx(pooled.max(), abs=1e-3)
    averaged = float(np.mean([np.percentile(d, 95) for d in per]))
    assert abs(averaged - sc["latency_ms"]["p95"]) > 1e-6, "pooled, not the average of per-instance p95s"
    assert report["k6_outputs"] == [str(tmp_path / f"seg{i}.k6.json.gz") for i in range(3)]


def test_analyze_load_refuses_bad_input_with_one_line(tmp_path):
    (tmp_path / "empty.json").write_text("")
    for args, msg in ((["--k6", "nope.json.gz"], "does not exist"), (["--k6", "empty.json"], "no features requests")):
        r = subprocess.run([sys.executable, "-m", "quantscope", "analyze", "load", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert r.returncode == 2 and msg in r.stderr + r.stdout and "Traceback" not in r.stderr + r.stdout
