"""Sweep files: which models, data, targets, formats, quantizations and bench settings.

A sweep file is YAML; relative paths are relative to the file::

    models: [models/*.pt, {path: kws_step.pt, inputs: ["x:1x40", "h:1x64:state"],
                           states: ["h=h_out"]}]
    data: eval.npz
    targets: [x86, rpi-lab]          # names, aliases or .yaml paths; a group's boards share work
    formats: [onnx, tflite]          # optional (default: each target's own)
    quantize: [dynamic, fp16, int8]  # optional (default: each target's own)
    bench: {runs: 100, min_seconds: 1, warmup: 20, trials: 3, threads: 1}
    artifacts: /shared/edgernn-sweep # optional: exports by content hash (default: beside the file)
    convert_memory_gb: 4             # optional: Ray memory request of a conversion task
    db: postgresql://lab-db/edgernn  # optional: results store (--db wins)
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError
from edgernn.limits import finite_number, load_yaml

_LOAD_KEYS = {"inputs": list, "states": list, "input_shape": str, "input_dtype": str,
              "task": str, "trust_pickle": bool, "imports": list}
_BENCH_KEYS = {"runs": int, "min_seconds": (int, float), "warmup": int, "trials": int,
               "threads": int, "eval_batch": int, "collapse": (int, float), "step_ms": (int, float),
               "max_drop": (int, float), "per_op": bool, "tune": bool}
_BOUNDS = {"runs": (1, 10**7), "trials": (1, 100), "threads": (1, 1024), "eval_batch": (1, 10**5),
           "warmup": (0, 10**6), "min_seconds": (0, 86400), "step_ms": (1e-6, 10**6)}
_TOP_KEYS = {"models", "data", "targets", "formats", "quantize", "bench", "artifacts",
             "convert_memory_gb", "db", "calib"}


@dataclass(frozen=True)
class ModelEntry:
    """One model of a sweep and how to read it (the ``--input``/``--state`` options)."""

    path: Path
    load: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepSpec:
    path: Path
    models: list[ModelEntry]
    data: Path
    targets: list[str]
    formats: list[str] | None = None
    quantize: list[str] | None = None
    bench: dict[str, Any] = field(default_factory=dict)
    artifacts: Path | None = None
    convert_memory_gb: float | None = None
    db: str | None = None
    calib: Path | None = None


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep file; one-line errors name the file and the key."""
    if not path.is_file():
        raise EdgeRNNError(f"sweep file {path} does not exist")
    data = load_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise EdgeRNNError(f"sweep file {path} must be a mapping (models, data, targets, ...)")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise EdgeRNNError(f"sweep file {path}: unknown key {unknown[0]!r} (known: "
                           f"{', '.join(sorted(_TOP_KEYS))})")
    for key in ("models", "data", "targets"):
        if not data.get(key):
            raise EdgeRNNError(f"sweep file {path} lacks {key!r}")
    base = path.resolve().parent

    def rel(p: Any, key: str) -> Path:
        if not isinstance(p, str):
            raise EdgeRNNError(f"sweep file {path}: {key!r} must be a path, got {p!r}")
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    targets = data["targets"] if isinstance(data["targets"], list) else [data["targets"]]
    if not all(isinstance(t, str) and t.strip() for t in targets):
        raise EdgeRNNError(f"sweep file {path}: 'targets' must be a list of target names")
    spec = SweepSpec(path=path, models=_models(data["models"], path, rel),
                     data=rel(data["data"], "data"), targets=list(targets))
    for key in ("formats", "quantize"):
        val = data.get(key)
        if val is not None:
            val = val if isinstance(val, list) else [val]
            if not all(isinstance(v, str) for v in val):
                raise EdgeRNNError(f"sweep file {path}: {key!r} must be a list of names")
            setattr(spec, key, val)
    spec.bench = _checked(data.get("bench") or {}, _BENCH_KEYS, path, "bench")
    if data.get("artifacts"):
        spec.artifacts = rel(data["artifacts"], "artifacts")
    if data.get("calib"):
        spec.calib = rel(data["calib"], "calib")
    mem = data.get("convert_memory_gb")
    if mem is not None:  # checked against the nodes' memory when the sweep starts (engine)
        finite_number(mem, f"sweep file {path}: 'convert_memory_gb'", 0.001, 10**6)
    spec.convert_memory_gb = mem
    if data.get("db") is not None:
        spec.db = str(data["db"])
    return spec


def _models(items: Any, path: Path, rel: Any) -> list[ModelEntry]:
    items = items if isinstance(items, list) else [items]
    out: list[ModelEntry] = []
    for item in items:
        if isinstance(item, dict):
            if "path" not in item:
                raise EdgeRNNError(f"sweep file {path}: a model mapping needs 'path'")
            load = _checked({k: v for k, v in item.items() if k != "path"}, _LOAD_KEYS, path,
                            "models[]")
            load = {k: tuple(v) if isinstance(v, list) else v for k, v in load.items()}
            out.append(ModelEntry(rel(item["path"], "models"), load))
            continue
        p = rel(item, "models")
        found = sorted(glob.glob(str(p))) if glob.has_magic(str(p)) else [str(p)]
        if not found:
            raise EdgeRNNError(f"sweep file {path}: no model file matches {item!r}")
        out += [ModelEntry(Path(f)) for f in found]
    for m in out:
        if not m.path.is_file():
            raise EdgeRNNError(f"sweep file {path}: model file {m.path} does not exist")
    names = [m.path.stem for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EdgeRNNError(f"sweep file {path}: two models are named {dup[0]!r} (rows are keyed "
                           "by file name): rename one")
    return out


def _checked(d: Any, schema: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise EdgeRNNError(f"sweep file {path}: {where!r} must be a mapping")
    for k, v in d.items():
        want = schema.get(k)
        if want is None:
            raise EdgeRNNError(f"sweep file {path}: unknown key {k!r} in {where} (known: "
                               f"{', '.join(sorted(schema))})")
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise EdgeRNNError(f"sweep file {path}: {where}.{k} has the wrong type ({v!r})")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            low, high = _BOUNDS.get(k, (0, 10**9))
            finite_number(v, f"sweep file {path}: {where}.{k}", low, high)
    return dict(d)
