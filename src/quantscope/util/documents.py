"""JSON and YAML documents on disk. Reading: a file that must hold one mapping, with errors a user
can act on (one line naming the file, the line and column when the parser knows them, and what is
wrong). Writing: indented JSON, numpy values included, parents created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


class DocumentError(ValueError):
    """A file that cannot be read, does not parse, or does not hold a mapping."""


def read_mapping(path: str | Path, *, yaml_format: bool = False, empty_ok: bool = False) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{p}: cannot read ({exc.strerror or exc})") from None
    doc = _parse_yaml(p, raw) if yaml_format else _parse_json(p, raw)
    if doc is None and empty_ok:
        return {}
    if not isinstance(doc, dict):
        raise DocumentError(f"{p}: expected a {'mapping' if yaml_format else 'JSON object'} at the top level")
    return doc


def _parse_json(p: Path, raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DocumentError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def safe_yaml(raw: bytes | str) -> Any:
    """yaml.safe_load with libyaml's loader when the wheel has it: the same documents, ~10x
    faster (every command reads the objectives and symbols at start-up). Raises yaml.YAMLError."""
    import yaml  # only for YAML files; the JSON reports never need it

    return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)


def _parse_yaml(p: Path, raw: bytes) -> Any:
    import yaml

    try:
        return safe_yaml(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise DocumentError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
