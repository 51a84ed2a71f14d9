"""The decision record (``decision.md``): the usual five questions (resource limits, sequence
length, problem complexity, dataset size, experiment budget) answered from what ``compare``
measured, a recommendation with its reasons, and the evidence. Made from ``compare.json``
alone, so it can be rebuilt from the stored results (``edgernn decision compare.json``)."""

from __future__ import annotations

from statistics import mean
from typing import Any

from edgernn.probe.metrics import HIGHER_IS_BETTER

SHORT_STEPS = 100  # the framework's "short" (< 100 steps) vs hundreds or thousands


def _by(items: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        out.setdefault(it[key], []).append(it)
    return out


def _claim(claims: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((c for c in claims if c.get("key") == key and not c.get("target")), None)


def _budget_text(settings: dict[str, Any]) -> str:
    b = settings.get("budget") or {}
    parts = [f"latency <= {b['max_latency_ms']:g} ms" if b.get("max_latency_ms") else "",
             f"size <= {b['max_size_mb']:g} MB" if b.get("max_size_mb") else "",
             f"drop <= {b['max_drop']:g}" if b.get("max_drop") is not None else ""]
    parts = [p for p in parts if p]
    targets = ", ".join(settings.get("targets") or []) or "none (not benched)"
    return f"targets {targets}; budget: {', '.join(parts) or 'none given'}"


def _best(contenders: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """The first seed's best deployable variant per target of one contender."""
    mine = sorted((c for c in contenders if c["contender"] == name), key=lambda c: c["seed"])
    return (mine[0].get("best_variant") or {}) if mine else {}


def recommend(info: dict[str, Any], contenders: list[dict[str, Any]],
              claims: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """LSTM or GRU for one dataset, and why. Order of the rules: a significant accuracy (or
    error) gap decides; otherwise the deployable cost on the targets (latency, then size);
    otherwise the smaller model (parameters are deterministic)."""
    metric = info["metric"]
    gap = _claim(claims, "long_gap") or _claim(claims, "final_gap")
    finals = {n: mean(c["final"] for c in cs) for n, cs in _by(contenders, "contender").items()}
    tests = (gap or {}).get("paired_tests") or []
    significant = [t for t in tests if t.get("significant")]
    iv = (gap or {}).get("interval") or {}
    why: list[str] = []
    # the gap's interval over seeds and samples excludes 0 (older files: every seed's test)
    decides = (iv.get("low", 0) > 0 or iv.get("high", 0) < 0) if iv.get("seeds") else \
        bool(tests) and len(significant) == len(tests)
    if gap and decides:
        higher = HIGHER_IS_BETTER.get(metric, True)
        lstm_better = (finals["lstm"] > finals["gru"]) == higher
        pick = "lstm" if lstm_better else "gru"
        why.append(f"accuracy decides: {metric} LSTM {finals['lstm']:.4g} vs GRU "
                   f"{finals['gru']:.4g}, a difference whose 95% interval excludes 0 "
                   f"({gap['measured_text']})")
        return pick, why
    if gap:
        why.append(f"accuracy does not decide: {metric} LSTM {finals['lstm']:.4g} vs GRU "
                   f"{finals['gru']:.4g} ({gap['verdict']}: {gap['measured_text']})")
    for key, what in (("best_latency", "latency"), ("best_size", "size")):
        judged = [c for c in claims if c.get("key") == key and c.get("holds") is not None]
        if judged:  # the claim says the GRU's is better: holds -> GRU, does not hold -> LSTM
            c = judged[0]
            why.append(f"deployed {what} decides on {c['target']}: {c['detail']}")
            return ("gru" if c["holds"] else "lstm"), why
    params = _claim(claims, "parameters")
    why.append("latency and size do not decide (not benched, or inside the noise); the "
               "smaller model is kept" + (f": {params['detail']}" if params else ""))
    return ("gru" if not params or params.get("holds") is not False else "lstm"), why


def _epochs_text(settings: dict[str, Any], contenders: list[dict[str, Any]]) -> str:
    """Epochs spent: fixed, or early stopping with the epochs each contender used."""
    if not settings.get("patience"):
        return f"{settings.get('epochs')} epochs"
    used = []
    for name, cs in _by(contenders, "contender").items():
        eps = [c.get("epochs_used") for c in cs if c.get("epochs_used")]
        if eps:
            lo, hi = min(eps), max(eps)
            used.append(f"{name} {lo}" + (f"-{hi}" if hi != lo else ""))
    return (f"until the validation metric stopped improving (patience {settings['patience']}, "
            f"at most {settings.get('epochs')} epochs; epochs kept: "
            f"{', '.join(used) or 'not recorded'})")


def questions(info: dict[str, Any], settings: dict[str, Any],
              claims: list[dict[str, Any]],
              contenders: list[dict[str, Any]] = ()) -> list[tuple[str, str]]:  # type: ignore[assignment]
    """The five questions with their answers from the data and the measurements."""
    steps = info["seq_len"]
    length = (f"{steps} steps: short (< {SHORT_STEPS}), where the folklore expects little "
              "difference" if steps < SHORT_STEPS else
              f"{steps} steps: long, where the folklore expects the LSTM to help")
    if info.get("long_reason"):
        length += f" (counted long: {info['long_reason']})"
    gap = _claim(claims, "long_gap") or _claim(claims, "final_gap")
    complexity = (f"{info['task']} ({info['metric']}); measured gap: "
                  + (f"{gap['measured_text']} ({gap['verdict']})" if gap else "not measured"))
    n_train, n_test = info["samples"]
    size = (f"{n_train} training / {n_test} held-out samples"
            + ("; small: differences below a few points cannot be resolved" if n_test < 500
               else ""))
    hidden = settings.get("hidden") or sorted({c["layers"] for c in contenders}) or "?"
    hidden = ", ".join(hidden) if isinstance(hidden, list) else f"hidden {hidden}"
    seeds = info.get("seeds") or settings.get("seeds") or []
    benched = info.get("bench_seeds") or seeds
    spent = (f"{len(seeds)} seed(s)"
             + (f" ({len(benched)} benched)" if len(benched) != len(seeds) else "")
             + ", each trained "
             f"{_epochs_text(settings, list(contenders))}; {hidden}"
             + (f"; training batches augmented: {info['augment']}" if info.get("augment")
                else ""))
    return [("Resource limits", _budget_text(settings)), ("Sequence length", length),
            ("Problem complexity", complexity), ("Dataset size", size),
            ("Experiment budget", spent)]


def decision_markdown(payload: dict[str, Any]) -> str:
    """``decision.md`` for every dataset in a ``compare.json`` payload."""
    settings = payload.get("settings") or {}
    settings = {**settings, "seeds": payload.get("seeds")}
    lines = ["# LSTM or GRU: decision record", "",
             "Made by `edgernn compare` from its measurements (`compare.json`); rebuild with "
             "`edgernn decision compare.json`.", ""]
    claims_by = _by(payload.get("claims") or [], "dataset")
    cont_by = _by(payload.get("contenders") or [], "dataset")
    for name, info in (payload.get("datasets") or {}).items():
        claims, contenders = claims_by.get(name, []), cont_by.get(name, [])
        pick, why = recommend(info, contenders, claims)
        lines += [f"## {name}", "", "| question | answer from the data |", "|---|---|"]
        lines += [f"| {q} | {a} |" for q, a in questions(info, settings, claims, contenders)]
        lines += ["", f"**Recommendation: {pick.upper()}.**", ""]
        lines += [f"- {w}" for w in why]
        best = _best(contenders, pick)
        for t, b in sorted(best.items()):
            if b.get("variant"):
                lines.append(f"- ship on {t}: {b['variant']} ({b['latency_ms']:.3g} ms, "
                             f"{b['size_bytes'] / 1e3:.1f} kB, drop {b['drop']:+.4g})"
                             + (" (emulated timing)" if b.get("emulated") else ""))
        lines += ["", "| claim | article | measured | verdict |", "|---|---|---|---|"]
        lines += [f"| {c['claim']}{' on ' + c['target'] if c.get('target') else ''} | "
                  f"{c['article']} | {c['measured_text']} | {c['verdict']} |" for c in claims]
        lines.append("")
    return "\n".join(lines)
