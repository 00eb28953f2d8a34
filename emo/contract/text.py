"""Text that crosses a trust boundary: class names (they become lines of labels.txt and keys of metadata) and what
devices and result files report (it is printed to a terminal).

A class name is 1..256 characters, not blank, without control characters: C0, DEL, C1, the line and paragraph
separators U+2028/U+2029 (a newline in a name would shift every later label of a labels.txt; an escape sequence would
drive the user's terminal), the bidirectional controls (U+061C, U+200E/U+200F, U+202A-U+202E, U+2066-U+2069: a name
would display as other text) and U+FEFF. "Blank" means only white space (Unicode White_Space, as Python's
``str.isspace``). The same rule is the sidecar schema's ``$defs.label`` pattern and is checked by every reader.
"""

from __future__ import annotations

import re

MAX_LABEL_CHARS = 256
MAX_PRINTED_CHARS = 120
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]")
# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), two-character escapes, and the 8-bit CSI
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"
                              r"|\x9b[0-?]*[ -/]*[@-~]")


def label_problem(name: object) -> str | None:
    """Why ``name`` cannot be a class name (None when it can)."""
    if not isinstance(name, str):
        return "is not a string"
    if not name.strip():
        return "is blank"
    if len(name) > MAX_LABEL_CHARS:
        return f"is longer than {MAX_LABEL_CHARS} characters"
    if CONTROL.search(name):
        return "holds a control character (a newline, tab, terminal escape or bidirectional control)"
    return None


def printable(value: object, limit: int = MAX_PRINTED_CHARS) -> str:
    """``value`` as text safe for a terminal and a table cell: escape sequences and control characters removed,
    cut to ``limit`` characters."""
    text = CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(value)))
    return text if len(text) <= limit else text[:limit - 1] + "…"
