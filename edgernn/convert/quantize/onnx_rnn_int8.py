"""ONNX GRU (and LSTM) with int8 weights, which onnxruntime's quantizer cannot give.

onnxruntime's ``quantize_dynamic`` never quantizes ``GRU`` (onnxruntime#9796), so a GRU model's
"int8" file keeps its recurrent weights fp32. ``decompose_rnn_int8`` rewrites every ``GRU`` node
(and, with ``lstm=True``, every ``LSTM`` node) in one of two forms, both storing W and R as
symmetric int8 per output row (biases stay fp32):

``"node"``: the node stays; its W and R come from int8 initializers through ``Cast`` + ``Mul``
  (scale). onnxruntime folds those into fp32 initializers when the session loads (it would not fold
  ``DequantizeLinear``, which would then run on every call and keep the GRU kernel from pre-packing
  its weights), so it runs exactly as fast as the fp32 file; the arithmetic is fp32 on the rounded
  weights. Any GRU/LSTM the runtime accepts keeps working (sequence_lens, clip, ...).

``"scan"``: the node becomes plain ops that compute in int8:
  * the input projection of all time steps and all directions is ONE dynamically quantized MatMul
    ``X[S,B,I] @ W[I, D*G*H] + b`` (``DynamicQuantizeLinear`` + ``MatMulInteger`` + ``Cast`` + ``Mul``
    + ``Add``, which onnxruntime fuses into com.microsoft ``DynamicQuantizeMatMul``; or that op
    written directly with ``kernels="contrib"``). The recurrent biases that are plain addends (GRU
    z/r gates, all of LSTM's) are folded into its bias;
  * the recurrence is one ``Scan`` (both directions of a bidirectional node in one body, the
    reverse one through ``scan_input_directions``/``scan_output_directions``). Its MatMul uses the
    int8 R either ``"dynamic"``: an int8 MatMul per step, h quantized per step (uint8, per tensor);
    or ``"dequant"``: R folded to fp32 at load (Cast + Mul as above), an fp32 Gemm per step.
  Gate equations are those of the ONNX operators with default activations: GRU gates z, r, h with
  ``linear_before_reset`` 1 (what PyTorch exports) or 0, h' = (1 - z) * n + z * h; LSTM gates
  i, o, f, c. ``layout`` 0 and 1, directions forward, reverse and bidirectional,
  ``initial_h``/``initial_c`` present or absent, dynamic batch and sequence length. Nodes using
  ``sequence_lens``, ``clip``, peepholes, ``input_forget`` or other activations get the node form.

Speed (onnxruntime 1.32, one x86 core, seq 50, batch 1): every op in a Scan body costs ~0.35 us per
step, so the Scan form is 2.5-7x slower than onnxruntime's fused fp32 GRU up to H=256 and faster
from H=320 (0.66x at 384, 0.21x at 512, where fp32 R no longer fits in L2); ``form="auto"`` picks
per node by hidden size. For LSTM, onnxruntime's own ``DynamicQuantizeLSTM`` (quantize_dynamic) beats
both forms, so ``lstm`` is off by default: run this first, then ``quantize_dynamic`` on the result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import GraphProto, NodeProto, TensorProto, helper, numpy_helper

from edgernn.errors import EdgeRNNError

MS_DOMAIN = "com.microsoft"
GATES = {"GRU": 3, "LSTM": 4}
DEFAULT_ACTS = {"GRU": ["sigmoid", "tanh"], "LSTM": ["sigmoid", "tanh", "tanh"]}
RECURRENT_MODES = ("dequant", "dynamic")
FORMS = ("auto", "node", "scan")
# form="auto": the Scan rewrite (recurrent "dynamic") from this hidden size up, the node form below.
# Measured with onnxruntime 1.32 on one x86 core (Xeon, 2 MB L2 per core), seq 50, batch 1: the fp32
# GRU kernel is faster up to H=256 (Scan ops cost ~0.35 us each per step), the int8 Scan from H=320.
AUTO_SCAN_MIN_HIDDEN = 320
KERNELS = ("standard", "contrib")


def decompose_rnn_int8(src: Path, dst: Path, *, lstm: bool = False, form: str = "auto",
                       recurrent: str = "dynamic", kernels: str = "standard",
                       reduce_range: bool = False, pre_processed: bool = False) -> dict[str, Any]:
    """Write ``dst``: the fp32 ONNX file ``src`` (after onnxruntime's ``quant_pre_process``, which
    moves Constant-node weights into initializers) with every GRU node, and with ``lstm=True``
    every LSTM node, given int8 weights (see the module docstring). Other nodes are untouched.

    ``form``: ``"node"``, ``"scan"`` or ``"auto"`` (Scan from hidden size AUTO_SCAN_MIN_HIDDEN up).
    ``recurrent`` (Scan form): ``"dynamic"`` (int8 MatMul per step) or ``"dequant"`` (fp32 Gemm on
    R dequantized at load). ``kernels`` (Scan form): ``"standard"`` (ONNX ops only; onnxruntime
    fuses them into DynamicQuantizeMatMul) or ``"contrib"`` (com.microsoft DynamicQuantizeMatMul,
    onnxruntime only). ``reduce_range``: 7-bit weights (+-63), for x86 CPUs without VNNI whose
    u8*s8 kernels can saturate.

    Returns ``{"gru": n rewritten, "lstm": n rewritten, "nodes": [(node name, op, "node"|"scan")],
    "skipped": [(node name, op, reason)], "int8_elements": n, "weight_elements": n,
    "int8_fraction": f, "bytes": size of dst, "form", "recurrent", "kernels"}`` (weight elements:
    initializers and Constant tensors of >= 16 elements, all graphs, as ``weight_census`` counts).
    Raises EdgeRNNError when quant_pre_process fails or an option is unknown.
    ``pre_processed``: ``src`` is quant_pre_process's output already (it is not run again).
    """
    if form not in FORMS:
        raise EdgeRNNError(f"form must be one of {FORMS}, not {form!r}")
    if recurrent not in RECURRENT_MODES:
        raise EdgeRNNError(f"recurrent must be one of {RECURRENT_MODES}, not {recurrent!r}")
    if kernels not in KERNELS:
        raise EdgeRNNError(f"kernels must be one of {KERNELS}, not {kernels!r}")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if pre_processed:  # the caller ran quant_pre_process already
        model = onnx.load(str(src))
    else:
        with tempfile.TemporaryDirectory(prefix="edgernn-rnnq-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            try:
                quant_pre_process(src, pre, skip_symbolic_shape=True)
            except Exception as e:
                line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise EdgeRNNError(f"onnxruntime quant_pre_process failed on {src.name}: "
                                   f"{line}") from e
            model = onnx.load(str(pre))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    rw = _Rewriter(model, recurrent, kernels, 63 if reduce_range else 127, form, opset)
    ops = {"GRU", "LSTM"} if lstm else {"GRU"}
    rw.graph(model.graph, ops)
    if rw.uses_ms and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise EdgeRNNError(f"the int8 RNN rewrite of {src.name} is not a valid ONNX model: "
                           f"{str(e).splitlines()[0][:200]}") from e
    onnx.save(model, str(dst))
    from edgernn.convert.formats.onnx_weights import weight_census

    census = weight_census(model)
    return {"gru": rw.count["GRU"], "lstm": rw.count["LSTM"], "nodes": rw.done, "skipped": rw.skipped,
            "int8_elements": census.int8, "weight_elements": census.total,
            "int8_fraction": census.int8_fraction, "bytes": dst.stat().st_size,
            "form": form, "recurrent": recurrent, "kernels": kernels}


def quantize_axis(w: np.ndarray, axis: int, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice of ``w`` along ``axis``: (int8 like ``w``, float32 scale with
    ``w``'s rank, 1 everywhere but ``axis``, so ``q * scale`` broadcasts back to ``w``)."""
    axis = axis % w.ndim
    amax = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis), keepdims=True)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
    return q, scale


def quantize_columns(w: np.ndarray, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per column of ``w`` [K, N]: (int8 [K, N], float32 scale [N])."""
    q, scale = quantize_axis(w, 1, qmax)
    return q, scale.reshape(-1)


def _attrs(node: NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, recurrent: str, kernels: str, qmax: int, form: str,
                 opset: int):
        self.model = model
        self.opset = opset
        self.form = form
        self.recurrent = recurrent
        self.kernels = kernels
        self.qmax = qmax
        self.uses_ms = False
        self.count = {"GRU": 0, "LSTM": 0}
        self.skipped: list[tuple[str, str, str]] = []
        self.done: list[tuple[str, str, str]] = []
        self.names: set[str] = set()
        self._n = 0
        from edgernn.convert.formats.onnx_weights import graphs

        for g in graphs(model.graph):
            self.names.update(v for n in g.node for v in [*n.input, *n.output, n.name])
            self.names.update(v.name for v in [*g.input, *g.output, *g.initializer])

    # ---- naming and small emitters -------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base
        while name in self.names:
            self._n += 1
            name = f"{base}_{self._n}"
        self.names.add(name)
        return name

    def const(self, out: list, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        out.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def local_const(self, nodes: list, base: str, arr: np.ndarray) -> str:
        """A Constant node in the body itself: shape inference (onnx's, run by quantize_dynamic)
        cannot read outer-scope initializers and would infer equal Split sizes."""
        name = self.fresh(base)
        nodes.append(helper.make_node("Constant", [], [name], name=self.fresh(base + "/Constant"),
                                      value=numpy_helper.from_array(arr)))
        return name

    def op(self, nodes: list, op_type: str, inputs: list[str], base: str, n_out: int = 1,
           domain: str = "", **attrs: Any) -> list[str]:
        outs = [self.fresh(f"{base}_{op_type}_out{i}" if n_out > 1 else f"{base}_{op_type}")
                for i in range(n_out)]
        nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh(f"{base}/{op_type}"),
                                      domain=domain, **attrs))
        if domain == MS_DOMAIN:
            self.uses_ms = True
        return outs

    def dequant(self, nodes: list, inits: list, q: np.ndarray, scale: np.ndarray, base: str) -> str:
        """``float(q) * scale`` as Cast + Mul: both inputs are initializers, so onnxruntime folds
        them into an fp32 initializer when the session loads (it never folds DequantizeLinear, which
        would then run on every call and keep GRU/LSTM from pre-packing their weights)."""
        qf = self.op(nodes, "Cast", [self.const(inits, base + "_int8", q)], base, to=TensorProto.FLOAT)[0]
        return self.op(nodes, "Mul", [qf, self.const(inits, base + "_scale", scale)], base)[0]

    def qmatmul(self, nodes: list, inits: list, a: str, wq: str, scale: str, zp: str,
                bias: str | None, base: str) -> str:
        """``a @ dequant(wq) (+ bias)`` with ``a`` quantized dynamically (uint8, per tensor)."""
        if self.kernels == "contrib":
            ins = [a, wq, scale, zp] + ([bias] if bias else [])
            return self.op(nodes, "DynamicQuantizeMatMul", ins, base, domain=MS_DOMAIN)[0]
        aq, a_scale, a_zp = self.op(nodes, "DynamicQuantizeLinear", [a], base, n_out=3)
        acc = self.op(nodes, "MatMulInteger", [aq, wq, a_zp, zp], base)[0]
        accf = self.op(nodes, "Cast", [acc], base, to=TensorProto.FLOAT)[0]
        s = self.op(nodes, "Mul", [a_scale, scale], base + "_scale")[0]
        y = self.op(nodes, "Mul", [accf, s], base)[0]
        if bias:
            y = self.op(nodes, "Add", [y, bias], base + "_bias")[0]
        return y

    # ---- graph walk --------------------------------------------------------------------------
    def graph(self, g: GraphProto, ops: set[str]) -> None:
        for node in g.node:  # sub-graphs first (If/Loop/Scan bodies)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    self.graph(a.g, ops)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        self.graph(sg, ops)
        consts = {t.name: t for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        consts[n.output[0]] = a.t
        new_nodes: list[NodeProto] = []
        new_inits: list[TensorProto] = []
        replaced_inputs: set[str] = set()
        for node in g.node:
            if node.op_type not in ops or node.domain not in ("", "ai.onnx"):
                new_nodes.append(node)
                continue
            why = self.weights_problem(node, consts)
            if why:
                self.skipped.append((node.name, node.op_type, why))
                new_nodes.append(node)
                continue
            hidden = int(_attrs(node).get("hidden_size", 0))
            no_scan = self.scan_problem(node)
            if self.form == "node" or no_scan or (self.form == "auto" and hidden < AUTO_SCAN_MIN_HIDDEN):
                self.node_form(node, consts, new_nodes, new_inits)
                replaced_inputs.update(node.input[1:3])
                self.count[node.op_type] += 1
                self.done.append((node.name, node.op_type,
                                  f"node ({no_scan})" if no_scan and self.form == "scan" else "node"))
                continue
            self.rewrite(node, consts, new_nodes, new_inits)
            replaced_inputs.update(node.input[1:4])
            self.count[node.op_type] += 1
            self.done.append((node.name, node.op_type, "scan"))
        del g.node[:]
        g.node.extend(new_nodes)
        g.initializer.extend(new_inits)
        # drop the float weights nobody reads any more
        from edgernn.convert.formats.onnx_weights import graphs

        used = {i for sg in graphs(g) for n in sg.node for i in n.input} | {o.name for o in g.output}
        dead = {x for x in replaced_inputs if x and x not in used}
        keep = [t for t in g.initializer if t.name not in dead]
        del g.initializer[:]
        g.initializer.extend(keep)
        keep_nodes = [n for n in g.node if not (n.op_type == "Constant" and n.output[0] in dead)]
        del g.node[:]
        g.node.extend(keep_nodes)

    def node_form(self, node: NodeProto, consts: dict[str, TensorProto], nodes: list,
                  inits: list) -> None:
        """Keep the node; feed its W and R from int8 initializers through Cast + Mul."""
        base = self.fresh(f"{node.name or node.op_type}_int8".replace("/", "_").strip("_"))
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for idx, tag in ((1, "W"), (2, "R")):
            w = numpy_helper.to_array(consts[node.input[idx]]).astype(np.float32)  # [D, G*H, K]
            q, scale = quantize_columns(w.reshape(-1, w.shape[-1]).T, self.qmax)  # per output row
            new.input[idx] = self.dequant(nodes, inits, np.ascontiguousarray(q.T).reshape(w.shape),
                                          scale.reshape(w.shape[0], w.shape[1], 1), f"{base}_{tag}")
        nodes.append(new)

    @staticmethod
    def weights_problem(node: NodeProto, consts: dict[str, TensorProto]) -> str | None:
        ins = list(node.input) + [""] * 8
        if ins[1] not in consts or ins[2] not in consts or (ins[3] and ins[3] not in consts):
            return "weights are not constant"
        if consts[ins[1]].data_type != TensorProto.FLOAT or consts[ins[2]].data_type != TensorProto.FLOAT:
            return "weights are not float32"
        return None

    def scan_problem(self, node: NodeProto) -> str | None:
        at = _attrs(node)
        ins = list(node.input) + [""] * 8
        if self.opset < 13:
            return f"opset {self.opset} < 13 (Split with sizes as input)"
        if ins[4]:
            return "sequence_lens input is not supported"
        if node.op_type == "LSTM" and ins[7]:
            return "peephole weights are not supported"
        if "clip" in at:
            return "clip is not supported"
        if at.get("input_forget", 0):
            return "input_forget is not supported"
        acts = [a.decode().lower() if isinstance(a, bytes) else str(a).lower()
                for a in at.get("activations", [])]
        dirs = 2 if at.get("direction", b"forward") == b"bidirectional" else 1
        if acts and acts != DEFAULT_ACTS[node.op_type] * dirs:
            return f"activations {acts} are not supported"
        return None

    # ---- one node ----------------------------------------------------------------------------
    def rewrite(self, node: NodeProto, consts: dict[str, TensorProto], nodes: list,
                inits: list) -> None:
        kind = node.op_type
        at = _attrs(node)
        ins = list(node.input) + [""] * 8
        outs = list(node.output) + [""] * 3
        direction = at.get("direction", b"forward").decode()
        reverse = [direction == "reverse"] if direction != "bidirectional" else [False, True]
        D, G = len(reverse), GATES[kind]
        W = numpy_helper.to_array(consts[ins[1]]).astype(np.float32)  # [D, G*H, I]
        R = numpy_helper.to_array(consts[ins[2]]).astype(np.float32)  # [D, G*H, H]
        H = int(at.get("hidden_size", R.shape[-1]))
        Bias = (numpy_helper.to_array(consts[ins[3]]).astype(np.float32) if ins[3]
                else np.zeros((D, 2 * G * H), np.float32))
        lbr = kind == "GRU" and at.get("linear_before_reset", 0) == 1
        layout = at.get("layout", 0)
        base = self.fresh(f"{node.name or kind}_int8".replace("/", "_").strip("_"))

        # ---- layout 1 -> 0 --------------------------------------------------------------
        x = ins[0]
        init_h, init_c = ins[5], ins[6] if kind == "LSTM" else ""
        if layout == 1:
            x = self.op(nodes, "Transpose", [x], base + "_x", perm=[1, 0, 2])[0]
            init_h = init_h and self.op(nodes, "Transpose", [init_h], base + "_h0", perm=[1, 0, 2])[0]
            init_c = init_c and self.op(nodes, "Transpose", [init_c], base + "_c0", perm=[1, 0, 2])[0]

        # ---- input projection: one int8 MatMul for all steps and directions --------------------
        wb, rb = Bias[:, : G * H], Bias[:, G * H:]
        in_bias = wb.copy()
        if kind == "LSTM" or not lbr:
            in_bias += rb  # every recurrent bias is a plain addend
        else:
            in_bias[:, : 2 * H] += rb[:, : 2 * H]  # GRU lbr=1: Rb_n stays inside r * (...)
        wcat = np.concatenate([W[d].T for d in range(D)], axis=1)  # [I, D*G*H]
        wq, ws = quantize_columns(wcat, self.qmax)
        zp8 = self.const(inits, base + "_zp", np.array(0, np.int8))
        proj = self.qmatmul(nodes, inits, x, self.const(inits, base + "_W_int8", wq),
                            self.const(inits, base + "_W_scale", ws), zp8,
                            self.const(inits, base + "_W_bias", in_bias.reshape(-1)), base + "_xproj")
        # pieces per direction: GRU [zr | n], LSTM [iofc]
        widths = [2 * H, H] * D if kind == "GRU" else [G * H] * D
        if len(widths) > 1:
            pieces = self.op(nodes, "Split", [proj, self.const(inits, base + "_split",
                                                               np.array(widths, np.int64))],
                             base + "_xproj", n_out=len(widths), axis=2)
        else:
            pieces = [proj]
        per_dir = len(widths) // D
        scan_in = [pieces[d * per_dir:(d + 1) * per_dir] for d in range(D)]

        # ---- initial states ------------------------------------------------------------------
        zeros = None

        def zero_state() -> str:
            nonlocal zeros
            if zeros is None:
                shp = self.op(nodes, "Shape", [x], base + "_x")[0]
                shp = self.op(nodes, "Gather", [shp, self.const(inits, base + "_batch_axis",
                                                                np.array([1]))], base + "_batch")[0]
                full = self.op(nodes, "Concat", [shp, self.const(inits, base + "_H", np.array([H]))],
                               base + "_zero_shape", axis=0)[0]
                zeros = self.op(nodes, "ConstantOfShape", [full], base + "_zero",
                                value=numpy_helper.from_array(np.zeros(1, np.float32)))[0]
            return zeros

        def state(init: str, d: int, tag: str) -> str:
            if not init:
                return zero_state()
            return self.op(nodes, "Gather", [init, self.const(inits, f"{base}_d{d}", np.array(d))],
                           f"{base}_{tag}0_d{d}", axis=0)[0]

        # ---- recurrent weights ---------------------------------------------------------------
        rec_w: list[dict[str, Any]] = []
        for d in range(D):
            rt = R[d].T  # [H, G*H]
            # one MatMul for all gates, except where a separate n-gate MatMul saves ops in the body
            one = kind == "LSTM" or (lbr and self.recurrent == "dynamic")
            mats = {"all": rt} if one else {"zr": rt[:, : 2 * H], "n": rt[:, 2 * H:]}
            entry: dict[str, Any] = {}
            for key, m in mats.items():
                q, s = quantize_columns(np.ascontiguousarray(m), self.qmax)
                if self.recurrent == "dequant":
                    entry[key] = self.dequant(nodes, inits, q, s, f"{base}_R{d}{key}")
                else:
                    entry[key] = (self.const(inits, f"{base}_R{d}{key}_int8", q),
                                  self.const(inits, f"{base}_R{d}{key}_scale", s))
            if lbr and one:
                nb = np.zeros(G * H, np.float32)
                nb[2 * H:] = rb[d, 2 * H:]
                entry["bias"] = self.const(inits, f"{base}_R{d}_bias", nb)
            elif lbr:
                entry["bias"] = self.const(inits, f"{base}_R{d}_bias", rb[d, 2 * H:].copy())
            rec_w.append(entry)

        # ---- Scan body -----------------------------------------------------------------------
        want_y = bool(outs[0])
        body_nodes: list[NodeProto] = []
        b_in: list[str] = []
        b_state_out: list[str] = []
        b_scan_out: list[str] = []
        scan_states: list[str] = []
        n_states = 2 if kind == "LSTM" else 1
        for d in range(D):
            tag = f"{base}_b{d}"
            h = self.fresh(tag + "_h")
            c = self.fresh(tag + "_c") if kind == "LSTM" else ""
            xs = [self.fresh(f"{tag}_x{i}") for i in range(len(scan_in[d]))]
            b_in += [h] + ([c] if c else [])
            scan_states.append(state(init_h, d, "h"))
            if kind == "LSTM":
                scan_states.append(state(init_c, d, "c"))
            if kind == "GRU":
                h_new = self.gru_step(body_nodes, inits, rec_w[d], h, xs[0], xs[1], H, lbr, tag)
                b_state_out.append(h_new)
            else:
                h_new, c_new = self.lstm_step(body_nodes, inits, rec_w[d], h, c, xs[0], H, tag)
                b_state_out += [h_new, c_new]
            if want_y:
                b_scan_out.append(self.op(body_nodes, "Identity", [h_new], tag + "_y")[0])
            rec_w[d]["xs"] = xs
        b_in += [x_ for d in range(D) for x_ in rec_w[d]["xs"]]
        piece_w = widths[:per_dir]

        def vi(name: str, width: int) -> onnx.ValueInfoProto:  # [batch, width]
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])
        body = helper.make_graph(
            body_nodes, self.fresh(base + "_body"),
            [vi(n, H) for n in b_in[: len(b_state_out)]]
            + [vi(n, piece_w[i % per_dir]) for i, n in enumerate(b_in[len(b_state_out):])],
            [vi(n, H) for n in b_state_out + b_scan_out])
        scan_inputs = [p for d in range(D) for p in scan_in[d]]
        in_dirs = [int(reverse[d]) for d in range(D) for _ in scan_in[d]]
        final = [self.fresh(f"{base}_last{i}") for i in range(len(b_state_out))]
        ys = [self.fresh(f"{base}_y{d}") for d in range(len(b_scan_out))]
        scan_attrs: dict[str, Any] = {"body": body, "num_scan_inputs": len(scan_inputs),
                                      "scan_input_directions": in_dirs}
        if ys:
            scan_attrs["scan_output_directions"] = [int(r) for r in reverse]
        nodes.append(helper.make_node("Scan", scan_states + scan_inputs, final + ys,
                                      name=self.fresh(base + "/Scan"), **scan_attrs))

        # ---- outputs -------------------------------------------------------------------------
        def stack(vals: list[str], axis: int, name: str, tag: str) -> None:
            ax = self.const(inits, f"{base}_{tag}_axis", np.array([axis]))
            if len(vals) == 1:
                nodes.append(helper.make_node("Unsqueeze", [vals[0], ax], [name],
                                              name=self.fresh(f"{base}/{tag}")))
                return
            us = [self.op(nodes, "Unsqueeze", [v, ax], f"{base}_{tag}{i}")[0] for i, v in enumerate(vals)]
            nodes.append(helper.make_node("Concat", us, [name], axis=axis,
                                          name=self.fresh(f"{base}/{tag}")))

        def emit(vals: list[str], axis: int, name: str, tag: str, perm: list[int]) -> None:
            if layout == 1:
                tmp = self.fresh(f"{base}_{tag}_l0")
                stack(vals, axis, tmp, tag)
                nodes.append(helper.make_node("Transpose", [tmp], [name], perm=perm,
                                              name=self.fresh(f"{base}/{tag}_layout")))
            else:
                stack(vals, axis, name, tag)

        if outs[0]:
            emit(ys, 1, outs[0], "Y", [2, 0, 1, 3])
        if outs[1]:
            emit([final[d * n_states] for d in range(D)], 0, outs[1], "Y_h", [1, 0, 2])
        if kind == "LSTM" and outs[2]:
            emit([final[d * n_states + 1] for d in range(D)], 0, outs[2], "Y_c", [1, 0, 2])

    def rec_matmul(self, nodes: list, inits: list, w: dict[str, Any], key: str, a: str,
                   addend: str | None, tag: str) -> str:
        """``a @ R_key (+ addend)`` inside the body."""
        if self.recurrent == "dequant":
            if addend:
                return self.op(nodes, "Gemm", [a, w[key], addend], tag)[0]
            return self.op(nodes, "MatMul", [a, w[key]], tag)[0]
        q, s = w[key]
        zp = self.const(inits, tag + "_zp", np.array(0, np.int8))
        bias = addend if addend is not None and addend == w.get("bias") else None
        y = self.qmatmul(nodes, inits, a, q, s, zp, bias, tag)
        if addend and not bias:
            y = self.op(nodes, "Add", [y, addend], tag + "_add")[0]
        return y

    def gru_step(self, nodes: list, inits: list, w: dict[str, Any], h: str, xzr: str, xn: str,
                 H: int, lbr: bool, tag: str) -> str:
        if "all" in w:  # GRU lbr=1, one int8 MatMul: rec = h @ R + [0, 0, Rb_n]
            rec = self.rec_matmul(nodes, inits, w, "all", h, w["bias"], tag + "_rec")
            split = self.local_const(nodes, tag + "_split", np.array([2 * H, H], np.int64))
            rzr, rn = self.op(nodes, "Split", [rec, split], tag + "_rec", n_out=2, axis=1)
            pre = self.op(nodes, "Add", [xzr, rzr], tag + "_zr")[0]
        else:  # h @ R_zr + x_zr as one Gemm
            pre = self.rec_matmul(nodes, inits, w, "zr", h, xzr, tag + "_reczr")
        zr = self.op(nodes, "Sigmoid", [pre], tag)[0]
        z, r = self.op(nodes, "Split", [zr], tag + "_zr", n_out=2, axis=1)
        if "all" in w:
            rn_r = self.op(nodes, "Mul", [r, rn], tag + "_rn")[0]
            n_pre = self.op(nodes, "Add", [xn, rn_r], tag + "_n")[0]
        elif lbr:  # r * (h @ R_n + Rb_n)
            rn = self.rec_matmul(nodes, inits, w, "n", h, w["bias"], tag + "_recn")
            n_pre = self.op(nodes, "Add", [xn, self.op(nodes, "Mul", [r, rn], tag + "_rn")[0]],
                            tag + "_n")[0]
        else:  # (r * h) @ R_n + x_n (Rb_n folded into x_n)
            rh = self.op(nodes, "Mul", [r, h], tag + "_rh")[0]
            n_pre = self.rec_matmul(nodes, inits, w, "n", rh, xn, tag + "_recn")
        n = self.op(nodes, "Tanh", [n_pre], tag)[0]
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        hn = self.op(nodes, "Sub", [h, n], tag + "_hn")[0]
        return self.op(nodes, "Add", [n, self.op(nodes, "Mul", [z, hn], tag + "_zhn")[0]],
                       tag + "_h")[0]

    def lstm_step(self, nodes: list, inits: list, w: dict[str, Any], h: str, c: str, x: str,
                  H: int, tag: str) -> tuple[str, str]:
        g = self.rec_matmul(nodes, inits, w, "all", h, x, tag + "_rec")  # [B, 4H], order i o f c
        split = self.local_const(nodes, tag + "_split", np.array([3 * H, H], np.int64))
        iof, cc = self.op(nodes, "Split", [g, split], tag + "_g", n_out=2, axis=1)
        i, o, f = self.op(nodes, "Split", [self.op(nodes, "Sigmoid", [iof], tag)[0]], tag + "_iof",
                          n_out=3, axis=1)
        ct = self.op(nodes, "Tanh", [cc], tag + "_ct")[0]
        c_new = self.op(nodes, "Add", [self.op(nodes, "Mul", [f, c], tag + "_fc")[0],
                                       self.op(nodes, "Mul", [i, ct], tag + "_ic")[0]], tag + "_c")[0]
        h_new = self.op(nodes, "Mul", [o, self.op(nodes, "Tanh", [c_new], tag + "_tc")[0]],
                        tag + "_h")[0]
        return h_new, c_new
