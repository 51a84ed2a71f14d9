"""Export a loaded model to every requested format and quantization; write manifest.json."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgernn import __version__
from edgernn.artifact import Artifact
from edgernn.errors import EdgeRNNError, Unsupported
from edgernn.formats import expand_formats, get_format
from edgernn.loading import LoadedModel, sha256_file
from edgernn.probe import runtimes
from edgernn.quantize import NotApplicable, quantizers_for, unsupported_reason
from edgernn.quantize.base import CALIBRATED

MANIFEST = "manifest.json"
FP32_ATOL = 1e-4


def parity_cases(model: LoadedModel, art: Artifact) -> list[dict[str, int]]:
    """Shapes to check: the example shape, then batch 2 at another sequence length if claimed."""
    seq_axis = model.spec.seq_axis
    seq = model.spec.shape[seq_axis] if seq_axis is not None else None
    cases = [{"batch": 1, **({"seq": seq} if seq else {})}]
    second: dict[str, int] = {}
    if art.dynamic_batch:
        second["batch"] = 2
    if art.accepts_other_seq_len and seq:
        second["seq"] = max(2, seq // 2 + 1)
    if second:
        cases.append({"batch": second.get("batch", 1), **({"seq": second.get("seq", seq)} if seq else {})})
    return cases


@torch.no_grad()
def check_parity(model: LoadedModel, art: Artifact) -> None:
    """Run the artifact in its runtime and PyTorch on the same inputs; record max |diff|."""
    sess = runtimes.load(art.runtime, art.path, threads=1)
    results = []
    for case in parity_cases(model, art):
        x = model.example_input(**case)
        ref = model.module(x)
        ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
        out = sess.run(x.numpy())
        diff = float(np.max(np.abs(out.reshape(ref.shape) - ref)))
        tol = FP32_ATOL * max(1.0, float(np.max(np.abs(ref))))
        results.append({**case, "max_abs_diff": diff, "tolerance": tol})
    art.parity = results
    art.parity_max_abs_diff = max(r["max_abs_diff"] for r in results)
    if art.quantization == "fp32":
        art.parity_ok = all(r["max_abs_diff"] <= r["tolerance"] for r in results)
        if not art.parity_ok:
            art.status = "parity failed"
            art.error = f"fp32 output differs from PyTorch by {art.parity_max_abs_diff:.3g}"


def _finish(art: Artifact, model: LoadedModel) -> Artifact:
    p = Path(art.path)
    art.size_bytes = p.stat().st_size
    art.sha256 = sha256_file(p)
    try:
        check_parity(model, art)
    except Exception as e:
        art.status, art.error = "export failed", f"artifact does not run: {_line(e)}"
    return art


def export_model(
    model: LoadedModel, out_dir: Path, formats: list[str], modes: list[str],
    target: str = "x86", on_step: Callable[[str], None] | None = None,
    calib: np.ndarray | None = None, calib_source: str | None = None,
) -> dict[str, Any]:
    """Export fp32 and quantized artifacts of ``model`` into ``out_dir``; return the manifest.

    ``formats`` are plug-in or family names; ``calib`` (model inputs) feeds full-int8
    quantizers, and ``calib_source`` says where it came from.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    arts: list[Artifact] = []
    step = on_step or (lambda _msg: None)
    for pname in expand_formats(formats):
        fmt = get_format(pname)

        def failed(variant: str, label: str, error: str, status: str = "export failed",
                   fmt: Any = fmt, pname: str = pname) -> Artifact:
            return Artifact(variant, fmt.family, label, fmt.runtime, status=status, error=error,
                            plugin=pname)

        reason = fmt.available()
        if reason:
            arts.append(failed(f"{pname}-fp32", "fp32", reason))
            continue
        step(f"{model.name}: export {pname} fp32")
        path = out_dir / f"{model.name}.{pname}.fp32{fmt.suffix}"
        try:
            fp32 = fmt.export(model, path)
            fp32.plugin = pname
            fp32 = _finish(fp32, model)
        except Unsupported as e:
            arts.append(failed(f"{pname}-fp32", "fp32", str(e), status="skipped"))
            continue
        except EdgeRNNError as e:
            arts.append(failed(f"{pname}-fp32", "fp32", str(e)))
            continue
        except Exception as e:
            arts.append(failed(f"{pname}-fp32", "fp32", _line(e)))
            continue
        arts.append(fp32)
        if fp32.status != "ok":
            continue
        for mode in modes:
            why = unsupported_reason(pname, mode)
            if why:
                arts.append(failed(f"{pname}-{mode}", mode, why, status="skipped"))
        for q in quantizers_for(pname, modes):
            step(f"{model.name}: {pname} {q.label}")
            qpath = out_dir / f"{model.name}.{pname}.{q.label}{fmt.suffix}"
            variant = f"{pname}-{q.label}"
            reason = q.available()
            if reason:
                arts.append(failed(variant, q.label, reason))
                continue
            t0 = time.perf_counter()
            try:
                art = q.quantize(model, fp32, qpath, calib)
            except NotApplicable as e:
                arts.append(failed(variant, q.label, str(e), status="skipped"))
                continue
            except EdgeRNNError as e:
                arts.append(failed(variant, q.label, str(e)))
                continue
            except Exception as e:
                arts.append(failed(variant, q.label, _line(e)))
                continue
            art.export_seconds = time.perf_counter() - t0
            art.plugin = pname
            if art.calibration is None and calib_source and q.mode in CALIBRATED:
                art.calibration = calib_source
            arts.append(_finish(art, model))
    manifest = {
        "edgernn_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "model": {
            "name": model.name, "path": str(model.path.resolve()), "kind": model.kind,
            "sha256": model.sha256, "parameters": model.parameters_count(),
            "input_spec": model.spec.to_dict(), "meta": _jsonable(model.meta),
        },
        "artifacts": [_relative(a.to_dict(), out_dir) for a in arts],
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def load_manifest(out_dir: Path) -> tuple[dict[str, Any], list[Artifact]]:
    """Read a manifest; artifact paths come back absolute."""
    p = out_dir / MANIFEST
    try:
        m = json.loads(p.read_text())
        arts = [Artifact.from_dict(a) for a in m["artifacts"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgeRNNError(f"{p} is not a readable edgernn manifest ({e})") from None
    for a in arts:
        if a.path:
            a.path = str((out_dir / a.path).resolve())
    return m, arts


def _relative(d: dict[str, Any], base: Path) -> dict[str, Any]:
    if d.get("path"):
        with contextlib.suppress(ValueError):
            d["path"] = str(Path(d["path"]).resolve().relative_to(base.resolve()))
    return d


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".strip().splitlines()
    return s[0][:300]
