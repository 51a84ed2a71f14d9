"""Artifact: one exported or quantized model file, as recorded in ``manifest.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Artifact:
    """A model file and what is known about it. Field names are a stable contract."""

    variant: str  # "<plugin>-<quantization>", e.g. "onnx-int8-dynamic", "tflite-keras-fp16"
    format: str  # the family (file type): "onnx", "tflite"
    quantization: str
    runtime: str
    path: str = ""
    size_bytes: int = 0
    sha256: str = ""
    parity_max_abs_diff: float | None = None
    parity: list[dict[str, Any]] = field(default_factory=list)
    parity_ok: bool | None = None
    accepts_other_seq_len: bool = False
    dynamic_batch: bool = False
    status: str = "ok"
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    quantized_fraction: float | None = None
    export_seconds: float | None = None
    backend: str | None = None  # converter/quantizer that produced the file, human-readable
    plugin: str | None = None  # format plug-in name: "onnx", "tflite-litert"
    calibration: str | None = None  # where full-int8 calibration data came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
