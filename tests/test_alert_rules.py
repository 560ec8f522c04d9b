"""Alert rules: promtool checks and unit tests, thresholds tied to config/objectives.yaml, and
every metric they name is one the service exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from quantscope.instrumentation.names import PROMETHEUS_NAMES
from quantscope.objectives import get_objectives

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "prometheus/rules/quantscope.yml"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (scripts/bootstrap --test installs Debian's prometheus)")


def rules() -> dict[str, dict]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


@needs_promtool
def test_promtool_check_rules():
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", sorted((ROOT / "prometheus/rules/tests").glob("*.yml")), ids=lambda p: p.name)
def test_promtool_rule_unit_tests(test_file):
    out = subprocess.run([promtool, "test", "rules", test_file.name], cwd=test_file.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_thresholds_and_severities_match_the_objectives():
    a = get_objectives().alerts
    r = rules()
    assert f"> {int(a.no_successful_backfill.after // 3600)} * 3600" in r["NoSuccessfulBackfill"]["expr"]
    assert r["NoSuccessfulBackfill"]["labels"]["severity"] == a.no_successful_backfill.severity
    assert float(re.search(r">\s*([\d.]+)$", r["BackfillRunFailures"]["expr"]).group(1)) == a.run_failure_ratio.above
    assert r["BackfillRunFailures"]["labels"]["severity"] == a.run_failure_ratio.severity
    assert float(re.search(r">\s*([\d.]+)$", r["SymbolsMissingFeatures"]["expr"]).group(1)) == \
        a.symbols_missing_features_ratio.above
    assert r["SymbolsMissingFeatures"]["labels"]["severity"] == a.symbols_missing_features_ratio.severity


def test_rules_only_name_exported_metrics():
    exported = set(PROMETHEUS_NAMES.values())
    for name, rule in rules().items():
        metrics = set(re.findall(r"\bquantscope_[a-z_]+", rule["expr"]))
        assert metrics and metrics <= exported, (name, metrics - exported)
