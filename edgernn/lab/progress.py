"""The sweep's live view: tasks queued / running / done / failed per device, and the
conversions; one line per finished task when the output is not a terminal."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

CONVERT = "(conversions)"


@dataclass
class Counts:
    queued: int = 0
    running: int = 0
    done: int = 0
    reused: int = 0
    failed: int = 0
    busy_s: float = 0.0
    current: str = ""


@dataclass
class Progress:
    """Counts per lane (a device, or the cluster's CPUs for conversions)."""

    console: Console
    lanes: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    started: float = field(default_factory=time.monotonic)
    _live: Live | None = None
    _done: int = 0

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(*exc)
            self._live = None

    def start(self, lane: str, what: str) -> None:
        c = self.lanes[lane]
        c.running += 1
        c.current = what
        self.refresh()

    def finish(self, lane: str, what: str, outcome: str, seconds: float,
               reused: bool = False, failed: bool = False, count: int = 1) -> None:
        """A task ended; ``count``: the variants it covered (a batch of stored rows)."""
        c = self.lanes[lane]
        c.running -= 1
        c.busy_s += seconds
        c.current = ""
        if failed:
            c.failed += count
        elif reused:
            c.reused += count
        else:
            c.done += count
        self._done += count
        if self._live is None:
            self.console.print(f"[{self._done}/{self.total()}] {lane}: {what}: {outcome} "
                               f"({seconds:.1f} s)", highlight=False, soft_wrap=True)
        self.refresh()

    def total(self) -> int:
        return sum(c.queued + c.running + c.done + c.reused + c.failed for c in self.lanes.values())

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.table())

    def table(self) -> Table:
        t = Table(title=f"sweep: {time.monotonic() - self.started:.0f} s", title_justify="left")
        for col in ("device", "queued", "running", "done", "reused", "failed", "busy s", "now"):
            t.add_column(col, justify="left" if col in ("device", "now") else "right",
                         overflow="fold", max_width=40 if col == "now" else None)
        for lane in sorted(self.lanes, key=lambda x: (x != CONVERT, x)):
            c = self.lanes[lane]
            t.add_row(lane, str(c.queued), str(c.running), str(c.done), str(c.reused),
                      f"[red]{c.failed}[/]" if c.failed else "0", f"{c.busy_s:.0f}", c.current)
        return t
