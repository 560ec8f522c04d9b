"""config/objectives.yaml: validation with clear errors, freshness at each boundary, and the
RTO/RPO documents rendered from it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import ObjectivesError, get_objectives, load_objectives, parse_duration
from quantscope.recovery.document import build_definition, render_markdown

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("age,status,warning", [
    (timedelta(0), "fresh", None),
    (timedelta(minutes=59, seconds=59), "fresh", None),
    (timedelta(hours=1), "aging", "features aging"),
    (timedelta(hours=5, minutes=59), "aging", "features aging"),
    (timedelta(hours=6), "stale", "last computed 6h ago"),
    (timedelta(hours=12), "stale", "last computed 12h ago"),
    (timedelta(hours=23, minutes=59), "stale", "last computed 23h ago"),
    (timedelta(days=3), "stale", "last computed 3d ago"),
])
def test_freshness_boundaries_follow_the_seed(age, status, warning):
    f = get_objectives().freshness(NOW - age, NOW)
    assert (f.status, f.warning) == (status, warning)
    assert f.age_seconds == pytest.approx(age.total_seconds())


def test_missing_features():
    assert get_objectives().freshness(None, NOW).status == "missing"


def test_seed_values_are_loaded():
    o = get_objectives()
    assert o.backoff.schedule == (1.0, 5.0, 30.0, 300.0)
    assert {k: v.objective for k, v in o.rto.items()} == {
        "scheduler_crash": 300, "polygon_rate_limit": 30, "db_connection_loss": 120,
        "feature_computation_failure": 1}
    assert o.tier_of("SPY") == "critical" and o.tier_of("AAPL") == "standard" and o.tier_of("NVDA") == "low"
    assert o.schedule.daily_hour_minute == (1, 30)


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "config/objectives.yaml").read_text())
    mutate(raw)
    p = tmp_path / "objectives.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["staleness"].update(fresh_below="7h"), "staleness thresholds must increase"),
    (lambda r: r["rto"].pop("db_connection_loss"), "missing failure types: db_connection_loss"),
    (lambda r: r["rpo"]["standard"].update(symbols=["SPY"]), "SPY is in both rpo tiers"),
    (lambda r: r["schedule"].update(daily_backfill_utc="25:00"), "expected HH:MM"),
    (lambda r: r["backoff"].update(schedule=["5s", "1s"]), "must not decrease"),
    (lambda r: r["rto"]["scheduler_crash"].update(objective="five minutes"), "invalid duration"),
])
def test_invalid_objectives_give_clear_errors(tmp_path, mutate, message):
    with pytest.raises(ObjectivesError) as e:
        load_objectives(_write(tmp_path, mutate))
    assert message in str(e.value) and "objectives.yaml" in str(e.value)


def test_unreadable_or_non_mapping_file(tmp_path):
    with pytest.raises(ObjectivesError, match="cannot read"):
        load_objectives(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ObjectivesError, match="mapping"):
        load_objectives(bad)


@pytest.mark.parametrize("text,seconds", [("1s", 1), ("5m", 300), ("6h", 21600), ("1d", 86400), ("250ms", 0.25), (3, 3)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_definition_validates_against_schema_and_mirrors_the_config():
    schema = json.loads((ROOT / "schemas/rto_rpo_definition.schema.json").read_text())
    symbols = {s: i.tier for s, i in load_symbols().items()}
    doc = build_definition(get_objectives(), symbols)
    jsonschema.Draft202012Validator(schema).validate(doc)
    tiers = {t["tier"]: t for t in doc["rpo"]}
    assert tiers["critical"]["symbols"] == ["SPY", "QQQ", "BTC", "ETH"]
    assert len(tiers["low"]["symbols"]) == 25 - 4 - 5  # every configured symbol lands in one tier
    assert all(r["drill"] is None for r in doc["rto"]) and doc["drills_run"] is False
    md = render_markdown(doc)
    for needle in ("| **Fresh** | < 1h |", "| **Polygon API Rate Limit** | 30s |", "| **Critical** | SPY, QQQ, BTC, ETH | 1h | every 15m | 0 records |",
                   "01:30 UTC", "1s -> 5s -> 30s -> 5m"):
        assert needle in md


def test_drill_results_are_judged_against_the_objective():
    symbols = {s: i.tier for s, i in load_symbols().items()}
    doc = build_definition(get_objectives(), symbols, drills={
        "polygon_rate_limit": {"recovery_seconds": 12.0, "records_lost": 0, "records_duplicated": 0},
        "db_connection_loss": {"recovery_seconds": 150.0, "records_lost": 0, "records_duplicated": 0},
        "feature_computation_failure": {"recovery_seconds": 0.1, "records_lost": 1, "records_duplicated": 0},
    })
    met = {r["failure_type"]: (r["drill"] or {}).get("met") for r in doc["rto"]}
    assert met == {"scheduler_crash": None, "polygon_rate_limit": True, "db_connection_loss": False,
                   "feature_computation_failure": False}
    assert "**no**" in render_markdown(doc)
