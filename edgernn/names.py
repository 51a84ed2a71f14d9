"""Names are data: model, target and device names come from files and users, so control
characters in them (terminal escapes that clear the screen, recolour or retitle it, bidi
overrides) are escaped wherever a name is printed, written to Markdown/HTML or used in a
file name. ``shown`` is for text, ``file_part`` for one path component."""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, and the bidi/zero-width format characters that reorder or hide text
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_FILE = re.compile(r"[^A-Za-z0-9._+@#=-]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def shown(value: Any) -> Any:
    """``value`` with every control character written as a visible escape (``\\x1b``);
    non-strings come back unchanged (tables pass numbers and ``None`` through)."""
    if not isinstance(value, str):
        return value
    return _CONTROL.sub(_escape, value)


def file_part(name: str, limit: int = 80) -> str:
    """``name`` as one safe file-name component: only letters, digits and ``._+@#=-`` kept
    (anything else, ``/`` included, becomes ``_``), no leading dot, at most ``limit`` chars."""
    safe = _UNSAFE_FILE.sub("_", name).lstrip(".")[:limit]
    return safe or "_"


def shown_row(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of a result row with ``shown`` applied to its text values (its notes and its
    device facts too), for tables and reports; numbers and keys are left as they are."""
    out = {k: shown(v) for k, v in row.items()}
    if isinstance(row.get("notes"), list):
        out["notes"] = [shown(n) for n in row["notes"]]
    if isinstance(row.get("device"), dict):
        out["device"] = {k: shown(v) for k, v in row["device"].items()}
    return out
