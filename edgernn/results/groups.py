"""Which bench rows may be ranked against each other: rows of the same kind of model (one
call of a step model covers one step; a whole-sequence call covers every step) judged on the
same evaluation file. select, report, the Pareto plot and bench's verdict rank inside a group
and say which group they ranked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = {"whole": "whole-sequence models", "step": "step models (latency per step call)"}


def row_kind(row: dict[str, Any]) -> str:
    """``step`` for a step model's row (state in, state out: its signature marks a state
    input), else ``whole``."""
    sig = str(row.get("signature") or "")
    return "step" if "(state)" in sig or row.get("step_ms") else "whole"


@dataclass(frozen=True)
class Group:
    """Rows ranked together: one model kind, one evaluation file."""

    kind: str  # whole | step
    data_sha256: str
    data_name: str = ""
    models: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        data = self.data_name or f"data {self.data_sha256[:8] or '?'}"
        return f"{KINDS[self.kind]} judged on {data}: {', '.join(self.models)}"


def group_rows(rows: list[dict[str, Any]]) -> list[tuple[Group, list[dict[str, Any]]]]:
    """Rows split by (kind, evaluation file): whole-sequence groups first, then in order of
    first appearance."""
    parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        parts.setdefault((row_kind(r), r.get("data_sha256") or ""), []).append(r)
    out = []
    for (kind, sha), members in sorted(parts.items(), key=lambda kv: kv[0][0] != "whole"):
        name = next((r["data_name"] for r in members if r.get("data_name")), "")
        models = tuple(dict.fromkeys(r["model"] for r in members))
        out.append((Group(kind, sha, name, models), members))
    return out
