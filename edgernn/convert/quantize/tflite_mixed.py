"""Alternatives to litert-torch's ``int8-dynamic`` (``edgernn.convert.quantize.tflite_litert``), each
measured beside it on the target:

- ``--tune``: ``int8-weight-only`` (int8-stored weights expanded by DEQUANTIZE ops, float32
  compute) and ``int8-dynamic-pertensor`` (one weight scale per tensor, not per channel);
- ``--max-drop D``: ``int8-mixed``, the weights whose int8 costs the most accuracy kept float
  until the drop measured with LiteRT fits D.

What each file holds is read back from its flatbuffer (:func:`weight_uses`): which ops use a
weight, whether it is stored int8 and fed to the op as is (int8 compute, activations quantized
per call) or through a DEQUANTIZE (float compute), and how many scales it carries.

A litert-torch file unrolls an LSTM/GRU: one recurrent weight tensor feeds one FULLY_CONNECTED
per time step. The search therefore keeps a weight float with ALL its consumers (leaving some
int8 would store the tensor twice), and names it by the PyTorch module it came from.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.tflite_common import op_census, opcode_names, read_model, schema
from edgernn.convert.quantize.base import NotApplicable, NotRelevant, register_quantizer
from edgernn.convert.quantize.tflite_litert import LitertDynamicInt8
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import LoadedModel

MIN_ELEMENTS = 16  # smaller constants are shapes, scalars and scales, not weights
_IO_OPS = {"DEQUANTIZE", "QUANTIZE"}


@dataclass
class WeightUse:
    """One constant weight tensor and the ops that use it."""

    name: str
    dtype: str  # storage type: FLOAT32, INT8, FLOAT16, ...
    shape: list[int]
    scales: int  # quantization scales stored with it (0: not quantized)
    consumers: list[tuple[str, str]] = field(default_factory=list)  # (op type, ai-edge scope)
    dequantized: bool = False  # reaches its ops through a DEQUANTIZE (float compute)

    @property
    def ops(self) -> str:
        """e.g. ``7 FULLY_CONNECTED``."""
        return ", ".join(f"{n} {op}" for op, n in Counter(op for op, _ in self.consumers).items())

    def label(self) -> str:
        """How a user finds it: the module (``rnn (GRU)``), shape, tensor name and its ops, e.g.
        ``rnn (GRU) weight [48x16] (tensor arith.constant1): 7 FULLY_CONNECTED share it``."""
        dims = "x".join(str(d) for d in self.shape)
        where = module_of(self.name) or next(
            (m for _, s in self.consumers if (m := module_of(s))), "")
        shared = " share it (unrolled time steps)" if len(self.consumers) > 1 else ""
        return (f"{where + ' ' if where else ''}weight [{dims}] (tensor {self.name}): "
                f"{self.ops}{shared}")


def _type_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema().TensorType).items() if not k.startswith("_")}


def weight_uses(path: str | Path) -> list[WeightUse]:
    """Every constant tensor of at least ``MIN_ELEMENTS`` elements used by an op (directly or
    through a DEQUANTIZE), in file order; first subgraph only (litert-torch files have one)."""
    m = read_model(path)
    codes = opcode_names(m)
    tnames = _type_names()
    sg = m.Subgraphs(0)

    def name(i: int) -> str:
        return (sg.Tensors(i).Name() or b"").decode(errors="replace")

    def is_const(i: int) -> bool:
        b = sg.Tensors(i).Buffer()
        if b <= 0 or b >= m.BuffersLength():
            return False
        buf = m.Buffers(b)
        return buf.DataLength() > 0 or int(buf.Size()) > 0

    def scope(op: Any) -> str:  # ai-edge-quantizer's op scope: output names joined, ";" after
        idx = [i for i in op.OutputsAsNumpy() if i >= 0] if op.OutputsLength() else []
        names = [n for n in map(name, idx) if n]
        if not names:
            idx = [i for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            names = [n for n in map(name, idx) if n]
        return ";".join(names) + (";" if names else "")

    uses: dict[int, WeightUse] = {}
    dequant_of: dict[int, int] = {}  # DEQUANTIZE output tensor -> its constant input
    ops = [sg.Operators(o) for o in range(sg.OperatorsLength())]
    for op in ops:
        if codes[op.OpcodeIndex()] == "DEQUANTIZE" and op.InputsLength():
            src = int(op.InputsAsNumpy()[0])
            if src >= 0 and is_const(src):
                dequant_of[int(op.OutputsAsNumpy()[0])] = src
    for op in ops:
        kind = codes[op.OpcodeIndex()]
        if kind in _IO_OPS or not op.InputsLength():
            continue
        for i in (int(i) for i in op.InputsAsNumpy()):
            src = dequant_of.get(i, i) if i >= 0 else -1
            if src < 0 or not is_const(src):
                continue
            t = sg.Tensors(src)
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            if (int(np.prod(shape)) if shape else 1) < MIN_ELEMENTS:
                continue
            if src not in uses:
                q = t.Quantization()
                uses[src] = WeightUse(name(src), tnames.get(t.Type(), str(t.Type())), shape,
                                      q.ScaleLength() if q is not None else 0)
            uses[src].consumers.append((kind, scope(op)))
            uses[src].dequantized |= src != i
    return [uses[k] for k in sorted(uses)]


def module_of(tensor_name: str) -> str:
    """The PyTorch module a litert-torch tensor name points at:
    ``__main__.M/torch.nn.modules.rnn.GRU_rnn;4`` -> ``rnn (GRU)``; "" when it names none."""
    path = tensor_name.split(";", 1)[0]
    parts = path.split("/")[1:]  # the first part is the root model's class
    attrs, cls = [], ""
    for p in parts:
        cls_attr = p.rsplit(".", 1)[-1]
        if "_" not in cls_attr:
            return ""
        cls, attr = cls_attr.split("_", 1)
        attrs.append(attr)
    return f"{'.'.join(attrs)} ({cls})" if attrs else ""


def exclusion_regex(scopes: list[str]) -> str:
    """An ai-edge-quantizer recipe regex matching exactly these op scopes."""
    return "^(?:" + "|".join(re.escape(s) for s in sorted(set(scopes))) + ")$"


def candidates(int8_file: str | Path) -> dict[str, WeightUse]:
    """The weights the all-int8 dynamic file stores int8 and feeds to their ops as is: the
    search's candidates, keyed by tensor name (made unique)."""
    out: dict[str, WeightUse] = {}
    for w in weight_uses(int8_file):
        if w.dtype in ("INT8", "INT4") and not w.dequantized:
            key, k = w.name, 1
            while key in out:
                k += 1
                key = f"{w.name}#{k}"
            out[key] = w
    return out


# --------------------------------------------------------------------------- alternatives


def _storage(path: Path) -> tuple[dict[str, int], list[tuple[str, int, bool]]]:
    """Op census and (type, scales, via DEQUANTIZE) of each weight: what a setting can change."""
    return op_census(path), [(w.dtype, w.scales, w.dequantized) for w in weight_uses(path)]


class _LitertSetting(LitertDynamicInt8):
    """Another ai-edge-quantizer setting for dynamic-mode int8 (``--tune``), measured beside
    int8-dynamic. Made together with an int8-dynamic file in the same child, to say so when the
    setting changes nothing in this model's file."""

    opt_in = "tune"
    twin = "int8-dynamic"
    kind = "setting"
    change = ""

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        with tempfile.TemporaryDirectory(prefix="edgernn-tune-") as tmp:
            twin = Path(tmp) / "twin.tflite"
            res = self._run(fp32, path, extra=[{"out": str(twin), "recipe": "dynamic"}])
            same = None
            if path.read_bytes() == twin.read_bytes():
                same = "the file is byte-identical to int8-dynamic's"
            elif _storage(path) == _storage(twin):
                same = "same ops and the same weight storage as int8-dynamic"
            twin_uses = weight_uses(twin)
        if same:
            path.unlink(missing_ok=True)
            raise NotApplicable(f"{self.change} makes no difference here: {same}")
        frac, notes = self._dynamic_notes(path, fp32)
        notes[1:1] = self._setting_notes(weight_uses(path), twin_uses)
        notes.insert(0, f"setting: {self.change} (ai-edge-quantizer recipe.{self.recipe_name})")
        return self._artifact(fp32, path, notes, frac, res)

    def _setting_notes(self, uses: list[Any], twin_uses: list[Any]) -> list[str]:
        raise NotImplementedError


class LitertWeightOnlyInt8(_LitertSetting):
    """Weights stored int8 and expanded to float32 by DEQUANTIZE ops: float compute on float
    activations (no per-call activation quantization); a storage saving like fp16, at 8 bits."""

    label = "int8-weight-only"
    recipe_key = "weight-only"
    recipe_name = "weight_only_wi8_afp32()"
    change = "weight-only int8 (fp32 compute)"

    def _setting_notes(self, uses: list[Any], twin_uses: list[Any]) -> list[str]:
        q = [w for w in uses if w.dtype == "INT8"]
        deq = [w for w in q if w.dequantized]
        ops = ", ".join(sorted({o for w in deq for o, _ in w.consumers}))
        n_ops = sum(len(w.consumers) for w in deq)
        out = [f"{len(deq)} of {len(q)} int8 weight tensor(s) reach their ops through a "
               f"DEQUANTIZE op ({n_ops} op(s) use them): {ops or 'none'} compute in float32 on "
               "float32 activations (no per-call activation quantization)"]
        direct = [w for w in q if not w.dequantized]
        if direct:
            out.append(f"{len(direct)} int8 weight tensor(s) still feed their ops directly "
                       f"(int8 compute): {', '.join(w.name for w in direct)}")
        return out


class LitertDynamicPerTensor(_LitertSetting):
    """Dynamic int8 with one weight scale per tensor instead of one per output channel."""

    label = "int8-dynamic-pertensor"
    recipe_key = "dynamic-pertensor"
    recipe_name = "dynamic_wi8c_afp32(granularity=TENSORWISE)"
    change = "per-tensor weights"
    granularity = "tensorwise"

    def _setting_notes(self, uses: list[Any], twin_uses: list[Any]) -> list[str]:
        q = [w for w in uses if w.dtype == "INT8"]
        one = [w for w in q if w.scales == 1]
        twin_scales = sum(w.scales for w in twin_uses if w.dtype == "INT8")
        out = [f"{len(one)} of {len(q)} int8 weight tensor(s) carry one scale "
               f"({sum(w.scales for w in q)} scales in all; int8-dynamic stores {twin_scales}, "
               "one per output channel)"]
        more = [f"{w.name} ({w.scales})" for w in q if w.scales > 1]
        if more:
            out.append(f"still several scales: {', '.join(more)}")
        return out


class LitertMixedInt8(LitertDynamicInt8):
    """Accuracy-aware dynamic int8 (``--max-drop``): the weights whose int8 costs the most
    accuracy stay float, each with every op using it (an unrolled RNN's recurrent weight feeds
    one FULLY_CONNECTED per time step), until the drop measured with LiteRT fits; made only
    when all-int8 exceeds the budget."""

    label = "int8-mixed"
    recipe_key = "dynamic"
    recipe_name = "dynamic_wi8_afp32() + NO_QUANTIZE per weight"
    accuracy_aware = True
    opt_in = "max-drop"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None,
                 budget: Any = None) -> Artifact:
        from edgernn.convert.quantize.accuracy_budget import greedy_float_ops, needs_budget

        needs_budget(model, budget)
        what, limit = budget.describe(), budget.max_drop
        with tempfile.TemporaryDirectory(prefix="edgernn-mixed-") as tmp:
            work = Path(tmp)
            reference = budget.outputs(Path(fp32.path))
            full = work / "full.tflite"
            self._run(fp32, full)
            d_full = budget.drop(reference, budget.outputs(full))
            if d_full <= limit:
                raise NotRelevant(f"all-int8 is within the accuracy budget {limit:g} already "
                                  f"({what}: {d_full:.4g})")
            cands = candidates(full)
            if not cands:
                raise NotApplicable("ai-edge-quantizer dynamic int8 left every weight in fp32")
            regex = {k: exclusion_regex([s for _, s in w.consumers]) for k, w in cands.items()}
            # every weight alone float, written by one child
            made = {frozenset([k]): work / f"alone{i}.tflite" for i, k in enumerate(cands)}
            first, *rest = made.items()
            self._run(fp32, first[1], exclude=[regex[k] for k in first[0]],
                      extra=[{"out": str(p), "recipe": "dynamic", "exclude": [regex[k] for k in ks]}
                             for ks, p in rest])

            def write(names: list[str], p: Path) -> None:
                if frozenset(names) in made:
                    shutil.copyfile(made[frozenset(names)], p)
                else:
                    self._run(fp32, p, exclude=[regex[k] for k in names])

            kept, reached, sens = greedy_float_ops(
                write, [(k, w.ops) for k, w in cands.items()], budget, reference, work,
                suffix=".tflite")
            if reached > limit:
                raise NotApplicable(f"no mix fits the accuracy budget {limit:g}: with all {len(kept)} "
                                    f"int8 weight(s) float the {what} is {reached:.4g}")
            if len(kept) == len(cands):
                raise NotApplicable(
                    f"no mix fits the accuracy budget {limit:g} short of keeping all {len(cands)} int8 "
                    f"weight(s) float (the fp32 file); all-int8 {what}: {d_full:.4g}")
            full_size = full.stat().st_size
            res = self._run(fp32, path, exclude=[regex[k] for k, _ in kept])
        names = {k for k, _ in kept}
        scopes = {s for k in names for _, s in cands[k].consumers}
        uses = weight_uses(path)
        still = [w.name for w in uses if w.dtype != "FLOAT32" and {s for _, s in w.consumers} & scopes]
        if still:
            raise EdgeRNNError(f"ai-edge-quantizer did not keep {', '.join(still)} float "
                               "(its per-op recipe matched no op)")
        frac, notes = self._dynamic_notes(path, fp32)
        int8_left = sum(1 for w in uses if w.dtype == "INT8")
        notes.insert(0, (
            f"mixed precision for the accuracy budget {limit:g}: kept float "
            + "; ".join(f"{cands[k].label()} (alone-float drop {sens[k]:.4g})" for k, _ in kept)
            + f"; {what}: {reached:.4g} (all-int8: {d_full:.4g}); {len(cands) - len(kept)} of "
            f"{len(cands)} int8 weight tensor(s) stay int8 ({int8_left} in the file); "
            f"{path.stat().st_size / 1000:.1f} kB vs all-int8 {full_size / 1000:.1f} kB"))
        art = self._artifact(fp32, path, notes, frac, res)
        art.backend = (art.backend or "") + "; per-weight sensitivity search (greedy, measured with LiteRT)"
        return art


register_quantizer(LitertWeightOnlyInt8())
register_quantizer(LitertDynamicPerTensor())
register_quantizer(LitertMixedInt8())
