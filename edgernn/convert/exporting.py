"""Export a loaded model to every requested format and quantization; write manifest.json."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgernn import __version__
from edgernn.convert.artifact import Artifact
from edgernn.convert.formats import expand_formats, get_format
from edgernn.convert.quantize import (
    NOT_RELEVANT,
    NotApplicable,
    NotRelevant,
    quantizers_for,
    unsupported_reason,
)
from edgernn.convert.quantize.base import CALIBRATED
from edgernn.data.evalfile import to_model_layout
from edgernn.errors import EdgeRNNError, Unsupported
from edgernn.hashing import array_sha256
from edgernn.model.loading import LoadedModel, SandboxedModel, sha256_file
from edgernn.model.signature import plan_of
from edgernn.probe import runtimes
from edgernn.probe.stepping import Stepper

MANIFEST = "manifest.json"
FP32_ATOL = 1e-4


def parity_cases(model: LoadedModel, art: Artifact) -> list[dict[str, int]]:
    """Shapes to check on random inputs: the example shape, then another sequence length
    and batch 2 where the artifact claims them. A batch claim is checked only for a NAMED
    batch axis (an unnamed one is fixed, so batch 2 would silently run at batch 1)."""
    spec = model.spec
    seq_axis = spec.seq_axis
    seq = spec.shape[seq_axis] if seq_axis is not None else None
    named_batch = spec.axis_index("batch") is not None
    cases = [{"batch": 1, **({"seq": seq} if seq else {})}]
    second: dict[str, int] = {}
    if art.dynamic_batch and named_batch:
        second["batch"] = 2
    if art.accepts_other_seq_len and seq:
        second["seq"] = max(2, seq // 2 + 1)
    if second:
        cases.append({"batch": second.get("batch", 1), **({"seq": second.get("seq", seq)} if seq else {})})
    return cases


def compare_outputs(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """Max |diff| over every output and the tolerance; a missing output or a shape mismatch is
    an error naming both shapes (never reshaped away)."""
    if len(got) != len(ref):
        raise ParityError(f"the artifact returns {len(got)} output(s), PyTorch {len(ref)}")
    diff, scale = 0.0, 1.0
    for k, (r, g) in enumerate(zip(ref, got, strict=True)):
        if tuple(g.shape) != tuple(r.shape):
            raise ParityError(f"output {k} has shape {list(g.shape)} in the artifact but "
                              f"{list(r.shape)} in PyTorch")
        if r.size:
            diff = max(diff, float(np.max(np.abs(g.astype(np.float64) - r))))
            scale = max(scale, float(np.max(np.abs(r))))
    return diff, FP32_ATOL * scale


class ParityError(EdgeRNNError):
    """The artifact's outputs cannot be compared with PyTorch's (count or shape differ)."""


CHAINED_STEPS = 32  # steps each random sequence runs in the chained check of a step model


def random_steps(model: LoadedModel, sequences: int = 2) -> np.ndarray:
    """Random step data [S, CHAINED_STEPS, *step] for the chained check."""
    shape = [s for i, s in enumerate(model.spec.shape) if i != model.spec.batch_axis]
    rng = np.random.default_rng(0)
    size = (sequences, CHAINED_STEPS, *shape)
    if model.spec.is_tokens:
        return rng.integers(0, model.spec.vocab_size or 2, size).astype(model.spec.dtype)
    return rng.standard_normal(size).astype(np.float32)


def check_chained(model: LoadedModel, call: Any, seqs: np.ndarray, source: str) -> dict[str, Any]:
    """Run sequences ``seqs`` [S, T, *step] step by step in ``call`` and in PyTorch, each
    carrying its own state from zero, and compare every output at every step (drift shows as
    a growing difference); a step model made by ``--streaming`` is also held against its
    whole-sequence model run on the steps so far."""
    plan = plan_of(model.sig.to_dict())
    ref = Stepper(model.outputs, plan)
    got = Stepper(call, plan)
    worst, tol, steps = 0.0, 0.0, 0
    whole_diff = 0.0
    for seq in seqs:
        ref.reset()
        got.reset()
        for t in range(len(seq)):
            g = got.step([got.layout(seq[t])])
            d, tl = compare_outputs(ref.step([ref.layout(seq[t])]), g)
            worst, tol, steps = max(worst, d), max(tol, tl), steps + 1
            if model.whole is not None:  # the whole-sequence model on the stream so far
                whole_diff = max(whole_diff, _whole_diff(model, seq[: t + 1], g[0]))
    res = {"data": f"chained steps ({source})", "sequences": int(len(seqs)),
           "steps": int(seqs.shape[1]), "calls": steps, "max_abs_diff": worst, "tolerance": tol}
    if model.whole is not None:
        res["reference"] = "PyTorch step model chained; whole-sequence model on each prefix"
        res["max_abs_diff"] = max(worst, whole_diff)
        res["whole_sequence_max_abs_diff"] = whole_diff
    return res


def _whole_diff(model: LoadedModel, prefix: np.ndarray, got: np.ndarray) -> float:
    """|whole-sequence model on the steps so far - the step output| (chunks joined in time)."""
    joined = model.spec.is_tokens or model.chunk > 1  # [t, K(, F)] -> [1, t*K(, F)]
    x = prefix.reshape(1, -1, *prefix.shape[2:]) if joined else prefix[None]
    with torch.no_grad():
        want = model.whole(torch.as_tensor(x)).numpy()
    return float(np.max(np.abs(want - got)))


@torch.no_grad()
def check_parity(model: LoadedModel, art: Artifact, inputs: np.ndarray | None = None) -> None:
    """Run the artifact in its runtime and PyTorch on the same inputs and record the max |diff|
    over every output: on ``inputs`` (real samples, sample axis first, one call per sample, as
    deployed) when given, and on random inputs at each claimed shape. A step model is also
    run chained: sequences step by step with the state carried, compared at every step."""
    sess = runtimes.load(art.runtime, art.path, threads=1)
    results = []
    spec = model.spec
    if model.sig.is_streaming:
        if inputs is not None and len(inputs):
            results.append(check_chained(model, sess.outputs, inputs, "evaluation samples"))
        results.append(check_chained(model, sess.outputs, random_steps(model), "random"))
    elif inputs is not None and len(inputs) and len(model.sig.inputs) == 1:
        seq_axis = spec.seq_axis
        fixed_seq = (not art.accepts_other_seq_len and seq_axis is not None)
        worst, tol = 0.0, 0.0
        n = 0
        for i in range(len(inputs)):
            xi = to_model_layout(inputs[i:i + 1], spec.batch_axis)
            if fixed_seq and xi.shape[seq_axis] != spec.shape[seq_axis]:
                break
            d, t = compare_outputs(model.outputs([xi]), sess.outputs(xi))
            worst, tol, n = max(worst, d), max(tol, t), n + 1
        if n:
            results.append({"data": "evaluation samples", "samples": n, "max_abs_diff": worst,
                            "tolerance": tol})
    for case in parity_cases(model, art):
        xs = model.example_inputs(**case)
        diff, tol = compare_outputs(model.outputs(xs),
                                    sess.outputs([x.numpy() for x in xs]))
        results.append({**case, "max_abs_diff": diff, "tolerance": tol})
    art.parity = results
    art.parity_max_abs_diff = max(r["max_abs_diff"] for r in results)
    if art.quantization == "fp32":
        art.parity_ok = all(r["max_abs_diff"] <= r["tolerance"] for r in results)
        if not art.parity_ok:
            art.status = "parity failed"
            art.error = f"fp32 output differs from PyTorch by {art.parity_max_abs_diff:.3g}"


def _finish(art: Artifact, model: LoadedModel, inputs: np.ndarray | None = None) -> Artifact:
    p = Path(art.path)
    art.size_bytes = p.stat().st_size
    art.sha256 = sha256_file(p)
    try:
        check_parity(model, art, inputs)
    except ParityError as e:
        art.status, art.error = "parity failed", str(e)
    except Exception as e:
        art.status, art.error = "export failed", f"artifact does not run: {_line(e)}"
    return art


def _hide_identical_files(arts: list[Artifact]) -> None:
    """A file byte-identical to one another format made with the same quantization
    (tflite-loop of a model with no LSTM that tflite-fused would fuse, e.g. a GRU or a step
    model) is not a second variant: it becomes ``not applicable`` naming the first, and its
    copy is removed. (Two quantizers of one format that land on the same file, e.g. int8-mixed
    keeping what another variant keeps float, both stay: each says how it was chosen.)"""
    first: dict[tuple[str, str], str] = {}
    for art in arts:
        if art.status != "ok" or not art.sha256:
            continue
        key = (art.sha256, art.quantization)  # one quantizer's file under two formats
        if key not in first:
            first[key] = art.variant
            continue
        Path(art.path).unlink(missing_ok=True)
        art.status, art.error = NOT_RELEVANT, f"the same file as {first[key]}"


def opt_in_groups(opt_in: frozenset[str], max_drop: bool) -> frozenset[str]:
    """The opt-in variant groups of a run: those asked for, and "max-drop" with --max-drop."""
    return frozenset(opt_in) | ({"max-drop"} if max_drop else set())


def export_model(
    model: LoadedModel, out_dir: Path, formats: list[str], modes: list[str],
    target: str = "x86", on_step: Callable[[str], None] | None = None,
    calib: np.ndarray | None = None, calib_source: str | None = None,
    parity_inputs: np.ndarray | None = None, budget: Any = None,
    opt_in: frozenset[str] = frozenset(), seven_bit_weights: bool = False,
    skip: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export fp32 and quantized artifacts of ``model`` into ``out_dir``; return the manifest.

    ``formats`` are plug-in or family names; ``calib`` (model inputs) feeds full-int8
    quantizers, and ``calib_source`` says where it came from; ``parity_inputs`` (real
    samples, sample axis first) are checked besides random inputs; ``budget`` (an
    ``AccuracyBudget``, from ``--max-drop``) turns on the accuracy-aware quantizers;
    ``opt_in`` names the other opt-in groups asked for ("per-op", "tune");
    ``seven_bit_weights``: the target's CPU saturates 8-bit integer products (x86 without VNNI,
    ``Runner.int8_saturates``), so quantizers that compute in int8 store 7-bit weights;
    ``skip``: plug-ins left out on purpose, with the reason (a skipped row each).
    """
    if isinstance(model, SandboxedModel):  # a program file, loaded in the sandbox: export there
        from edgernn.model.sandbox import export_sandboxed

        return export_sandboxed(model, out_dir, formats, modes, target, on_step, calib,
                                calib_source, parity_inputs, budget, opt_in, seven_bit_weights,
                                skip)
    groups = opt_in_groups(opt_in, budget is not None)
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
            fp32 = _finish(fp32, model, parity_inputs)
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
        for q in quantizers_for(pname, modes, groups):
            aware = getattr(q, "accuracy_aware", False)
            step(f"{model.name}: {pname} {q.label}")
            qpath = out_dir / f"{model.name}.{pname}.{q.label}{fmt.suffix}"
            variant = f"{pname}-{q.label}"
            if seven_bit_weights:
                if getattr(q, "kind", None) == "setting" and getattr(q, "reduce_range", False):
                    arts.append(failed(variant, q.label, "the default int8 file for this target "
                                       "stores 7-bit weights already (its CPU saturates 8-bit "
                                       "products)", status="skipped"))
                    continue
                q = seven_bit(q)
            reason = q.available()
            if reason:
                arts.append(failed(variant, q.label, reason))
                continue
            t0 = time.perf_counter()
            try:
                art = (q.quantize(model, fp32, qpath, calib, budget=budget) if aware  # type: ignore[call-arg]
                       else q.quantize(model, fp32, qpath, calib))
            except NotRelevant as e:  # kept for the manifest's reuse check, shown nowhere
                arts.append(failed(variant, q.label, str(e), status=NOT_RELEVANT))
                continue
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
            if getattr(q, "seven_bit_reason", None):
                art.notes.append(q.seven_bit_reason)
            if art.calibration is None and calib_source and q.mode in CALIBRATED:
                art.calibration = calib_source
            arts.append(_finish(art, model, parity_inputs))
    _hide_identical_files(arts)
    for pname, why in (skip or {}).items():
        sfmt = get_format(pname)
        arts.append(Artifact(f"{pname}-fp32", sfmt.family, "fp32", sfmt.runtime, status="skipped",
                             error=why, plugin=pname))
    manifest = {
        "edgernn_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": target,
        "model": {
            "name": model.name, "path": str(model.path.resolve()), "kind": model.kind,
            "sha256": model.sha256, "parameters": model.parameters_count(),
            "input_spec": model.spec.to_dict(), "signature": model.sig.to_dict(),
            "meta": _jsonable(model.meta),
        },
        "calibration_sha256": array_sha256(calib),
        "max_drop": budget.max_drop if budget is not None else None,
        "opt_in": sorted(groups),
        "seven_bit_weights": seven_bit_weights,
        "artifacts": [_relative(a.to_dict(), out_dir) for a in arts],
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


SEVEN_BIT_REASON = (
    "7-bit weights (reduce_range): this target's x86 CPU has no VNNI, where onnxruntime's "
    "8-bit u8 x s8 products saturate int16 and lose accuracy")


def seven_bit(q: Any) -> Any:
    """``q`` storing 7-bit weights when it computes u8 x s8 products with 8-bit int8 weights
    (a copy; the registered quantizer is left as it is). Quantizers without the choice, and
    uint8 weights (u8 x u8 kernels widen to 16 bits first: no saturation), come back as they
    are."""
    if getattr(q, "reduce_range", None) is not False or getattr(q, "weight_type", "QInt8") != "QInt8":
        return q
    q7 = copy.copy(q)
    q7.reduce_range = True
    q7.seven_bit_reason = SEVEN_BIT_REASON
    return q7


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
