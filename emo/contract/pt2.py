"""Loading a ``.pt2`` archive (``torch.export.save``) without letting anything in it run code.

``torch.export.load`` trusts its archive: weights saved with ``use_pickle`` and opaque constants are unpickled
with ``weights_only=False``, sample inputs fall back to ``weights_only=False`` when the safe load fails, symbolic
shape expressions go through ``sympy.sympify`` (``eval``), ``guards_code`` becomes Python source that
``.module()`` compiles and runs, and AOTInductor entries load shared libraries. An artifact someone sent us must
do none of that, so the archive is read into memory once and checked against an allow-list of what
``torch.export.save`` writes for a plain program (raw tensor payloads, JSON, ATen operators, sympy constructors
of integers and symbols); only then is that same in-memory copy handed to ``torch.export.load``.

The allow-list is part of the artifact contract: emo-export's ``pt2`` backend, emo-verify and emo-bench (which times
the PyTorch baseline) all load through it. torch is imported lazily (only to load), never at import time.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

MAX_ARCHIVE_BYTES = 4 << 30

# What torch.export.save writes under the archive's root folder for a program with plain tensors.
_FIXED_ENTRIES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MODEL = re.compile(r"models/(\w+)\.json")
_WEIGHTS_CONFIG = re.compile(r"data/weights/(\w+)_weights_config\.json")
_CONSTANTS_CONFIG = re.compile(r"data/constants/(\w+)_constants_config\.json")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/(\w+)\.pt")
_RAW_PAYLOAD = re.compile(r"data/weights/weight_\d+|data/constants/tensor_\d+")  # raw bytes, read with frombuffer
_EXTRA = re.compile(r"extra/[\w.-]+")  # read as text by torch, never executed

# Node targets that may appear: ATen operators and Python's arithmetic on symbolic sizes.
_SAFE_TARGET = re.compile(r"torch\.ops\.aten\.\w+\.\w+|_operator\.(?:add|sub|mul|floordiv|truediv|mod|neg|pow|getitem)"
                          r"|torch\.sym_(?:int|float|max|min|not|sqrt)|math\.\w+")
# Symbolic expressions are srepr strings such as "Mul(Integer(16), Symbol('s40', positive=True, integer=True))".
_EXPR_TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|'[A-Za-z_]\w*'|\*\*|[-+*/%(),=]")
_EXPR_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Mul", "Add", "Pow", "Max", "Min", "Mod", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "IntTrueDiv",
    "FloatTrueDiv", "ToFloat", "TruncToInt", "TruncToFloat", "RoundToInt", "RoundDecimal", "Identity", "FloatPow",
    "PowByNatural", "LShift", "RShift",
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero", "even",
    "odd", "rational", "commutative", "extended_real",
}


class UnsafeArchiveError(ValueError):
    """The archive holds something that loading would execute, or is not a torch.export archive at all."""


def _check_expression(text: str, where: str) -> None:
    pos = 0
    for match in _EXPR_TOKEN.finditer(text):
        if match.start() != pos:
            break
        token = match.group()
        if re.fullmatch(r"[A-Za-z_]\w*", token) and token not in _EXPR_NAMES:
            raise UnsafeArchiveError(f"{where}: symbolic expression uses {token!r}, which is not a sympy constructor "
                                     "of integers and symbols")
        pos = match.end()
    if pos != len(text):
        raise UnsafeArchiveError(f"{where}: symbolic expression {text[:60]!r} is not plain integer arithmetic")


def _walk(node: Any, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _check_program(program: dict, name: str) -> None:
    if program.get("guards_code"):
        raise UnsafeArchiveError(f"models/{name}.json carries guards_code (Python source that loading would run)")

    def visit(node: dict) -> None:
        target = node.get("target")
        if isinstance(target, str) and "inputs" in node and not _SAFE_TARGET.fullmatch(target):
            raise UnsafeArchiveError(f"models/{name}.json calls {target!r}; only ATen operators are accepted")
        if "expr_str" in node:
            _check_expression(str(node["expr_str"]), f"models/{name}.json")
        if node.get("custom_obj_values"):
            raise UnsafeArchiveError(f"models/{name}.json holds custom (script) objects")

    _walk(program, visit)
    for symbol in program.get("range_constraints", {}):
        if not re.fullmatch(r"[A-Za-z_]\w*", symbol):
            raise UnsafeArchiveError(f"models/{name}.json: range constraint on {symbol[:40]!r}")


def _check_payload_config(config: dict, where: str, kind: str) -> None:
    entries = config.get("config")
    if not isinstance(entries, dict):
        raise UnsafeArchiveError(f"{where} is not a payload config")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise UnsafeArchiveError(f"{where}: entry {fqn!r} is not an object")
        if meta.get("use_pickle"):
            raise UnsafeArchiveError(f"{where}: {fqn!r} is stored as a pickle")
        if not re.fullmatch(rf"{kind}_\d+", str(meta.get("path_name", ""))):
            raise UnsafeArchiveError(f"{where}: {fqn!r} is stored as {meta.get('path_name')!r}, not a raw tensor")


def check_archive(data: bytes) -> None:
    """Raise ``UnsafeArchiveError`` unless ``data`` is a torch.export archive with nothing executable in it."""
    import torch

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        if archive.testzip() is not None:
            raise UnsafeArchiveError("the archive is corrupt (a CRC check failed)")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, UnsafeArchiveError):
            raise
        raise UnsafeArchiveError(f"not a torch.export archive (not a readable zip: {e})") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        raise UnsafeArchiveError("not a torch.export archive (entries must sit under one root folder)")
    root = roots.pop()
    models = []
    for name in names:
        rel = name[len(root) + 1:]
        if rel in _FIXED_ENTRIES or rel.endswith("/") or _RAW_PAYLOAD.fullmatch(rel) or _EXTRA.fullmatch(rel):
            continue
        if m := _MODEL.fullmatch(rel):
            models.append(m.group(1))
        elif (m := _WEIGHTS_CONFIG.fullmatch(rel)) or (m := _CONSTANTS_CONFIG.fullmatch(rel)):
            kind = "weight" if "weights" in rel else "tensor"
            _check_payload_config(_json(archive, name), rel, kind)
        elif _SAMPLE_INPUTS.fullmatch(rel):
            try:  # torch tries weights_only=True first and falls back to an unrestricted unpickler: be that first try
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as e:
                raise UnsafeArchiveError(f"{rel} is not plain tensor data ({type(e).__name__})") from None
        else:
            raise UnsafeArchiveError(f"unexpected entry {rel!r} (AOTInductor libraries, legacy pickled weights and "
                                     "other files are not accepted)")
    if not models:
        raise UnsafeArchiveError("not a torch.export archive (no models/*.json)")
    for model in models:
        _check_program(_json(archive, f"{root}/models/{model}.json"), model)


def _json(archive: zipfile.ZipFile, name: str) -> dict:
    try:
        value = json.loads(archive.read(name))
    except RecursionError:
        raise UnsafeArchiveError(f"{name.split('/', 1)[1]} nests too deep to be a program") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UnsafeArchiveError(f"{name.split('/', 1)[1]} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UnsafeArchiveError(f"{name.split('/', 1)[1]} is not a JSON object")
    return value


def load_program(path: str | Path):
    """The ``torch.export`` program of a ``.pt2`` file, as an ``nn.Module``, after ``check_archive``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsafeArchiveError(f"{path} is not a regular file")
    if path.stat().st_size > MAX_ARCHIVE_BYTES:
        raise UnsafeArchiveError(f"{path} is larger than {MAX_ARCHIVE_BYTES >> 30} GiB")
    data = path.read_bytes()
    try:
        check_archive(data)
    except UnsafeArchiveError as e:
        raise UnsafeArchiveError(f"refused {path.name}: {e}") from None
    return torch.export.load(io.BytesIO(data)).module()
