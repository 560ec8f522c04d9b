"""Which spans are API, DB or compute time, and which spans are the jobs: for traces of any service.

A span's own phase, in this order:
  1. its `quantscope.phase` attribute;
  2. the first matching rule of a rules file (config/phases.yaml, schemas/phases.schema.json);
  3. OpenTelemetry semantic conventions, stable and older names: `db.system.name` / `db.system`
     -> db (any kind); a CLIENT span with `http.request.method` / `http.method` / `url.full` /
     `http.url` / `rpc.system` (an outbound call) -> api.
Spans with no own phase inherit their nearest classified ancestor's (attribution.resolve_hierarchy),
so a vendor's SERVER span under our CLIENT span stays api; unclassified in-process spans directly
under a job are compute (attribution.attribute); the job span's own uncovered time is untraced.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.util.documents import DocumentError, read_mapping

from .conventions import ATTR_PHASE, ATTR_SYMBOL, ATTR_TIMEFRAME, PHASES, SPAN_JOB, SPAN_RUN
from .traces import CONV_DB, CONV_HTTP, CONV_RPC, SPAN_KIND_CLIENT, SpanTable

__all__ = ["JobSpec", "PhaseRules", "PhaseRulesError", "Rule", "classify", "job_and_phase_options", "load_rules",
           "rules_from_options"]

KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "phases.schema.json"


class PhaseRulesError(ValueError):
    """A rules file or option that cannot be used; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Rule:
    phase: str
    name: str | None = None  # glob on the span name
    kind: int | None = None
    attributes: tuple[tuple[str, Any], ...] = ()  # string values are globs, others compare equal

    def mask(self, table: SpanTable) -> np.ndarray:
        m = np.ones(len(table), dtype=bool)
        if self.name is not None:
            codes = [i for i, n in enumerate(table.names) if fnmatch.fnmatchcase(n, self.name)]
            m &= np.isin(table.name, np.array(codes, dtype=np.int32))
        if self.kind is not None:
            m &= table.kind == self.kind
        for key, want in self.attributes:
            hit = np.zeros(len(table), dtype=bool)
            for row, attrs in table.attrs.items():
                if key in attrs and _matches(attrs[key], want):
                    hit[row] = True
            if key == ATTR_PHASE:
                hit |= _phase_equals(table, want)
            m &= hit
        return m


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, str):
        return fnmatch.fnmatchcase(str(value), want)
    return value == want


def _phase_equals(table: SpanTable, want: Any) -> np.ndarray:
    codes = [i for i, n in enumerate(table.phase_names) if _matches(n, want)]
    return np.isin(table.phase, np.array(codes, dtype=np.int8))


@dataclass(frozen=True)
class PhaseRules:
    rules: tuple[Rule, ...] = ()
    conventions: bool = True
    source: str | None = None  # the file they came from

    def keys(self) -> set[str]:
        """Attributes whose values the rules read (the trace reader keeps them)."""
        return {k for r in self.rules for k, _ in r.attributes}


@dataclass(frozen=True)
class JobSpec:
    """Which spans are jobs and runs, and which attributes name a job's symbol and timeframe."""

    job_span: str = SPAN_JOB  # exact name or glob
    roots: bool = False  # each trace root is a job (services with no job span)
    run_span: str = SPAN_RUN
    symbol_attr: str = ATTR_SYMBOL
    timeframe_attr: str = ATTR_TIMEFRAME
    group_attrs: tuple[str, ...] = field(default=())

    def keys(self) -> set[str]:
        return {self.symbol_attr, self.timeframe_attr, *self.group_attrs}

    def describe(self) -> str:
        return "trace roots" if self.roots else f"spans named {self.job_span!r}"

    def job_mask(self, table: SpanTable) -> np.ndarray:
        if self.roots:
            return table.parent_id == 0
        return _name_mask(table, self.job_span)

    def run_mask(self, table: SpanTable) -> np.ndarray:
        return _name_mask(table, self.run_span)


def _name_mask(table: SpanTable, pattern: str) -> np.ndarray:
    if any(c in pattern for c in "*?["):
        codes = [i for i, n in enumerate(table.names) if fnmatch.fnmatchcase(n, pattern)]
    else:
        codes = [c] if (c := table.name_code(pattern)) >= 0 else []
    return np.isin(table.name, np.array(codes, dtype=np.int32))


def classify(table: SpanTable, rules: PhaseRules | None = None) -> np.ndarray:
    """Each span's own phase code (into table.phase_names; -1 none), before inheritance."""
    rules = rules or PhaseRules()
    own = table.phase.astype(np.int8).copy()
    code = {p: table.phase_names.index(p) for p in PHASES}
    unset = own < 0
    for rule in rules.rules:
        if not unset.any():
            break
        m = unset & rule.mask(table)
        own[m] = code[rule.phase]
        unset &= ~m
    if rules.conventions:
        conv = table.conv
        db = unset & ((conv & CONV_DB) != 0)
        own[db] = code["db"]
        unset &= ~db
        api = unset & (table.kind == SPAN_KIND_CLIENT) & ((conv & (CONV_HTTP | CONV_RPC)) != 0)
        own[api] = code["api"]
    return own


# --- the rules file -------------------------------------------------------------------------------


def load_rules(path: str | Path) -> PhaseRules:
    """config/phases.yaml (or any file of that schema) -> PhaseRules; PhaseRulesError names the
    file, the place and what is wrong, in one line."""
    import jsonschema  # only when a rules file is given (the analysis of plain traces skips it)

    p = Path(path)
    try:
        doc = read_mapping(p, yaml_format=True, empty_ok=True)
    except DocumentError as exc:
        raise PhaseRulesError(str(exc)) from None
    schema = json.loads(SCHEMA_PATH.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        at = "/".join(str(x) for x in e.path) or "(top level)"
        raise PhaseRulesError(f"{p}: {at}: {e.message}")
    rules = []
    for r in doc.get("rules") or ():
        kind = r.get("kind")
        rules.append(Rule(phase=r["phase"], name=r.get("name"),
                          kind=KINDS[kind] if kind is not None else None,
                          attributes=tuple(sorted((r.get("attributes") or {}).items()))))
    return PhaseRules(tuple(rules), conventions=doc.get("conventions", True), source=str(p))


def rules_from_options(path: str | Path | None) -> PhaseRules:
    """The --phases option: a rules file, or none (quantscope.phase and the conventions only)."""
    return load_rules(path) if path is not None else PhaseRules()


def job_and_phase_options(job_span: str = SPAN_JOB, jobs: str = "spans", run_span: str = SPAN_RUN,
                          symbol_attr: str = ATTR_SYMBOL, timeframe_attr: str = ATTR_TIMEFRAME,
                          phases: str | Path | None = None) -> tuple[JobSpec, PhaseRules]:
    """The job and phase options (`analyze backfill`, `validate`) -> (JobSpec, PhaseRules);
    PhaseRulesError names the bad option in one line."""
    if jobs not in ("spans", "roots"):
        raise PhaseRulesError(f"--jobs must be spans or roots, got {jobs!r}")
    for flag, v in (("--job-span", job_span), ("--run-span", run_span), ("--symbol-attr", symbol_attr),
                    ("--timeframe-attr", timeframe_attr)):
        if not v.strip():
            raise PhaseRulesError(f"{flag} must not be empty")
    spec = JobSpec(job_span=job_span, roots=jobs == "roots", run_span=run_span, symbol_attr=symbol_attr,
                   timeframe_attr=timeframe_attr)
    return spec, rules_from_options(phases)
