"""The README's "what the demo prints" section, regenerated from a committed demo run.

``edgernn demo`` writes ``runs/demo/bench/results.json`` (every row) and ``verdict.json``;
``--save`` copies both into ``benchmarks/results/demo.json`` (with the machine they ran on),
and the default renders that file as Markdown: the verdict block the demo ends with and the
table of the rows that can ship. ``--write README.md`` replaces the text between the
``<!-- demo:start -->`` and ``<!-- demo:end -->`` markers, so the README never shows numbers
that no committed file holds. Usage:

    python benchmarks/demo_readme.py --save runs/demo/bench    # after ./scripts/demo.sh
    python benchmarks/demo_readme.py --write README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgernn.results.verdict import Verdict, verdict_block  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "demo.json"
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
TOP = 5  # rows per model in the README


def save(bench_dir: Path, dest: Path = RESULTS) -> None:
    """Store a demo's rows (without per-sample records: large, and not shown) and the verdict
    it printed (made from the full rows, with their paired tests)."""
    rows = json.loads((bench_dir / "results.json").read_text())
    for r in rows:
        r.pop("per_sample", None)
    dev = next((r.get("device") for r in rows if r.get("device")), {}) or {}
    dest.write_text(json.dumps({"device": dev, "rows": rows,
                                "verdict": json.loads((bench_dir / "verdict.json").read_text())},
                               indent=1, default=str) + "\n")


def markdown(payload: dict) -> str:
    rows = payload["rows"]
    dev = payload.get("device") or {}
    lat = [r for r in rows if r.get("latency_ms")]
    trials = max((r["latency_ms"].get("trials", 1) for r in lat), default=1)
    stamp = min(str(r.get("timestamp", "")) for r in rows)[:10]
    head = (f"A real run ({stamp}, {dev.get('cpu_model', '?')}, {dev.get('machine', '?')}, 1 "
            f"thread, {trials} timing trials per variant; `benchmarks/results/demo.json`, "
            "rendered by `benchmarks/demo_readme.py`). The demo ends with its verdict:")
    block = verdict_block(Verdict(lines=payload["verdict"]["lines"]), width=100)
    lines = [head, "", "```text", *block, "```", "",
             f"The {TOP} fastest files to ship per model (every row: the JSON file above; the "
             "demo prints them all):", "",
             "| model | variant | size kB | p50 ms | vs torch | accuracy | drop |",
             "|---|---|---:|---:|---:|---:|---:|"]
    base = {r["model"]: r["latency_ms"]["p50"] for r in lat
            if r["variant"].endswith("/torch-fp32")}
    ok = [r for r in lat if r["status"] == "ok" and r.get("format") != "torch"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    top = [r for m in models
           for r in sorted((r for r in ok if r["model"] == m),
                           key=lambda r: r["latency_ms"]["p50"])[:TOP]]
    for r in top:
        p50 = r["latency_ms"]["p50"]
        ratio = f"{p50 / base[r['model']]:.2f}x" if r["model"] in base else "-"
        lines.append(f"| {r['model']} | {r['variant'].split('/', 1)[1]} | "
                     f"{r['size_bytes'] / 1e3:.1f} | {p50:.3f} | {ratio} | {r['value']:.4f} | "
                     f"{r['accuracy_drop']:+.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", type=Path, help="a demo's bench folder to store as demo.json")
    ap.add_argument("--write", type=Path, help="a Markdown file with the demo markers")
    a = ap.parse_args()
    if a.save:
        save(a.save)
    text = markdown(json.loads(RESULTS.read_text()))
    if a.write:
        page = a.write.read_text()
        if START not in page or END not in page:
            raise SystemExit(f"{a.write} has no {START} ... {END} markers")
        page = re.sub(re.escape(START) + ".*?" + re.escape(END),
                      lambda _m: f"{START}\n{text}{END}", page, flags=re.S)
        a.write.write_text(page)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
