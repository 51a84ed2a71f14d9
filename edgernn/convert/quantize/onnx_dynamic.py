"""ONNX int8 dynamic quantization (onnxruntime ``quant_pre_process`` + ``quantize_dynamic``),
with edgernn's int8 GRU forms (``edgernn.convert.quantize.onnx_rnn_int8``) where onnxruntime has none.

``quantize_dynamic`` only sees weights stored as initializers; the TorchScript exporter keeps a
scripted model's LSTM weights in ``Constant`` nodes, which it would skip without a word
(onnxruntime#18671). ``quant_pre_process`` folds them into initializers first, and sub-graphs
(If/Loop bodies) are quantized too. LSTM becomes DynamicQuantizeLSTM, Conv ConvInteger,
MatMul/Gemm MatMulInteger, Embedding tables int8. onnxruntime has no quantized GRU
(onnxruntime#9796), so two variants give a GRU int8 weights, and the bench measures which is
faster on the target:

- ``int8-dynamic``: every GRU keeps onnxruntime's fused kernel, its weights stored int8 and
  expanded to fp32 when the session loads (a 4x smaller file, fp32 compute and memory);
- ``int8-scan``: every GRU and LSTM becomes one int8 MatMul over all time steps plus a ``Scan``
  with an int8 recurrent MatMul per step (int8 compute; pays off on large hidden sizes).

The notes say per op type what runs in int8 and why the rest does not.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgernn.convert.artifact import Artifact
from edgernn.convert.formats.onnx import op_census
from edgernn.convert.quantize.base import NotApplicable, NotRelevant, register_quantizer
from edgernn.model.loading import LoadedModel


def weight_fraction_int8(path: Path) -> float:
    """Share of weight elements (initializers and Constant tensors) stored as 8-bit integers."""
    from edgernn.convert.formats.onnx_weights import weight_census

    return weight_census(path).int8_fraction


def pre_process(src: Path, dst: Path) -> tuple[Path, str | None]:
    """Run onnxruntime's ``quant_pre_process``; return the file to quantize and a note on failure."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    except Exception as e:
        line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return src, (f"onnxruntime quant_pre_process failed ({line}); weights held in Constant "
                     "nodes, if any, stay fp32")
    return dst, None


def _has_weighted(model: Any, op_types: tuple[str, ...]) -> bool:
    """Whether ``model`` has a node of ``op_types`` with a constant weight (a Gather that
    indexes activations is no embedding table)."""
    import onnx

    from edgernn.convert.quantize.onnx_ops import mark_weighted_nodes

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # marking renames nodes
    return any(n.op_type in op_types and n.const_weight for n in mark_weighted_nodes(copy))


RNN_NOTES = {
    "node": "{n} GRU: weights stored int8 (symmetric, per output row) and expanded to fp32 when "
            "onnxruntime loads the file: the fused GRU kernel computes in fp32 (onnxruntime has no "
            "int8 GRU, onnxruntime#9796); a smaller file, not faster",
    "scan": "{n}: input projection of all time steps as one int8 MatMul, the recurrence as a Scan "
            "with an int8 MatMul per step (h quantized per step); weights symmetric per output row",
}


def ort_quantization_missing() -> str | None:
    """None when onnxruntime's quantization package imports, else the reason."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        return "onnxruntime.quantization is not importable (pip install onnxruntime)"
    return None


@dataclass
class Prepared:
    """An fp32 graph ready for ``quantize_dynamic``: pre-processed once (and its RNNs rewritten)
    so that several quantizations of it (the ``--max-drop`` search) do not redo that work."""

    model: Any  # onnx.ModelProto; every quantization marks a copy
    notes: list[str]
    before: set[str]  # names of the model's own nodes (not the RNN rewrite's)
    rewritten: set[str]  # RNN nodes the rewrite replaced or re-fed


class OnnxDynamicInt8:
    format = "onnx"
    mode = "dynamic"
    label = "int8-dynamic"
    rnn_form = "node"  # edgernn's GRU rewrite before quantize_dynamic; LSTM left to onnxruntime
    rnn_lstm = False
    keep_float: tuple[str, ...] = ()  # op types left fp32 (a per-op variant)
    # onnxruntime quantize_dynamic settings (a "setting" variant changes one of them)
    per_channel = False
    weight_type = "QInt8"  # symmetric int8; "QUInt8": asymmetric uint8 with a zero point
    reduce_range = False  # 7-bit weights

    def available(self) -> str | None:
        return ort_quantization_missing()

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None) -> Artifact:
        return self._quantize(fp32, path)

    def prepare(self, fp32: Artifact) -> Prepared:
        """Pre-process the fp32 file, rewrite its RNNs (per ``rnn_form``), note what happened;
        raise NotRelevant when this variant is about an op the graph lacks."""
        import onnx

        from edgernn.convert.formats.onnx_weights import all_nodes, constant_node_weights

        notes: list[str] = []
        held = constant_node_weights(fp32.path)
        rewritten: set[str] = set()
        with tempfile.TemporaryDirectory(prefix="edgernn-q-") as tmp:
            src, failed = pre_process(Path(fp32.path), Path(tmp) / "pre.onnx")
            if failed:
                notes.append(failed)
            elif held:
                notes.append(f"{held} weight tensor(s) held in Constant nodes folded into "
                             "initializers first (onnxruntime quant_pre_process)")
            m = onnx.load(str(src))
            before = {n.name for n in all_nodes(m)}
            rnns = Counter(n.op_type for n in all_nodes(m) if n.op_type in ("GRU", "LSTM"))
            if self.rnn_form == "scan" and not rnns:
                raise NotRelevant("the graph has no GRU or LSTM node to turn into a Scan")
            if self.rnn_form != "none" and (rnns.get("GRU") or (self.rnn_lstm and rnns)):
                dst = Path(tmp) / "rnn.onnx"
                rewritten = self._rewrite_rnns(src, dst, notes, pre_processed=not failed)
                if rewritten:
                    m = onnx.load(str(dst))
        if self.keep_float and not _has_weighted(m, self.keep_float):
            raise NotRelevant(f"the graph has no {'/'.join(self.keep_float)} with weights to "
                              "keep in fp32")
        return Prepared(m, notes, before, rewritten)

    def _quantize(self, fp32: Artifact, path: Path, exclude: tuple[str, ...] = (),
                  prepared: Prepared | None = None) -> Artifact:
        """Write ``path`` from ``prepared`` (made here when not given); ``exclude``: names of
        nodes left float (accuracy-aware variants). ``self.last_nodes`` keeps every weighted
        node with its fate."""
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from edgernn.convert.formats.onnx_weights import share, weight_census
        from edgernn.convert.quantize.onnx_ops import (
            ORT_DYNAMIC,
            mark_weighted_nodes,
            read_fates,
            summarize,
        )

        logging.getLogger().setLevel(logging.ERROR)
        prep = prepared or self.prepare(fp32)
        notes, before, rewritten = list(prep.notes), prep.before, prep.rewritten
        m = onnx.ModelProto()
        m.CopyFrom(prep.model)  # marking renames nodes in place
        nodes = mark_weighted_nodes(m)
        # the per-op summary is about the model's own ops, not the rewrite's scale Mul/Add nodes
        own = [n for n in nodes if n.name in before and n.name not in rewritten]
        marked = [f"{n.name}#edgernn{k}#" for k, n in enumerate(nodes) if n.name in exclude]
        quantize_dynamic(m, str(path), weight_type=getattr(QuantType, self.weight_type),
                         per_channel=self.per_channel, reduce_range=self.reduce_range,
                         op_types_to_quantize=sorted(ORT_DYNAMIC - set(self.keep_float))
                         if self.keep_float else None, nodes_to_exclude=marked or None,
                         extra_options={"EnableSubgraph": True})
        q = onnx.load(str(path))
        read_fates(q, nodes)
        self.last_nodes = nodes
        for n in own:
            if n.name in exclude and n.fate.startswith("stays"):
                n.fate = "stays fp32: kept float for --max-drop"
        for n in own:
            if n.op_type in self.keep_float and n.fate.startswith("stays"):
                n.fate = "stays fp32: kept float on purpose (this variant measures int8 without it)"
        summary = summarize(own)
        onnx.save(q, str(path))
        census = weight_census(q)
        if census.int8 == 0:
            path.unlink(missing_ok=True)
            raise NotApplicable(f"nothing to quantize: {summary or 'the graph holds no weights'}")
        frac = census.int8_fraction
        if summary:
            notes.insert(0, summary)
        if getattr(self, "kind", None) == "setting":
            notes.insert(0, self.setting_note(Counter(n.op_type for n in nodes if n.name in before)))
        notes.append(f"int8 weights: {share(frac)} of {census.total} weight elements "
                     "(initializers and Constant tensors)")
        return Artifact(
            variant=f"onnx-{self.label}", format="onnx", quantization=self.label,
            runtime=fp32.runtime, path=str(path), ops=op_census(path), notes=notes,
            quantized_fraction=frac, accepts_other_seq_len=fp32.accepts_other_seq_len,
            dynamic_batch=fp32.dynamic_batch,
            backend=("edgernn int8 RNN rewrite (" + self.rnn_form + ") + " if rewritten else "")
            + "onnxruntime.quantization quant_pre_process + quantize_dynamic (QInt8 weights, "
              "sub-graphs included)",
        )

    def setting_note(self, ops: Counter[str]) -> str:
        """What this setting changes in this graph (and what it cannot change)."""
        touched = sorted(o for o in ops if o in ("MatMul", "Gemm", "Conv", "Gather"))
        fixed = [f"{o} weights are int8 per output channel, symmetric, in every setting "
                 f"({'onnxruntime' if o == 'LSTM' else 'edgernn'}'s {o} quantizer)"
                 for o in ("LSTM", "GRU") if ops.get(o)]
        return (f"setting: {self.change} (quantize_dynamic per_channel={self.per_channel}, "
                f"weight_type={self.weight_type}, reduce_range={self.reduce_range}); applies to "
                f"{', '.join(touched) or 'no op of this graph'}" + "".join(f"; {f}" for f in fixed))

    def _rewrite_rnns(self, src: Path, dst: Path, notes: list[str],
                      pre_processed: bool) -> set[str]:
        """Write ``dst``: GRU (and for the Scan form LSTM) nodes with int8 weights; the note says
        how. Returns the names of the nodes rewritten (none: ``dst`` is not to be used)."""
        from edgernn.convert.quantize.onnx_rnn_int8 import decompose_rnn_int8

        res = decompose_rnn_int8(src, dst, lstm=self.rnn_lstm, form=self.rnn_form,
                                 recurrent="dynamic", reduce_range=self.reduce_range,
                                 pre_processed=pre_processed)
        done = Counter(op for _, op, _ in res["nodes"])
        if not done:
            return set()
        what = ", ".join(f"{k} {op}" for op, k in done.items())
        if self.rnn_form == "node":
            what = str(sum(done.values()))
        notes.append(RNN_NOTES[self.rnn_form].format(n=what))
        for name, op, why in res["skipped"]:
            notes.append(f"{op} {name} kept fp32: {why}")
        return {name for name, _, _ in res["nodes"]}


class OnnxScanInt8(OnnxDynamicInt8):
    """GRU and LSTM computing in int8 (a Scan per recurrent node), the rest as int8-dynamic."""

    label = "int8-scan"
    rnn_form = "scan"
    rnn_lstm = True


class OnnxMixedInt8(OnnxDynamicInt8):
    """Accuracy-aware int8 (``--max-drop``): the ops whose int8 costs the most accuracy stay
    float until the drop fits; made only when all-int8 exceeds the budget."""

    label = "int8-mixed"
    rnn_form = "none"  # onnxruntime's quantizer only: every op can be left float by name
    accuracy_aware = True
    opt_in = "max-drop"

    def quantize(self, model: LoadedModel, fp32: Artifact, path: Path, calib: Any = None,
                 budget: Any = None) -> Artifact:
        from edgernn.convert.quantize.accuracy_budget import greedy_float_ops, needs_budget

        needs_budget(model, budget)
        with tempfile.TemporaryDirectory(prefix="edgernn-mixed-") as tmp:
            work = Path(tmp)
            reference = budget.outputs(Path(fp32.path))
            prep = self.prepare(fp32)  # pre-processed once for every quantization below
            full = self._quantize(fp32, work / "full.onnx", prepared=prep)
            d_full = budget.drop(reference, budget.outputs(Path(full.path)))
            what = budget.describe()
            if d_full <= budget.max_drop:
                raise NotRelevant(f"all-int8 is within the accuracy budget {budget.max_drop:g} "
                                  f"already ({what}: {d_full:.4g})")
            cands = [(n.name, n.op_type) for n in self.last_nodes if n.fate.startswith("->")]
            kept, reached, sens = greedy_float_ops(
                lambda names, p: self._quantize(fp32, p, tuple(names), prep), cands, budget,
                reference, work)
            if reached > budget.max_drop:
                raise NotApplicable(f"no mix fits the accuracy budget {budget.max_drop:g}: with all "
                                    f"{len(kept)} quantizable op(s) float the {what} is {reached:.4g}")
            art = self._quantize(fp32, path, tuple(n for n, _ in kept), prep)
        art.notes.insert(0, (
            f"mixed precision for the accuracy budget {budget.max_drop:g}: kept float "
            + ", ".join(f"{n} ({op}, alone-float drop {sens[n]:.4g})" for n, op in kept)
            + f"; {what}: {reached:.4g} (all-int8: {d_full:.4g}); "
            f"{len(cands) - len(kept)} of {len(cands)} quantizable op(s) stay int8"))
        art.backend = (art.backend or "") + "; per-op sensitivity search (greedy, measured)"
        return art


class OnnxInt8FloatOps(OnnxDynamicInt8):
    """int8-dynamic with one op class left fp32: int8 with per-call activation quantization
    (ConvInteger, MatMulInteger) can cost more time than it saves; the bench measures both on
    the target and select says which to keep (``kind`` "op", ``twin`` int8-dynamic)."""

    twin = "int8-dynamic"
    kind = "op"

    def __init__(self, label: str, keep_float: tuple[str, ...], opt_in: str | None,
                 rnn_form: str = "node") -> None:
        self.label, self.keep_float, self.opt_in, self.rnn_form = label, keep_float, opt_in, rnn_form
        self.change = f"{'/'.join(keep_float)} kept fp32"


class OnnxInt8Setting(OnnxDynamicInt8):
    """int8-dynamic with one quantize_dynamic setting changed (``--tune``): the bench measures
    it beside int8-dynamic on the target; select keeps the better within the drop budget."""

    twin = "int8-dynamic"
    kind = "setting"
    opt_in = "tune"

    def __init__(self, label: str, change: str, **settings: Any) -> None:
        self.label, self.change = label, change
        for k, v in settings.items():
            setattr(self, k, v)


register_quantizer(OnnxDynamicInt8())
# per-op alternatives: Conv always (a conv front end is where int8 most often costs time),
# the other op classes with --per-op
register_quantizer(OnnxInt8FloatOps("int8-dynamic-fp32conv", ("Conv",), None))
register_quantizer(OnnxInt8FloatOps("int8-dynamic-fp32rnn", ("GRU", "LSTM"), "per-op", "none"))
register_quantizer(OnnxInt8FloatOps("int8-dynamic-fp32matmul", ("MatMul", "Gemm"), "per-op"))
register_quantizer(OnnxInt8FloatOps("int8-dynamic-fp32gather", ("Gather",), "per-op"))
# settings alternatives (--tune); LSTM/GRU weights are per-channel symmetric in all of them
register_quantizer(OnnxInt8Setting("int8-dynamic-perchannel", "per-channel weights",
                                   per_channel=True))
register_quantizer(OnnxInt8Setting("int8-dynamic-u8", "asymmetric uint8 weights",
                                   weight_type="QUInt8"))
register_quantizer(OnnxInt8Setting("int8-dynamic-reducerange", "7-bit weights (reduce_range)",
                                   reduce_range=True))
register_quantizer(OnnxScanInt8())
register_quantizer(OnnxMixedInt8())
