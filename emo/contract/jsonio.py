"""Reading and writing the contract's JSON files safely: bounded size and nesting, no NaN or Infinity, regular files
only, written under a temporary name and renamed.

Every reader of a sidecar, an examples file or an app result goes through ``read_json``, so a hostile or broken file
gives the same one-line ``ContractError`` everywhere (never a ``RecursionError`` from a deeply nested file, never a
``float('inf')`` from ``1e999``, never a read of ``/dev/zero`` or a FIFO).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_DEPTH = 32          # our files nest 6 levels at most (a sidecar's quantization.layer_errors)
MAX_INT_DIGITS = 30     # longer integers are read as floats, as JavaScript reads them (then fail their range)


class ContractError(ValueError):
    """A contract file a reader cannot use. ``field`` is the dotted path of the first wrong field ('' for the file
    itself) and ``reason`` one of REASONS: the conformance vectors check both, in every language."""

    def __init__(self, message: str, field: str = "", reason: str = "json") -> None:
        super().__init__(message)
        self.field, self.reason = field, reason


@contextmanager
def reported_as(error: type[ContractError]) -> Iterator[None]:
    """Inside the block, a ``ContractError`` (of the JSON reader or the schema check) becomes ``error``, the file
    type's own error, with the same message, field and reason."""
    try:
        yield
    except ContractError as e:
        if isinstance(e, error):
            raise
        raise error(str(e), e.field, e.reason) from None


# why a file is refused (the conformance vectors' "reason"): the same words in Python, Kotlin, Swift and JavaScript
REASONS = ("json", "depth", "size", "schema", "required", "type", "enum", "range", "length", "format", "mismatch")


def regular_file(path: str | Path, what: str, base: Path | None = None, limit: int | None = None) -> Path:
    """``path`` (relative ones against ``base``) if it is a regular file of at most ``limit`` bytes: never a folder,
    a FIFO or a device such as ``/dev/zero``."""
    path = Path(path)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        info = path.stat()
    except OSError:
        raise ContractError(f"{what} {path} does not exist", reason="required") from None
    if not stat.S_ISREG(info.st_mode):
        raise ContractError(f"{what} {path} is not a regular file", reason="type")
    if limit is not None and info.st_size > limit:
        raise ContractError(f"{what} {path} is larger than {limit >> 20} MiB", reason="size")
    return path


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str):
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else float(text)


def depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_DEPTH:  # enough to refuse it; do not walk the rest
                return level
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(text: str | bytes, what: str, non_finite: bool = False) -> object:
    """Parse JSON text: a ``ContractError`` for text that is not JSON (NaN, Infinity and numbers that overflow to
    infinity included, unless ``non_finite``: results files of older tools hold them, and their readers skip such
    rows) or nests deeper than ``MAX_DEPTH``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=None if non_finite else _no_constant, parse_int=_bounded_int)
    except RecursionError:
        raise ContractError(f"{what} nests deeper than {MAX_DEPTH} levels", reason="depth") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ContractError(f"{what} is not JSON: {str(e).splitlines()[0][:120]}", reason="json") from None
    if depth(value) > MAX_DEPTH:
        raise ContractError(f"{what} nests deeper than {MAX_DEPTH} levels", reason="depth")
    if not non_finite and _has_infinity(value):
        raise ContractError(f"{what} is not JSON: a number overflows to infinity", reason="json")
    return value


def _has_infinity(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(path: Path, what: str, limit: int) -> object:
    """A JSON file of at most ``limit`` bytes, parsed by ``loads``."""
    path = regular_file(path, what, limit=limit)
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise ContractError(f"unreadable {what} {path.name}: {e.strerror or e}", reason="json") from None
    if len(raw) > limit:  # it grew after the stat
        raise ContractError(f"{what} {path} is larger than {limit >> 20} MiB", reason="size")
    return loads(raw, f"{what} {path.name}")


def dumps(data, indent: int | None = 2) -> str:
    """JSON text of ``data``; NaN and Infinity are refused (no reader of ours, nor JavaScript's, accepts them)."""
    return json.dumps(data, indent=indent, allow_nan=False, ensure_ascii=False) + "\n"


def write_json_atomic(path: Path, data, indent: int | None = 2, limit: int | None = None) -> None:
    """Write ``data`` under a temporary name beside ``path``, then rename: a reader never sees half a file, and an
    interruption leaves no temporary behind. ``limit``: refuse (``ContractError``, nothing written) a file larger than
    its own readers accept."""
    text = dumps(data, indent).encode("utf-8")
    if limit is not None and len(text) > limit:
        raise ContractError(f"{path.name} would be {len(text) / 2**20:.1f} MiB, more than its readers accept "
                            f"({limit >> 20} MiB)", reason="size")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(text)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C and SIGTERM included: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
