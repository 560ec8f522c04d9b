"""Which report keys a renderer reads, checked against the report's JSON Schema.

`track(doc)` wraps a report so every key looked up (`[]`, `.get`, `in`) is logged with its path;
`undefined(schema, paths)` lists the paths the schema does not define. A renderer that reads a
key nothing produces (or that a writer renamed) then fails a test instead of rendering nothing."""

from __future__ import annotations

from typing import Any

ITEM = "[]"


class TrackedDict(dict):
    def __init__(self, data: dict, path: tuple, log: set) -> None:
        super().__init__(data)
        self._path, self._log = path, log

    def _wrap(self, k: Any, v: Any) -> Any:
        return track(v, self._path + (k,), self._log)

    def __getitem__(self, k: Any) -> Any:
        self._log.add(self._path + (k,))
        return self._wrap(k, super().__getitem__(k))

    def get(self, k: Any, default: Any = None) -> Any:
        self._log.add(self._path + (k,))
        return self._wrap(k, super().__getitem__(k)) if super().__contains__(k) else default

    def __contains__(self, k: Any) -> bool:
        self._log.add(self._path + (k,))
        return super().__contains__(k)

    def items(self):  # keys that exist in a schema-valid report are defined: not logged
        return [(k, self._wrap(k, v)) for k, v in super().items()]

    def values(self):
        return [self._wrap(k, v) for k, v in super().items()]

    def __iter__(self):
        return iter(list(super().keys()))


class TrackedList(list):
    def __init__(self, data: list, path: tuple, log: set) -> None:
        super().__init__(track(v, path + (ITEM,), log) for v in data)


def track(v: Any, path: tuple = (), log: set | None = None) -> Any:
    log = set() if log is None else log
    if isinstance(v, dict) and not isinstance(v, TrackedDict):
        return TrackedDict(v, path, log)
    if isinstance(v, list) and not isinstance(v, TrackedList):
        return TrackedList(v, path, log)
    return v


def log_of(doc: Any) -> set:
    return doc._log if isinstance(doc, TrackedDict) else set()


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _children(schema: dict, key: Any, root: dict) -> list[dict]:
    """The sub-schemas `key` may have under `schema` (empty: the schema does not define it)."""
    schema = _resolve(schema, root)
    out: list[dict] = []
    for branch in ("oneOf", "anyOf", "allOf"):
        for b in schema.get(branch, ()):
            out += _children(b, key, root)
    if key == ITEM:
        items = schema.get("items")
        if isinstance(items, dict):
            out.append(items)
        return out
    props = schema.get("properties") or {}
    if key in props:
        out.append(props[key])
    elif isinstance(schema.get("additionalProperties"), dict):
        out.append(schema["additionalProperties"])
    elif schema.get("additionalProperties") is True or (
            "additionalProperties" not in schema and not props and "object" in _types(schema)
            and not any(schema.get(b) for b in ("oneOf", "anyOf", "allOf"))):
        out.append({})  # a free-form object: any key is defined
    return out


def _types(schema: dict) -> set:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else {t} if t else set()


def undefined(schema: dict, paths: set) -> list[str]:
    bad = []
    for path in sorted(paths, key=lambda p: [str(x) for x in p]):
        nodes = [schema]
        for key in path:
            nodes = [c for n in nodes for c in _children(n, key, schema)]
            if not nodes:
                bad.append("/".join(str(p) for p in path))
                break
    return bad
