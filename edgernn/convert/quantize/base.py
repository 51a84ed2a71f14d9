"""The quantizer plug-in interface and registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from edgernn.convert.artifact import Artifact
from edgernn.model.loading import LoadedModel

# user-facing modes (``--quantize``); each quantizer serves one (format, mode)
MODES = ("dynamic", "fp16", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")  # modes that need calibration inputs


class NotApplicable(Exception):
    """The quantizer would leave this model unchanged or cannot handle it; the message says why."""


class NotRelevant(NotApplicable):
    """A variant about an op the graph does not have (no Conv to keep float, no RNN to turn
    into a Scan): recorded in the manifest as ``not applicable``, shown in no table."""


NOT_RELEVANT = "not applicable"  # the artifact status of a NotRelevant variant


# groups of variants made only when asked for: ``--max-drop`` (accuracy-aware), ``--per-op``
# (every quantizable op class measured fp32 vs int8), ``--tune`` (quantization settings)
OPT_IN = ("max-drop", "per-op", "tune")


class Quantizer(Protocol):
    """A quantizer may also carry (read with ``getattr``, defaults in brackets):
    ``opt_in`` [None]: the ``OPT_IN`` group that turns it on (None: always made for its mode);
    ``twin`` [None]: the label of the default variant this one is an alternative to, with
    ``change``: how it differs ("Conv kept fp32", "per-channel weights") and ``kind``: "op"
    (an op class kept float) or "setting" (another quantization setting); select reports a
    decision for each alternative measured beside its twin."""

    format: str
    mode: str
    label: str  # the artifact's quantization label, e.g. "int8-dynamic"

    def available(self) -> str | None:
        """None when usable here, else the reason."""

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        """Write ``path`` from the fp32 artifact (or by re-converting ``model``).

        ``calib`` holds model inputs (sample-first) for full-int8 calibration, or None; a
        quantizer that needs it and gets None raises NotApplicable saying to pass --calib.
        Raise NotApplicable when the result would be unchanged or meaningless."""


_QUANTIZERS: dict[tuple[str, str], list[Quantizer]] = {}


def register_quantizer(q: Quantizer) -> Quantizer:
    """Add ``q`` for its (format, mode); several quantizers of one mode give several variants
    (e.g. two int8 forms of a GRU), and the bench measures which is better on the target."""
    group = _QUANTIZERS.setdefault((q.format, q.mode), [])
    group[:] = [g for g in group if g.label != q.label] + [q]
    return q


_UNSUPPORTED: dict[tuple[str, str], str] = {}


def register_unsupported(fmt: str, mode: str, reason: str) -> None:
    """Record why a format plug-in offers no quantizer for a mode (shown as a skipped row)."""
    _UNSUPPORTED[(fmt, mode)] = reason


def quantizers_for(fmt: str, modes: list[str], opt_in: frozenset[str] | set[str] = frozenset()
                   ) -> list[Quantizer]:
    """The quantizers of ``fmt`` for ``modes``: those always made, and those of the ``opt_in``
    groups asked for."""
    return [q for m in modes for q in _QUANTIZERS.get((fmt, m), [])
            if getattr(q, "opt_in", None) in (None, *opt_in)]


def opt_in_labels(groups: frozenset[str] | set[str]) -> set[tuple[str, str]]:
    """(format, label) of the quantizers that only the ``groups`` given turn on (one label
    may be opt-in for one format and made by default for another)."""
    return {(q.format, q.label) for group in _QUANTIZERS.values() for q in group
            if getattr(q, "opt_in", None) in groups}


def alternatives() -> dict[str, tuple[str, str, str]]:
    """label -> (twin label, change, kind) for every registered alternative variant."""
    return {q.label: (q.twin, getattr(q, "change", q.label), getattr(q, "kind", "op"))
            for group in _QUANTIZERS.values() for q in group if getattr(q, "twin", None)}


def unsupported_reason(fmt: str, mode: str) -> str | None:
    """Why ``fmt`` has no quantizer for ``mode``; None when it has one."""
    if (fmt, mode) in _QUANTIZERS:
        return None
    return _UNSUPPORTED.get((fmt, mode), f"no {mode} quantizer for {fmt}")


def labels_for(fmt: str, mode: str) -> list[str]:
    """The quantization labels artifacts of ``fmt`` get for ``mode`` (the mode if unsupported)."""
    return [q.label for q in _QUANTIZERS.get((fmt, mode), [])] or [mode]
