"""``tflite-fused`` / ``tflite-loop``: TFLite for any model litert-torch converts, recurrence kept.

Route (recorded in each artifact's ``backend``): every ``nn.LSTM`` / ``nn.GRU`` of an eager
model is swapped for StableHLO composites (``tflite_fused.markers``; TorchScript archives are
rewritten on their ExportedProgram graph instead), litert-torch converts the whole model in a
child process (every other op as it always does, nothing unrolled), and
``tflite_fused.legalize`` turns each composite into ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (one per
layer and direction; a reverse direction runs between two ``REVERSE_V2``) or, for a GRU, a
``WHILE`` loop. ``tflite-loop`` is the same conversion with every LSTM as a ``WHILE`` loop
whose input projection is one matrix product over all steps (``tflite_fused.loops``): on x86
it beats the fused kernel from hidden ~128 and loses below, so the bench measures both. One
conversion serves both plug-ins and their quantizers. Conversion takes seconds, not the
minutes an unrolled file takes.

Limits (each a note or a skip, never a wrong file): the input shape is fixed at the example's
(litert-torch converts static shapes); an LSTM called with a given initial state (a learned
state, a step model's state input) or whose final cell state the graph reads is a loop in
``tflite-fused`` too (the fused op keeps its state in variable tensors), with a note saying
so. The runtime must reset variable tensors before each sequence (edgernn's probe does).

The pre-legalization file and the layers' weights are kept in this process for the
quantizers (``edgernn.convert.quantize.tflite_fused``), which quantize the rest of the graph
with ai-edge-quantizer and choose per recurrent layer whether its weights are int8.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.base import register_format
from edgernn.convert.formats.tflite_common import io_details, one_line, op_census
from edgernn.convert.formats.tflite_fused.legalize import composite_ids, legalize
from edgernn.convert.formats.tflite_fused.markers import Layer, Marked, mark_graph, mark_modules
from edgernn.convert.formats.tflite_litert import _trace, litert_missing, run_child
from edgernn.errors import ExportError, Unsupported
from edgernn.model.loading import LoadedModel

NAME = "tflite-fused"
LOOP = "tflite-loop"


@dataclass
class Converted:
    """What the quantizers need: the file before legalization and the layers it stands for."""

    raw: bytes
    layers: dict[int, Layer]
    kept: list[str]
    litert_torch: str
    scripted: bool = False
    raw_int8: tuple[bytes, str] | None = None  # the rest quantized (ai-edge-quantizer), once


_BY_MODULE: weakref.WeakKeyDictionary[Any, Converted] = weakref.WeakKeyDictionary()


def converted(model: LoadedModel) -> Converted:
    """The conversion of ``model`` (one per module in this process: the fused and loop forms
    and every quantizer share it)."""
    conv = _BY_MODULE.get(model.module)
    if conv is None:
        conv = _BY_MODULE[model.module] = _convert(model)
    return conv


def _convert(model: LoadedModel) -> Converted:
    import torch

    example = tuple(model.example_inputs(batch=1))
    scripted = isinstance(model.module, torch.jit.ScriptModule)
    with tempfile.TemporaryDirectory(prefix="edgernn-fused-") as tmp:
        program, ex_file, raw = Path(tmp) / "model.pt2", Path(tmp) / "example.npz", Path(tmp) / "raw.tflite"
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                marked = _marked(model.module, example, scripted)
                ep = torch.export.export(marked.module, example, strict=False)
                torch.export.save(ep, str(program))
        except Unsupported:
            raise
        except Exception as e:
            raise ExportError(f"torch.export of the marked model failed: {one_line(e)}") from None
        if not marked.layers:
            raise Unsupported("no nn.LSTM or nn.GRU to fuse (tflite-litert converts this model)")
        np.savez(ex_file, **{f"a{k}": t.numpy() for k, t in enumerate(example)})
        res = run_child("edgernn.convert.formats.tflite_litert", {
            "program": str(program), "example": str(ex_file), "out": str(raw),
        }, "litert-torch conversion")
        if not raw.exists():
            raise ExportError("litert-torch conversion wrote no file")
        blob = raw.read_bytes()
        used = composite_ids(blob)
        layers = {k: v for k, v in marked.layers.items() if k in used}
        return Converted(blob, layers, marked.kept, res.get("litert_torch", "?"), scripted)


def _marked(module: Any, example: tuple[Any, ...], scripted: bool) -> Marked:
    if not scripted:
        return mark_modules(module)
    ep = _trace(module, example, scripted=True)  # TorchScript -> specialised ExportedProgram
    return mark_graph(ep.module())


class TfliteFusedFormat:
    family = "tflite"
    suffix = ".tflite"
    runtime = "litert"

    def __init__(self, name: str, form: str):
        self.name, self.form = name, form

    def available(self) -> str | None:
        return litert_missing()

    def export(self, model: LoadedModel, path: Path) -> Artifact:
        t0 = time.perf_counter()
        conv = converted(model)
        return write_variant(model, conv, path, int8_layers=(), quantization="fp32",
                             seconds=time.perf_counter() - t0, form=self.form)


def write_variant(model: LoadedModel, conv: Converted, path: Path, int8_layers: Any,
                  quantization: str, seconds: float, raw: bytes | None = None,
                  form: str = "fused") -> Artifact:
    """Legalize ``raw`` (default: the fp32 conversion) into ``path`` in ``form`` and describe it."""
    done = legalize(raw if raw is not None else conv.raw, conv.layers, int8_layers, form)
    if not done.fused_lstm and not done.loops:
        raise Unsupported("nothing to fuse: " + ("; ".join(conv.kept) or "no recurrent layer ran")
                          + " (tflite-litert makes this file)")
    path.unlink(missing_ok=True)
    path.write_bytes(done.blob)
    ops = op_census(path)
    shape = list(model.example_inputs(batch=1)[0].shape)
    int8 = set(int8_layers)
    notes = [route_note(done.fused_lstm, done.loops), *done.notes]
    if int8 and len(int8) < len(conv.layers):
        kept = [conv.layers[i].describe() for i in sorted(set(conv.layers) - int8)]
        notes.append(f"recurrent weights int8 except {', '.join(kept)} (kept fp32)")
    notes.append(f"fixed input shape {shape} (litert-torch converts static shapes)"
                 + ("; the fused LSTM's state is a variable tensor: reset it before each sequence"
                    if done.fused_lstm else ""))
    notes += conv.kept
    if conv.scripted:
        notes.append("TorchScript archive turned into an ExportedProgram (torch's TS2EPConverter) "
                     "and its recurrent nodes rewritten there; parity checked")
    info = io_details(path)
    if model.spec.dtype == "int64" and info.get("input_dtype") == "int32":
        notes.append("int64 token input became int32; feed int32 ids on the device")
    plugin = NAME if form == "fused" else LOOP
    return Artifact(
        variant=f"{plugin}-{quantization}", format="tflite", quantization=quantization,
        runtime="litert", path=str(path), export_seconds=seconds, accepts_other_seq_len=False,
        dynamic_batch=False, notes=notes, ops=ops,
        backend=f"litert-torch {conv.litert_torch} + edgernn composites legalized to "
                + ("fused LSTM ops and GRU loops" if form == "fused" else "recurrent WHILE loops"),
    )


def route_note(lstm: int, loops: int) -> str:
    parts = []
    if lstm:
        parts.append(f"{lstm} UNIDIRECTIONAL_SEQUENCE_LSTM (one per layer and direction)")
    if loops:
        parts.append(f"{loops} layer(s) as TFLite cell ops, the input projection hoisted "
                     "(a WHILE loop over time when it has more than 4 steps)")
    return "route: composites -> " + (" and ".join(parts) or "no recurrent op")


TFLITE_FUSED = register_format(TfliteFusedFormat(NAME, "fused"))
TFLITE_LOOP = register_format(TfliteFusedFormat(LOOP, "loop"))
