"""Footnotes under a table: one legend line per distinct note, whichever rows carry it.
Failure reasons come first, then notes by how many rows carry them; a note every row carries
is said once without a mark. By default the legend is cut to a few one-line entries and says
so; the full text is in the rows (JSON) and under ``--notes``."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_LIMIT = 8  # legend lines shown by default (with the count of the rest, the column legend: <= 12)


def ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3,7``."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


@dataclass
class Footnotes:
    """Notes per table row (in row order), numbered once each."""

    per_row: list[list[str]]
    first: set[str] = field(default_factory=set)  # e.g. failure reasons: numbered first
    numbers: dict[str, int] = field(init=False)
    everywhere: list[str] = field(init=False)  # notes on every row: said once, unmarked

    def __post_init__(self) -> None:
        count: dict[str, int] = {}
        for texts in self.per_row:
            for t in dict.fromkeys(texts):
                count[t] = count.get(t, 0) + 1
        rows = len(self.per_row)
        self.everywhere = [t for t, n in count.items() if rows > 1 and n == rows]
        order = list(count)  # first appearance
        marked = [t for t in order if t not in self.everywhere]
        marked.sort(key=lambda t: (t not in self.first, -count[t] if t not in self.first else 0))
        self.numbers = {t: i + 1 for i, t in enumerate(marked)}
        self.count = count

    def mark(self, row: int, limit: int | None = DEFAULT_LIMIT) -> str:
        """The row's marks, e.g. `` [1-3,7]`` ('' for none); with ``limit``, only the notes
        the legend shows (``legend(limit)``)."""
        top = None if limit is None else max(0, limit - len(self.everywhere))
        nums = [self.numbers[t] for t in self.per_row[row]
                if t in self.numbers and (top is None or self.numbers[t] <= top)]
        return f" [{ranges(nums)}]" if nums else ""

    def legend(self, limit: int | None = DEFAULT_LIMIT, width: int | None = 120,
               more: str = "--notes shows every note in full") -> list[str]:
        """Legend lines: ``[n] text (k rows)``; with ``limit``, at most that many, each cut to
        ``width`` with an ellipsis, and a last line saying what was left out."""
        entries: list[tuple[int | None, str]] = [(None, f"every row: {t}")
                                                 for t in self.everywhere]
        for t, n in self.numbers.items():
            k = self.count[t]
            entries.append((n, f"[{n}] " + (f"{k} rows: " if k > 1 else "") + t))
        if limit is None:
            return [x for _, x in entries]
        shown = [_cut(x, width) for _, x in entries[:limit]]
        if len(entries) > limit:
            hidden = {t for t, n in self.numbers.items() if n > limit - len(self.everywhere)}
            rows = sum(1 for texts in self.per_row if hidden & set(texts))
            shown.append(f"{len(entries) - limit} more note(s) on {rows} row(s), not marked "
                         f"above: {more}")
        return shown


def _cut(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"
