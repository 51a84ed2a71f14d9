"""Rows measured in trial 1 that wait for their further timing trials: trials 2..N run
round-robin over them, then fold into each row's latency (``trials.combine``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.errors import RunnerError
from edgernn.measure.rows import latency_of, timed_use
from edgernn.measure.trials import combine, mark_unstable
from edgernn.runners.local import LocalRunner
from edgernn.runners.target import Target


@dataclass
class Pending:
    """A row measured in trial 1 that waits for its further timing trials."""

    row: dict[str, Any]
    job: dict[str, Any]
    files: dict[str, Path]
    local: bool  # measured on this host (the PyTorch baseline) rather than on the target
    store_id: int | None = None  # its row in the results store, rewritten after the trials
    latencies: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def more_trials(pending: list[Pending], trials: int, runner: Any, target: Target,
                step: Callable[[str], None]) -> None:
    """Trials 2..N, round-robin over the pending rows so machine drift hits every variant
    alike; each trial is a fresh process that only times (the first one evaluated)."""
    for p in pending:
        p.latencies = [p.row["latency_ms"]]
    local = None
    try:
        for t in range(2, trials + 1):
            for p in pending:
                step(f"{p.row['variant']}: timing trial {t}/{trials}")
                job = {**p.job, "evaluate": False}
                job.pop("save_outputs", None)
                try:
                    if p.local:
                        local = local or LocalRunner(target)
                        res = local.measure(job, p.files)
                    else:
                        res = timed_use(p.row, runner, job, p.files)
                    p.latencies.append(latency_of(res))
                except RunnerError as e:
                    p.failures.append(f"trial {t}: {e}")
    finally:
        if local is not None:
            local.close()


def finish_trials(p: Pending) -> None:
    """Fold the trials into the row's latency (median of trial medians, spread)."""
    first = p.row["latency_ms"]
    if not first:
        return
    # trial 1's summary comes first, so first-call and load times are trial 1's
    p.row["latency_ms"] = combine(p.latencies or [first])
    if p.failures:
        p.row["notes"] = [*p.row.get("notes", []), *(f"timing {f}" for f in p.failures)]
    mark_unstable(p.row)
