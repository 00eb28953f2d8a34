"""The contract's JSON Schema files (``schemas/``), and one way to turn a schema violation into the ``ContractError``
every reader gives: the dotted path of the first wrong field, a reason word, and what the field must be.

The schemas are package data, so the Python validator, the documentation and the other languages' readers all point
at the same files. Rules that JSON Schema cannot say (cross-field checks) are listed in each schema's ``x-rules`` and
checked in code by every reader; the conformance vectors hold a case for each.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from emo.contract.jsonio import ContractError

SCHEMA_FILES = {"sidecar": "sidecar.schema.json", "examples": "examples.schema.json",
                "app-bench": "app-bench.schema.json"}

# JSON Schema keyword -> the contract's reason word (jsonio.REASONS)
_REASON = {"required": "required", "type": "type", "enum": "enum", "const": "enum", "minimum": "range",
           "maximum": "range", "exclusiveMinimum": "range", "exclusiveMaximum": "range", "minItems": "length",
           "maxItems": "length", "minLength": "length", "maxLength": "length", "minProperties": "length",
           "maxProperties": "length", "pattern": "format", "additionalProperties": "enum"}


@cache
def schema(kind: str) -> dict:
    """The parsed JSON Schema of ``kind`` (sidecar, examples, app-bench)."""
    text = resources.files("emo.contract").joinpath("schemas", SCHEMA_FILES[kind]).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(kind: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(kind))


def field_path(parts) -> str:
    """``['input', 'shape', 2]`` -> ``input.shape[2]``: the field names every reader uses in its errors."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def shown(value) -> str:
    """A value as an error message shows it: JSON, cut to 60 characters, control characters escaped."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "?")


def _branch_types(branch: dict) -> set[str]:
    """The JSON types an anyOf branch accepts ("integer" counts as a number: 1.5 was meant for it)."""
    if "type" in branch:
        types = branch["type"] if isinstance(branch["type"], list) else [branch["type"]]
    else:
        types = [_json_type(v) for v in branch.get("enum", [branch["const"]] if "const" in branch else [])]
    return {"number" if t == "integer" else t for t in types}


def _leaf(error):
    """The most specific error under an anyOf/oneOf: the error of the branch whose JSON type the value has, else the
    anyOf itself (the value has none of the allowed types: reason "type")."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        kind = _json_type(error.instance)
        meant = [i for i, b in enumerate(error.validator_value) if kind in _branch_types(b)]
        if len(meant) != 1:
            return error
        errors = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == meant[0]]
        if not errors:
            return error
        error = min(errors, key=lambda e: (-len(e.absolute_path), e.validator))
    return error


def _position(data, path) -> list[int]:
    """Where a path lies in the document: the index of each key in its object (or of each item in its list)."""
    position, node = [], data
    for part in path:
        if isinstance(node, dict) and part in node:
            position.append(list(node).index(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            position.append(part)
            node = node[part]
        else:
            position.append(1 << 30)
            node = None
    return position


def check(kind: str, data, what: str, fix: str) -> None:
    """Validate ``data`` against the schema of ``kind``; the first violation (in document order) becomes a
    ``ContractError`` naming the field, e.g. "sidecar m.json: field 'precision' must be one of fp32, ... not 'fp64'"."""
    errors = list(_validator(kind).iter_errors(data))
    if not errors:
        return
    # document order (shallow before deep at the same place), so a file with one defect names exactly that field
    top = min(errors, key=lambda e: (_position(data, e.absolute_path), e.validator))
    error = _leaf(top)
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        field = field_path([*path, missing])
        if field == "schema":
            raise ContractError(f"{what}: field 'schema' is missing; {fix}", field, "schema")
        raise ContractError(f"{what}: field '{field}' is missing; {fix}", field, "required")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        field = field_path([*path, extra[0] if extra else "?"])
        expected = error.schema.get("x-expected", "a known name")
        raise ContractError(f"{what}: field '{field}' is not {expected}; {fix}", field, "enum")
    field = field_path(path) or "(top level)"
    reason = "schema" if field == "schema" else _REASON.get(error.validator, "type")  # anyOf: none of the types
    expected = error.schema.get("x-expected") or top.schema.get("x-expected") or error.message
    raise ContractError(f"{what}: field '{field}' must be {expected}, not {shown(error.instance)}; {fix}",
                        field if path else "", reason)
