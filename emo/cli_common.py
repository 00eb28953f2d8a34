"""What every command line of EMO Mobile shares: exit codes, an argparse that reports a usage error as one line,
the decorator that turns any error into one line and its exit code, and small option and file helpers.

Used by emo-export/emo-verify/emo-predict (``emo.export.cli``) and by emo-train/emo-eval, so that neither side imports
the other's internals. No torch import (``emo-web-demo`` uses it too).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import sys
from pathlib import Path

from emo.errors import EMOError, Terminated, raise_terminated

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_CHECKED = 1, 2, 3


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2), like every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line_errors(main):
    """A console script's entry point around ``main(argv) -> exit code``: bad input (``EMOError``) is one line on
    stderr and exit 2; Ctrl-C and SIGTERM exit 130 and 143 after the clean-up their ``finally`` blocks do."""
    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        prog = main.__name__.replace("_main", "").replace("_", "-")
        try:
            return main(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2, one line, printed already)
            return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
        except EMOError as e:
            print(f"emo-{prog}: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except Terminated:
            print(f"emo-{prog}: terminated (nothing half-written was left behind)", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print(f"emo-{prog}: interrupted (nothing half-written was left behind)", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `emo-predict ... | head`: the reader left, nothing more to say
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python's exit flush quiet
            return 0

    def entry(argv: list[str] | None = None) -> int:
        if argv is None:  # console script: SIGTERM cleans up as Ctrl-C does
            signal.signal(signal.SIGTERM, raise_terminated)
        code = wrapper(argv)
        if argv is None:
            sys.exit(code)
        return code

    return entry


def parse_input_size(text: str) -> tuple[int, int]:
    """``224`` or ``HxW`` (``200x264``); each side 32..4096 (EMO downsamples by 32)."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*(?:[xX]\s*(\d{1,6})\s*)?", text)
    if not match:
        raise EMOError(f"--input-size {text!r} is not a size; use N (square) or HxW, e.g. 224 or 200x264")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) else h
    if not (32 <= h <= 4096 and 32 <= w <= 4096):
        raise EMOError(f"--input-size {text!r} is out of range; each side must be 32..4096 pixels")
    return h, w


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=False)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines)




def check_out_dir(out: Path) -> None:
    """Create ``out`` and prove it writable, before any slow work."""
    if out.exists() and not out.is_dir():
        raise EMOError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".emo-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise EMOError(f"cannot write to --out {out}: {e.strerror or e}") from None
