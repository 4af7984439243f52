"""The blueprint's JSON Schema: loading it, validating against it, and speaking its errors plainly.

``schemas/blueprint.schema.json`` is the single source of truth for the file format; the wheel
carries it (``llmctl.assets``), so an installed llmctl needs no checkout. Custom formats are registered on the validator rather than checked by
hand (STYLE.md).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Iterator
from functools import cache
from typing import Any
from urllib.parse import urlparse

from llmctl.assets import asset_dir
from llmctl.blueprint.problems import Problem
from llmctl.blueprint.yamlpos import Located

SCHEMA_RESOURCE = "blueprint.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    """The blueprint schema shipped with the package."""
    text = (asset_dir("schemas") / SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def _is_ipv4_network(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = urlparse(value)
    return bool(parsed.scheme) and bool(parsed.netloc or parsed.path)


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker(formats=())
    checker.checks("ipv4-network")(_is_ipv4_network)
    checker.checks("uri")(_is_uri)
    return Draft202012Validator(load_schema(), format_checker=checker)


def json_path(path: tuple[str | int, ...]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _dotted(path: tuple[str | int, ...]) -> str:
    return json_path(path)[2:] or "the top level"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for p in schema["$ref"].lstrip("#/").split("/"):
            node = node[p]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "empty (null)",
}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def schema_problems(located: Located) -> Iterator[Problem]:
    """Every schema violation, each placed at its line and column, with a fix where one is obvious."""
    root = load_schema()
    file = located.file
    seen: set[tuple[str, tuple[str | int, ...], str]] = set()
    for err in _validator().iter_errors(located.data):
        for rule, path, message, at_key in _explain(err, root):
            if (rule, path, message) in seen:
                continue
            seen.add((rule, path, message))
            pos = located.pos(path, key=at_key)
            yield Problem(file, pos.line, pos.col, rule, message, "error", json_path(path))


def _explain(err: Any, root: dict[str, Any]) -> Iterator[tuple[str, tuple, str, bool]]:
    path = tuple(err.absolute_path)
    where = _dotted(path)
    kw = err.validator
    schema = err.schema if isinstance(err.schema, dict) else {}
    if kw == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in err.instance:
            if key in schema.get("properties", {}):
                continue
            hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            fix = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(allowed)}"
            yield ("LLM-SCHEMA-001", path + (key,), f"unknown key '{key}' in {where}{fix}", True)
        return
    if kw == "propertyNames":
        yield ("LLM-SCHEMA-004", path, f"invalid name in {where}: {err.message}", False)
        return
    if kw == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        yield ("LLM-SCHEMA-002", path, f"missing required key '{missing}' in {where}", False)
        return
    if kw == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield (
            "LLM-SCHEMA-003",
            path,
            f"{where} must be {_article(expected)}, not {_kind(err.instance)} {_describe(err.instance)}",
            False,
        )
        return
    if kw == "const":
        yield (
            "LLM-SCHEMA-004",
            path,
            f"{where} must be {err.validator_value!r}, not {_describe(err.instance)}",
            False,
        )
        return
    if kw == "enum":
        options = [str(o) for o in err.validator_value]
        hint = ""
        if isinstance(err.instance, bool):
            hint = "; note that YAML reads unquoted yes/no/on/off as true/false"
        if isinstance(err.instance, str):
            close = difflib.get_close_matches(err.instance, options, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
        yield (
            "LLM-SCHEMA-004",
            path,
            f"{where} is {_describe(err.instance)}; expected one of: {', '.join(options)}{hint}",
            False,
        )
        return
    if kw in ("oneOf", "anyOf"):
        # Pick the branch whose errors are deepest; for our schemas that is the one the user meant.
        if err.context:
            if all(c.validator in ("const", "type") for c in err.context):
                wants = []
                for c in err.context:
                    wants.append(
                        repr(c.validator_value)
                        if c.validator == "const"
                        else _article(c.validator_value)
                    )
                yield (
                    "LLM-SCHEMA-004",
                    path,
                    f"{where} is {_describe(err.instance)}; expected {' or '.join(wants)}",
                    False,
                )
                return
            best = max(err.context, key=lambda e: len(e.absolute_path))
            yield from _explain(best, root)
            return
    desc = _resolve(schema, root).get("description", "")
    detail = err.message
    if kw == "pattern":
        detail = f"{_describe(err.instance)} does not match {err.validator_value}"
    elif kw == "format":
        detail = f"{_describe(err.instance)} is not a valid {err.validator_value}"
    elif kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        detail = f"{_describe(err.instance)} is out of range ({kw} {err.validator_value})"
    elif kw == "uniqueItems":
        detail = "has repeated items; list each once"
    elif kw in ("minLength", "minItems"):
        detail = "is empty"
    elif kw in ("maxLength", "maxItems"):
        detail = f"is too long ({kw} {err.validator_value})"
    message = f"{where} {detail}" + (f" ({desc.rstrip('.')})" if desc and len(desc) < 140 else "")
    yield ("LLM-SCHEMA-004", path, message, False)


def _article(type_name: str) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }
    return names.get(type_name, type_name)


def apply_defaults(data: Any, schema: dict[str, Any] | None = None) -> Any:
    """Return a copy of valid ``data`` with every schema default filled in, recursively.

    Object sections declare ``"default": {}`` so that their own defaults are filled even when the
    section is absent; this keeps every default in the schema rather than in Python.
    """
    root = load_schema()
    schema = _resolve(schema if schema is not None else root, root)
    if isinstance(data, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        out = {}
        for key, sub in props.items():
            sub_r = _resolve(sub, root)
            if key in data:
                out[key] = apply_defaults(data[key], sub_r)
            elif "default" in sub or "default" in sub_r:
                default = sub.get("default", sub_r.get("default"))
                out[key] = apply_defaults(json.loads(json.dumps(default)), sub_r)
        extra = schema.get("additionalProperties")
        for key, value in data.items():
            if key not in props:
                out[key] = (
                    apply_defaults(value, _resolve(extra, root))
                    if isinstance(extra, dict)
                    else value
                )
        return out
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        item_schema = _resolve(schema["items"], root)
        return [apply_defaults(v, item_schema) for v in data]
    return data
