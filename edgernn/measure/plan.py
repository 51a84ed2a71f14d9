"""What a bench measures: the formats a target runs, the variants of an export manifest
(``bench_plan``), and whether an earlier export can be reused as it is."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.convert.exporting import load_manifest, opt_in_groups
from edgernn.convert.formats import expand_formats, get_format
from edgernn.convert.quantize import NOT_RELEVANT, OPT_IN, labels_for, opt_in_labels, quantizers_for
from edgernn.convert.quantize.base import CALIBRATED
from edgernn.errors import EdgeRNNError, EdgeRNNWarning
from edgernn.measure.settings import BenchSettings
from edgernn.model.loading import LoadedModel, sha256_file
from edgernn.runners import sub_variants
from edgernn.runners.target import Target


def bench_plan(manifest: dict[str, Any], target: Target,
               settings: BenchSettings) -> list[tuple[Artifact, str | None]]:
    """(artifact, sub-variant) pairs a bench measures from an export manifest: not the
    variants about an op the graph lacks, nor a reused manifest's other opt-ins (an export made
    with an accuracy budget, e.g. bench's default one, has its int8-mixed variants measured);
    with ``settings.only``, just those variants."""
    budget = settings.max_drop is not None or manifest.get("max_drop") is not None
    not_asked = opt_in_labels(frozenset(OPT_IN) - opt_in_groups(settings.opt_in, budget))
    arts = [Artifact.from_dict(a) for a in manifest["artifacts"]
            if a.get("status") != NOT_RELEVANT  # a variant about an op the graph lacks
            and (a.get("plugin"), a.get("quantization")) not in not_asked]  # other opt-ins
    subs = sub_variants(target)
    plan = [(a, d) for a in arts for d in (subs if a.status == "ok" else [None])]
    if settings.only is not None:
        plan = [(a, d) for a, d in plan if vname(a, d) in settings.only]
    return plan


def vname(art: Artifact, sub: str | None) -> str:
    """A variant's name on a target: the artifact's, with the runner's sub-variant."""
    return art.variant + (f"@{sub}" if sub else "")


def reuse_manifest(work: Path, model: LoadedModel, formats: list[str],
                   modes: list[str], calib_sha: str | None = None,
                   max_drop: float | None = None,
                   opt_in: frozenset[str] = frozenset(),
                   seven_bit_weights: bool = False) -> dict[str, Any] | None:
    """The existing manifest in ``work`` when it is for this exact model file, was calibrated
    on the same inputs and covers every requested variant with intact files; else None."""
    try:
        manifest, arts = load_manifest(work)
    except EdgeRNNError:
        return None
    if manifest.get("model", {}).get("sha256") != model.sha256:
        return None
    if manifest["model"].get("signature") != model.sig.to_dict():
        return None  # the same file read with other --input/--state
    if max_drop is not None and manifest.get("max_drop") != max_drop:
        return None
    if bool(manifest.get("seven_bit_weights")) != seven_bit_weights:
        return None  # made for a CPU with the other int8 arithmetic
    if any(m in CALIBRATED for m in modes) and manifest.get("calibration_sha256") != calib_sha:
        return None
    have = {(a.plugin, a.quantization) for a in arts}
    for plugin in formats:
        if (plugin, "fp32") not in have:
            return None
        groups = opt_in_groups(opt_in, max_drop is not None)
        wanted = [q.label for q in quantizers_for(plugin, modes, groups)]
        if any((plugin, label) not in have for label in wanted) or \
                any((plugin, m) not in have for m in modes if labels_for(plugin, m) == [m]):
            return None
    if any(a.status == "ok" and not (a.path and Path(a.path).is_file()) for a in arts):
        return None  # files removed: export again (nothing to distrust)
    problem = untrusted_files(work, arts)
    if problem:
        warnings.warn(EdgeRNNWarning(f"{work / 'manifest.json'} is not trusted ({problem}); "
                                     "exporting again"), stacklevel=2)
        return None
    manifest["reused"] = True
    return manifest


def untrusted_files(work: Path, arts: list[Artifact]) -> str | None:
    """Why a manifest's files cannot be trusted, or None: every ok artifact must be a file
    inside the export folder ``work`` whose size and sha256 are those the manifest records
    (an edited manifest pointing at another model's file is not measured under this name)."""
    root = work.resolve()
    for a in arts:
        if a.status != "ok":
            continue
        p = Path(a.path).resolve() if a.path else root
        if p == root or root not in p.parents:
            return f"{a.variant}: its file {a.path!r} is not inside {work}"
        if p.stat().st_size != a.size_bytes:
            return f"{a.variant}: {p.name} has {p.stat().st_size:,} bytes, not {a.size_bytes:,}"
        if sha256_file(p) != a.sha256:
            return f"{a.variant}: {p.name} does not match its sha256"
    return None


UNROLLED = ("tflite-litert", "tflite-keras-unrolled")  # one copy of the cell per time step
FUSED = ("tflite-fused", "tflite-loop", "tflite-keras")
LONG_UNROLL = 32  # sequence length above which unrolled forms are made only on request


def unrolled_skips(names: list[str], asked: list[str], model: LoadedModel) -> dict[str, str]:
    """Unrolled TFLite plug-ins to leave out, with the reason: for a whole-sequence model
    longer than ``LONG_UNROLL`` steps when a fused plug-in is made, unless named explicitly
    (``--format tflite-litert``; a family name such as ``tflite`` is not explicit)."""
    spec = model.spec
    if model.sig.is_streaming or spec.seq_axis is None or not set(FUSED) & set(names):
        return {}
    steps = spec.shape[spec.seq_axis]
    if steps <= LONG_UNROLL:
        return {}
    return {n: (f"unrolled over {steps} steps (> {LONG_UNROLL}): one copy of every recurrent "
                f"cell per step is slow to convert and to run; the fused TFLite file is made "
                f"instead (--format {n} makes this one)")
            for n in names if n in UNROLLED and n not in asked}


def check_formats(target: Target, formats: list[str]) -> list[str]:
    """Plug-in names for ``formats``; error when the target has no runtime for one."""
    names = expand_formats(formats)
    bad = [n for n in names if get_format(n).family not in target.runtimes]
    if bad:
        raise EdgeRNNError(
            f"target {target.name} has no runtime for format(s) {', '.join(bad)}; "
            f"it runs {', '.join(target.runtimes)}"
        )
    return names
