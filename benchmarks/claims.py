"""LSTM or GRU: the folk article's claims, measured on every bundled task (the committed run).

One ``edgernn compare`` of LSTM and GRU on the seven bundled tasks (kws first: it takes
longest), 5 seeds (``DATASET_SEEDS``: 20 on motions, vowels and weather, 10 on demand and
appliances, where training costs minutes; every task benched on its first 5), each contender
trained until its validation metric stops improving (patience 8, at most 80 epochs), then
benched as ONNX fp32 and dynamic int8 on the x86 host
(30 timed runs in 3 interleaved trials per variant). ``edgernn compare`` judges each claim of
the article (GRU ~25% fewer parameters, 20-30% faster training, ~35% faster inference, final
metric within 1 point, LSTM ~8% lower error on long / multi-seasonal data, 31 vs 42 MB; KWS
accuracy GRU 96.2% vs LSTM 96.8%, sentiment F1 0.91 vs 0.92) per task with a 95% interval of
the LSTM-GRU difference over the seeds (and the held-out samples).

Writes ``benchmarks/results/claims.json`` (compare's payload; its ``settings`` also hold the
measured ``wall_seconds``, the exact ``command`` and the ``date``) and
``benchmarks/results/decision.md`` (the decision record compare wrote beside it), then renders
both, so that no hand-typed number describes the run:

* README.md, between ``<!-- claims:begin -->`` and ``<!-- claims:end -->`` (section "LSTM or
  GRU? The article's claims, measured", inserted after the demo section the first time): one
  row per claim with the range measured across tasks and the verdict counts, the keyword
  spotting and sentiment figures, the conditions;
* docs/benchmarks.md, the section "LSTM vs GRU: the folk claims on every bundled task" (its
  body between the same markers): the command, conditions, a per-task table of verdicts and
  picks, the epochs each contender used and its final metric.

The training and bench files go to ``runs/claims/`` (not committed; its own results store).
Usage:

    python benchmarks/claims.py                  # the full run (hours on 2 cores), then render
    python benchmarks/claims.py --render-only    # re-render README.md and docs/ from the JSON
    python benchmarks/claims.py --quick          # smoke run: weather vowels, 2 seeds, 3 epochs
    python benchmarks/claims.py --datasets weather,demand --seeds 3   # experiment
    python benchmarks/claims.py --render-only --results X.json --print  # show, write nothing

``--quick``, ``--datasets`` and ``--seeds`` write their JSON under ``runs/`` (or ``--json``)
and print the rendering instead of touching the committed files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from statistics import mean
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "claims.json"
README = ROOT / "README.md"
DOCS = ROOT / "docs" / "benchmarks.md"
WORK = Path("runs") / "claims"  # relative to ROOT: the command line stays short and portable

DATASETS = ["kws", "sentiment", "appliances", "demand", "motions", "vowels", "weather"]
SEEDS = 5
RUN = {"contenders": "lstm,gru", "jobs": "2", "epochs": "80", "patience": "8", "target": "x86",
       "format": "onnx", "quantize": "dynamic", "runs": "30", "trials": "3"}
# more seeds where training is cheap (minutes for all of them), benched on the first 5 only:
# their intervals narrow as 1/sqrt(seeds) at almost no cost (benching is what costs there)
DATASET_SEEDS = {"motions": 20, "vowels": 20, "weather": 20, "demand": 10, "appliances": 10}
QUICK = {"datasets": ["weather", "vowels"], "seeds": 2,
         "run": {**RUN, "epochs": "3", "patience": "2", "runs": "5", "trials": "2"}}

BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
README_HEADING = "## LSTM or GRU? The article's claims, measured"
DOCS_HEADING = "## LSTM vs GRU: the folk claims on every bundled task"
DOCS_ANCHOR = "lstm-vs-gru-the-folk-claims-on-every-bundled-task"
README_WIDTH = 100  # prose wraps here; table rows stay within 120 columns

# how each claim is named in the tables, and the words of its direction (claimed, opposite)
LABELS = {"parameters": "parameters", "epoch_time": "time per epoch",
          "epochs_to_level": "epochs to a common level", "final_gap": "final metric gap",
          "onnx_fp32_latency": "fp32 ONNX latency", "best_latency": "best variant latency",
          "best_size": "best variant size", "long_gap": "LSTM error on long data"}
WORDS = {"parameters": ("fewer", "more"), "epoch_time": ("faster", "slower"),
         "epochs_to_level": ("fewer", "more"), "onnx_fp32_latency": ("faster", "slower"),
         "best_latency": ("faster", "slower"), "best_size": ("smaller", "larger"),
         "long_gap": ("lower error", "higher error")}
POINT_METRICS = {"accuracy", "macro_f1", "roc_auc"}  # final_gap in points (x100)
SHORT_VERDICT = {"holds": "holds", "does not hold": "no", "inconclusive": "?"}


# ---------------------------------------------------------------- running the study

def compare_argv(datasets: list[str], seeds: int, run: dict[str, str], work: Path,
                 json_path: Path, dataset_seeds: dict[str, int] | None = None) -> list[str]:
    """The ``edgernn compare`` arguments (after ``edgernn``) for one run; ``dataset_seeds``
    (for the datasets run) trains those with more seeds and benches ``seeds`` of each."""
    argv = ["compare", *datasets, "--seeds", str(seeds)]
    more = {k: n for k, n in (dataset_seeds or {}).items() if k in datasets and n != seeds}
    for k, n in more.items():
        argv += ["--dataset-seeds", f"{k}={n}"]
    if more:
        argv += ["--bench-seeds", str(seeds)]
    for k, v in run.items():
        argv += [f"--{k}", v]
    return argv + ["--json", str(json_path), "--out", str(work), "--db",
                   str(work / "store.sqlite")]


def run_study(argv: list[str], work: Path) -> tuple[dict[str, Any], float]:
    """Run compare (output streamed and kept in ``work/compare.log``); its payload and the
    wall time in seconds. The work folder starts empty (its own store too: no rows of an
    earlier run are reused)."""
    if (ROOT / work).exists():
        print(f"removing the previous {work}/", flush=True)
        shutil.rmtree(ROOT / work)
    (ROOT / work).mkdir(parents=True)
    cmd = [sys.executable, "-m", "edgernn.cli", *argv]
    print("$ edgernn", shlex.join(argv), flush=True)
    t0 = time.monotonic()
    with open(ROOT / work / "compare.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"edgernn compare failed (exit {rc}); log: {work / 'compare.log'}")
    json_path = ROOT / argv[argv.index("--json") + 1]
    return json.loads(json_path.read_text()), wall


def stamp(payload: dict[str, Any], argv: list[str], wall: float) -> dict[str, Any]:
    """Add what the payload cannot know itself: the command line, wall time and date."""
    settings = payload.setdefault("settings", {})
    settings["command"] = "edgernn " + shlex.join(argv)
    settings["wall_seconds"] = round(wall, 1)
    settings["date"] = datetime.date.today().isoformat()
    return payload


# ---------------------------------------------------------------- reading the payload

def _by_key(claims: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in claims:
        out.setdefault(c["key"], []).append(c)
    return out


def picks(decision_md: str) -> dict[str, str]:
    """dataset -> the recommendation of decision.md (``## name`` ... ``**Recommendation: X.**``)."""
    out, name = {}, None
    for line in decision_md.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
        m = re.match(r"\*\*Recommendation: (.+?)\.?\*\*", line.strip())
        if m and name:
            out[name] = m.group(1)
    return out


def _pct(x: float) -> str:
    return f"{abs(x):.0%}"


def rel_range(values: list[float], words: tuple[str, str]) -> str:
    """Relative advantages (positive = the claimed direction) as one range in words:
    ``3-25% fewer``, ``5-60% slower``, ``60% slower to 10% faster``."""
    lo, hi = min(values), max(values)
    if lo >= 0 or hi <= 0:
        a, b = sorted((_pct(lo), _pct(hi)), key=lambda s: float(s[:-1]))
        word = words[0] if lo >= 0 else words[1]
        return f"{a} {word}" if a == b else f"{a[:-1]}-{b} {word}"
    return f"{_pct(lo)} {words[1]} to {_pct(hi)} {words[0]}"


def _num_range(values: list[float], fmt: str, unit: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return f"{lo}{unit}" if lo == hi else f"{lo}-{hi}{unit}"


def _tasks(n: int) -> str:
    return f"{n} task{'s' if n != 1 else ''}"


def gap_range(claims: list[dict[str, Any]], datasets: dict[str, Any]) -> str:
    """The final-metric gaps across tasks, as sizes: points for shares (accuracy, F1), the
    share of the LSTM's value for the others (errors)."""
    points, rel = [], []
    for c in claims:
        if c.get("measured") is None:
            continue
        metric = (datasets.get(c["dataset"]) or {}).get("metric")
        if metric in POINT_METRICS:
            points.append(abs(c["measured"]) * 100)
        else:
            lstm = (c.get("values") or {}).get("lstm") or []
            ref = abs(mean(lstm)) if lstm else 0.0
            if ref:
                rel.append(abs(c["measured"]) / ref * 100)
    parts = []
    if points:
        parts.append(_num_range(points, ".1f", " points") + f" ({_tasks(len(points))})")
    if rel:
        parts.append(_num_range(rel, ".0f", "% of the error") + f" ({_tasks(len(rel))})")
    return "; ".join(parts) or "-"


def measured_range(key: str, claims: list[dict[str, Any]], datasets: dict[str, Any]) -> str:
    if key == "final_gap":
        return gap_range(claims, datasets)
    vals = [c["measured"] for c in claims if c.get("measured") is not None]
    if not vals:
        return "-"
    return rel_range(vals, WORDS.get(key, ("better", "worse")))


def counts(claims: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(holds, does not hold, inconclusive) among one claim's verdicts."""
    v = [c.get("holds") for c in claims]
    return v.count(True), v.count(False), sum(x is None for x in v)


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{seconds / 60:.1f} min"


def conditions(settings: dict[str, Any]) -> str:
    """The run's conditions in compare's own words (``conditions_text``)."""
    from edgernn.study.conditions import conditions_text

    return conditions_text(settings.get("conditions") or {})


def _seeds(payload: dict[str, Any]) -> str:
    """How many seeds: ``5``, or ``5-20`` when some tasks had more."""
    counts = [len(d.get("seeds") or []) for d in (payload.get("datasets") or {}).values()]
    counts = [n for n in counts if n] or [len(payload.get("seeds") or [])]
    lo, hi = min(counts), max(counts)
    return "?" if not hi else str(hi) if lo == hi else f"{lo}-{hi}"


def figure_text(payload: dict[str, Any], dataset: str, what: str) -> str | None:
    """The article's own figure for one task beside the measured one (final_gap of that task)."""
    c = next((c for c in payload.get("claims") or []
              if c["dataset"] == dataset and c["key"] == "final_gap"), None)
    if c is None or not c.get("article_figure"):
        return None
    return (f"{what} (`{dataset}`): the article's {c['article_figure']}, measured "
            f"{c.get('measured_figure') or 'not measured'} (within 1 point: {c['verdict']}).")


# ---------------------------------------------------------------- README

def readme_section(payload: dict[str, Any]) -> str:
    """The README's lines between the markers: <= ~20 lines, the table <= 120 columns."""
    claims = payload.get("claims") or []
    datasets = payload.get("datasets") or {}
    settings = payload.get("settings") or {}
    by_key = _by_key(claims)
    n_tasks = len(datasets)
    targets = ", ".join(settings.get("targets") or ["-"])
    intro = (f"LSTM vs GRU on {n_tasks} bundled tasks x {_seeds(payload)} seeds (early stopping, "
             f"ONNX on {targets}): a verdict needs the whole 95% interval on one side of the "
             "claim's threshold (`benchmarks/results/claims.json`):")
    lines = [*textwrap.wrap(intro, README_WIDTH, break_on_hyphens=False), "",
             "| claim | article | measured across tasks | holds | does not hold | inconclusive |",
             "|---|---|---|---:|---:|---:|"]
    for key, cs in by_key.items():
        h, n, q = counts(cs)
        article = cs[0].get("article", "-")
        lines.append(f"| {LABELS.get(key, key)} | {article} | "
                     f"{measured_range(key, cs, datasets)} | {h} of {len(cs)} | "
                     f"{n} of {len(cs)} | {q} of {len(cs)} |")
    lines.append("")
    share = sum(c.get("holds") is None for c in claims) / len(claims) if claims else 0.0
    bullets = [figure_text(payload, ds, what)
               for ds, what in (("kws", "Keyword spotting"), ("sentiment", "Sentiment"))]
    bullets.append(f"Measured on {conditions(settings)}; wall time "
                   f"{_wall(settings.get('wall_seconds'))}; {_seeds(payload)} seeds; {share:.0%} "
                   f"of the {len(claims)} verdicts inconclusive. Per task: "
                   f"[docs/benchmarks.md](docs/benchmarks.md#{DOCS_ANCHOR}).")
    for b in bullets:
        if b:
            lines += textwrap.wrap(b, README_WIDTH, initial_indent="- ", subsequent_indent="  ",
                                   break_on_hyphens=False, break_long_words=False)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- docs/benchmarks.md

def short_cell(c: dict[str, Any]) -> str:
    """``verdict measured`` without the interval: ``holds 24.8% fewer``, ``? 27.0% slower``."""
    text = c.get("measured_text") or "-"
    text = re.sub(r"\s*\(95%:[^)]*\)", "", text)
    text = re.sub(r"\s*\[[^\]]*\]", "", text)
    if text.strip() in ("", "-"):
        return "-"
    return f"{SHORT_VERDICT.get(c.get('verdict', ''), c.get('verdict', '?'))} {text.strip()}"


def _span(vals: list[Any]) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _seed_text(payload: dict[str, Any], seeds: list[int]) -> str:
    """``0-4`` or, where some tasks had more seeds (benched on fewer), which."""
    def span(v: list[int]) -> str:
        return f"{v[0]}-{v[-1]}" if len(v) > 2 else ", ".join(map(str, v))
    text = span(seeds) if seeds else "?"
    more = {n: d for n, d in (payload.get("datasets") or {}).items()
            if d.get("seeds") and d["seeds"] != seeds}
    if more:
        text += " (" + "; ".join(
            f"{n}: {span(d['seeds'])}, benched {span(d.get('bench_seeds') or d['seeds'])}"
            for n, d in more.items()) + ")"
    return text


def docs_section(payload: dict[str, Any], pick: dict[str, str]) -> str:
    """docs/benchmarks.md's lines between the markers."""
    claims = payload.get("claims") or []
    datasets = payload.get("datasets") or {}
    settings = payload.get("settings") or {}
    contenders = payload.get("contenders") or []
    keys = list(_by_key(claims))
    seeds = payload.get("seeds") or []
    head = (f"`python benchmarks/claims.py` ran ({settings.get('date', 'date not recorded')}, "
            f"wall time {_wall(settings.get('wall_seconds'))}):")
    lines = [head, "", "```bash", settings.get("command") or "(command not recorded)", "```", "",
             *textwrap.wrap(
                 f"on {conditions(settings)} ({(settings.get('conditions') or {}).get('os', '?')}"
                 f"). Seeds {_seed_text(payload, seeds)}; each contender trained until its "
                 f"validation metric stopped improving (patience {settings.get('patience')}, "
                 f"at most {settings.get('epochs')} epochs), the best epoch kept. Every interval "
                 "and paired test: `benchmarks/results/claims.json`; the decision record: "
                 "`benchmarks/results/decision.md`. Cells: verdict (`holds`, `no` = does not "
                 "hold, `?` = inconclusive: the 95% interval of the LSTM-GRU difference "
                 "straddles the claim's threshold: an advantage of 5% for faster, fewer, "
                 "smaller, lower error; 1 point for nearly equal) and the measured value; `pick` is "
                 "`decision.md`'s recommendation; `long`: data counted long or multi-seasonal, the "
                 "only tasks with the LSTM-error claim.", 100), ""]
    articles = {k: next(c["article"] for c in claims if c["key"] == k) for k in keys}
    lines.append("| dataset (steps) | " + " | ".join(f"{LABELS.get(k, k)}: {articles[k]}"
                                                    for k in keys) + " | pick |")
    lines.append("|---|" + "---|" * len(keys) + "---|")
    cell = {(c["dataset"], c["key"]): short_cell(c) for c in claims}
    for name, info in datasets.items():
        long = ", long" if info.get("long_reason") else ""
        lines.append(f"| {name} ({info.get('seq_len', '?')}{long}) | "
                     + " | ".join(cell.get((name, k), "-") for k in keys)
                     + f" | {pick.get(name, '-')} |")
    lines += ["", *textwrap.wrap("Per contender, over the seeds: the epoch kept (`used`) and the "
                                 "epochs trained before stopping (`run`), min-max; the final "
                                 "metric on the held-out data, mean.", 100),
              "", "| dataset | metric | train / held-out | contender | layers | parameters | "
                  "epochs used | epochs run | final (mean) |",
              "|---|---|---|---|---|---:|---:|---:|---:|"]
    for name, info in datasets.items():
        rows = [c for c in contenders if c.get("dataset") == name]
        for cname in dict.fromkeys(c["contender"] for c in rows):
            cs = [c for c in rows if c["contender"] == cname]
            finals = [c["final"] for c in cs if c.get("final") is not None]
            samples = info.get("samples") or ["?", "?"]
            layers = ", ".join(dict.fromkeys(str(c.get("layers", "?")) for c in cs))
            params = ", ".join(dict.fromkeys(f"{c['parameters']:,}" for c in cs
                                             if c.get("parameters") is not None)) or "-"
            lines.append(f"| {name} | {info.get('metric', '?')} | {samples[0]} / {samples[1]} | "
                         f"{cname} | {layers} | {params} | "
                         f"{_span([c.get('epochs_used') for c in cs])} | "
                         f"{_span([c.get('epochs_run') for c in cs])} | "
                         f"{format(mean(finals), '.4g') if finals else '-'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- writing the pages

def between(page: str) -> str | None:
    """The text between the claims markers of a page, or None without markers."""
    if BEGIN not in page or END not in page:
        return None
    return page.split(BEGIN + "\n", 1)[1].split(END, 1)[0]


def _replace(page: str, text: str) -> str:
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                  lambda _m: f"{BEGIN}\n{text}{END}", page, count=1, flags=re.S)


def splice_readme(page: str, text: str) -> str:
    """Replace the README's claims section; the first time, insert it (heading + markers)
    after the demo section (before the next ``## `` heading after ``<!-- demo:end -->``)."""
    if between(page) is not None:
        return _replace(page, text)
    block = f"{README_HEADING}\n\n{BEGIN}\n{text}{END}\n\n"
    at = page.find("<!-- demo:end -->")
    nxt = page.find("\n## ", at if at >= 0 else 0)
    if nxt < 0:
        return page.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n"
    return page[:nxt + 1] + block + page[nxt + 1:]


def splice_docs(page: str, text: str) -> str:
    """Replace docs/benchmarks.md's claims section; the first time, its whole old body (up to
    the next ``## `` heading) goes, the heading stays."""
    if between(page) is not None:
        return _replace(page, text)
    at = page.find(DOCS_HEADING + "\n")
    if at < 0:
        raise SystemExit(f"{DOCS.name} has neither the claims markers nor '{DOCS_HEADING}'")
    body = at + len(DOCS_HEADING) + 1
    nxt = page.find("\n## ", body)
    end = len(page) if nxt < 0 else nxt + 1
    return page[:body] + f"{BEGIN}\n{text}{END}\n\n" + page[end:]


def load(results: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The payload and decision.md's picks beside it."""
    if not results.exists():
        raise SystemExit(f"{results} does not exist: run `python benchmarks/claims.py` first")
    payload = json.loads(results.read_text())
    decision = results.parent / "decision.md"
    return payload, picks(decision.read_text()) if decision.exists() else {}


def render(results: Path = RESULTS, readme: Path | None = README,
           docs: Path | None = DOCS) -> tuple[str, str]:
    """Render ``results``; write the sections into the pages given (None: only return them)."""
    payload, pick = load(results)
    r, d = readme_section(payload), docs_section(payload, pick)
    if readme is not None:
        readme.write_text(splice_readme(readme.read_text(), r))
    if docs is not None:
        docs.write_text(splice_docs(docs.read_text(), d))
    return r, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render-only", action="store_true",
                    help="only re-render README.md and docs/benchmarks.md from the JSON")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (weather vowels, 2 seeds, 3 epochs) to runs/, printed")
    ap.add_argument("--datasets", help="comma-separated tasks instead of the seven (experiment)")
    ap.add_argument("--seeds", type=int, help=f"seeds instead of {SEEDS} (experiment)")
    ap.add_argument("--json", type=Path, help="where the run's JSON goes (default: the "
                    "committed file for the full run, runs/claims-*/claims.json otherwise)")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="with --render-only: the JSON to render")
    ap.add_argument("--print", action="store_true", help="print the sections, write no page")
    a = ap.parse_args()

    if a.render_only:
        committed = a.results.resolve() == RESULTS.resolve() and not a.print
        r, d = render(a.results, README if committed else None, DOCS if committed else None)
        if committed:
            print(f"rendered {RESULTS.relative_to(ROOT)} into README.md and docs/benchmarks.md")
        else:
            print(f"# README.md section\n\n{r}\n# docs/benchmarks.md section\n\n{d}", end="")
        return

    experiment = a.quick or a.datasets is not None or a.seeds is not None
    datasets = (a.datasets.split(",") if a.datasets
                else QUICK["datasets"] if a.quick else DATASETS)
    seeds = a.seeds or (QUICK["seeds"] if a.quick else SEEDS)
    run = QUICK["run"] if a.quick else RUN
    work = (WORK.with_name("claims-quick") if a.quick
            else WORK.with_name("claims-try") if experiment else WORK)
    out_json = a.json or (RESULTS if not experiment else ROOT / work / "claims.json")
    run_json = work / "claims.json"  # compare writes here; decision.md beside it
    argv = compare_argv(datasets, seeds, run, work, run_json,
                        None if a.quick or a.seeds else DATASET_SEEDS)
    payload, wall = run_study(argv, work)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(stamp(payload, argv, wall), indent=1) + "\n")
    if (ROOT / work / "decision.md").resolve() != (out_json.parent / "decision.md").resolve():
        shutil.copyfile(ROOT / work / "decision.md", out_json.parent / "decision.md")
    print(f"wrote {out_json} and decision.md beside it ({_wall(wall)})")
    committed = out_json.resolve() == RESULTS.resolve()
    r, d = render(out_json, README if committed else None, DOCS if committed else None)
    if committed:
        print("rendered into README.md and docs/benchmarks.md")
    else:
        print(f"\n# README.md section\n\n{r}\n# docs/benchmarks.md section\n\n{d}", end="")


if __name__ == "__main__":
    main()
