"""Read a model's graph into a tflite-keras plan: TorchScript graphs for ScriptModules (scripted
or traced archives), torch.fx for eager modules (a torch.jit.trace graph when fx cannot trace).

Both readers replay the graph through :class:`~edgernn.convert.formats.tflite_keras.walk.Walker`:
calls of torch.nn layers become plan steps, other modules are entered (their graph is read),
tensor ops are interpreted, and anything else is refused with its op name and source line.
"""

from __future__ import annotations

import builtins
import operator
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edgernn.convert.formats.tflite_keras.plan import Plan
from edgernn.convert.formats.tflite_keras.values import Poison, State, Sym, Zero, locate
from edgernn.convert.formats.tflite_keras.walk import CONTAINERS, LEAVES, Walker

_CONV_KINDS = ("aten::conv1d", "aten::_convolution")
_PY_OPS: dict[str, Callable[..., Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge, "__is__": operator.is_, "__isnot__": operator.is_not, "__not__": operator.not_,
    "__and__": operator.and_, "__or__": operator.or_, "len": len, "Int": int, "Float": float,
    "ScalarImplicit": lambda v: v, "floordiv": operator.floordiv, "neg": operator.neg,
}


def plan_from_graph(model: Any, unroll: bool) -> tuple[Plan, dict[str, np.ndarray]]:
    """The plan of any model: its TorchScript graph, or torch.fx for an eager module."""
    import torch

    module = model.module
    if isinstance(module, torch.jit.ScriptModule):
        w = Walker(model.spec, unroll, f"the TorchScript graph ({_ts_class(module)})")
        return _TorchScript(w).run(module)
    try:
        gm = _fx_graph(module)
    except Exception as e:  # fx cannot trace it (e.g. Python control flow on tensors): trace it
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (model.example_input(),), check_trace=False)
        w = Walker(model.spec, unroll, f"a torch.jit.trace graph of {type(module).__name__}")
        w.plan.notes.append(f"torch.fx could not trace the model ({_first_line(e)}); its torch.jit.trace "
                            "graph was used, so Python control flow is fixed as the example input took it")
        return _TorchScript(w).run(traced)
    w = Walker(model.spec, unroll, f"the torch.fx graph of {type(module).__name__}")
    return _Fx(w, module).run(gm)


# ------------------------------------------------------------------ TorchScript


def _ts_class(m: Any) -> str:
    try:
        qual = m._c._type().qualified_name()
    except Exception:
        return getattr(m, "original_name", type(m).__name__)
    return re.sub(r"___torch_mangle_\d+\.", "", qual.replace("__torch__.", ""))


def _ts_leaf(m: Any) -> str | None:
    """The torch.nn class name of a ScriptModule, or None for user modules."""
    qual = _ts_class(m)
    return m.original_name if qual.startswith("torch.nn.modules.") else None


class _TorchScript:
    def __init__(self, walker: Walker):
        self.w = walker
        self.paths: dict[int, str] = {}
        self.original: dict[str, str] = {}  # serialized code line -> the user's file:line

    def learn_lines(self, nodes: Any) -> None:
        """Map serialized code lines to source lines: after save/load some nodes (function
        calls) keep only the serialized range, others on the same line know the original."""
        for n in _all_nodes(nodes):
            user, serialized = locate(n.sourceRange(), innermost_first=True)
            if user and serialized:
                self.original.setdefault(serialized, user)

    def run(self, module: Any) -> tuple[Plan, dict[str, np.ndarray]]:
        graph = module.graph
        ins = list(graph.inputs())
        if len(ins) != 2:
            self.w.fail(f"a forward with {len(ins) - 1} inputs (tflite-keras rebuilds single-input models)")
        self.paths[id(module)] = ""
        self.learn_lines(graph.nodes())
        env = {ins[0]: module, ins[1]: self.w.input}
        outs = self.block(graph.nodes(), list(graph.outputs()), env)
        return self.w.finish(outs[0] if len(outs) == 1 else tuple(outs))

    def block(self, nodes: Any, outputs: list[Any], env: dict[Any, Any]) -> list[Any]:
        for node in nodes:
            outs = list(node.outputs())
            if outs and not any(o.uses() for o in outs):
                continue  # dead code
            user, serialized = locate(node.sourceRange(), innermost_first=True)
            where = user or self.original.get(serialized) or serialized
            if where:
                self.w.where = where
            val = self.node(node, env)
            if len(outs) == 1:
                env[outs[0]] = val
            elif outs:
                vals = list(val)
                if len(vals) != len(outs):
                    self.w.fail(f"{node.kind()} with {len(outs)} outputs")
                env.update(zip(outs, vals, strict=True))
        return [env[v] for v in outputs]

    def node(self, node: Any, env: dict[Any, Any]) -> Any:
        kind = node.kind()
        args = [env.get(v) for v in node.inputs()]
        if kind == "prim::Constant":
            out = node.output()
            if out.type().kind() == "FunctionType":
                return ("function", str(out.type()))
            return _numpy(out.toIValue())
        if kind == "prim::GetAttr":
            owner, name = args[0], node.s("name")
            val = getattr(owner, name)
            if hasattr(val, "_c"):  # a submodule
                parent = self.paths.get(id(owner), "")
                self.paths[id(val)] = f"{parent}.{name}" if parent else name
                return val
            return _numpy(val)
        if kind == "prim::CallMethod":
            return self.call(args[0], node.s("name"), args[1:])
        if kind == "prim::CallFunction":
            fn = args[0]
            name = fn[1].rsplit(".", 1)[-1] if isinstance(fn, tuple) else "?"
            qual = str(fn[1]).replace("__torch__.", "").replace("torch.functional.", "torch.") \
                if isinstance(fn, tuple) else str(fn)
            return self.w.op(name, args[1:], {}, qual)
        if kind == "prim::If":
            cond = args[0]
            if not isinstance(cond, (bool, int)):
                self.w.fail("control flow that depends on the input (prim::If)")
            blk = list(node.blocks())[0 if cond else 1]
            return _single(self.block(blk.nodes(), list(blk.outputs()), env))
        if kind in ("prim::TupleConstruct", "prim::ListConstruct"):
            return tuple(args) if kind == "prim::TupleConstruct" else list(args)
        if kind in ("prim::TupleUnpack", "prim::ListUnpack"):
            return tuple(args[0])
        if kind in ("prim::TupleIndex", "aten::__getitem__"):
            return self.w.op("getitem", args, {}, kind)
        if kind in ("prim::unchecked_cast", "prim::NumToTensor", "aten::detach"):
            return args[0]
        if kind == "prim::Uninitialized":
            return None
        if kind in ("prim::device", "prim::dtype", "prim::layout"):
            return None
        if kind == "prim::RaiseException":
            self.w.fail("a raised exception")
        if kind.startswith("aten::"):
            name = kind[6:]
            if name.endswith("_") and not name.startswith("_"):
                name = name[:-1]  # in-place variant
            py = _PY_OPS.get(name)
            poison = next((a for a in args if isinstance(a, Poison)), None)
            if py is not None and poison is not None:
                return poison  # shape arithmetic on an unsupported value: fail where it is used
            if py is not None and not any(_symbolic(a) for a in args):
                return py(*args)
            return self.w.op(name, args, {}, kind)
        self.w.fail(kind)

    def call(self, mod: Any, method: str, args: list[Any]) -> Any:
        path = self.paths.get(id(mod), "")
        leaf = _ts_leaf(mod)
        if leaf in LEAVES:
            hp = self._hyper(mod, method)
            result = self.w.layer(leaf, mod, path, args, hp)
            if LEAVES[leaf] != "rnn":
                return result
            h = result[1][0] if leaf == "LSTM" else result[1]
            c = result[1][1] if leaf == "LSTM" else None
            return _pick(_rnn_outputs(mod, method, leaf.lower()), {"out": result[0], "h": h, "c": c})
        if leaf is not None and leaf not in CONTAINERS:
            self.w.fail(f"nn.{leaf}")
        graph = mod._c._get_method(method).graph
        self.learn_lines(graph.nodes())
        ins = list(graph.inputs())
        if len(ins) != len(args) + 1:
            self.w.fail(f"a call of {path or 'a module'}.{method} with {len(args)} arguments")
        env = {ins[0]: mod, **dict(zip(ins[1:], args, strict=True))}
        return _single(self.block(graph.nodes(), list(graph.outputs()), env))

    def _hyper(self, mod: Any, method: str) -> Callable[[str, str, int], Any]:
        """Read a hyperparameter: a scripted module keeps it as an attribute, a traced one
        only as a constant argument of the aten op in its graph."""
        cache: dict[str, Any] = {}

        def hp(attr: str, kind: str, index: int) -> Any:
            if hasattr(mod, attr):
                return getattr(mod, attr)
            if not kind:
                return None
            if "graph" not in cache:
                import torch

                g = mod._c._get_method(method).graph.copy()
                torch._C._jit_pass_inline(g)
                cache["graph"] = g
            nodes = list(_all_nodes(cache["graph"].nodes()))
            if kind == "pad":  # a traced Conv1d pads separately unless its padding is zeros
                pads = [n.kind() for n in nodes if "pad" in n.kind().split("::")[-1]]
                return pads[0] if pads else "zeros"
            kinds = _CONV_KINDS if kind == "conv" else (kind,)
            for n in nodes:
                if n.kind() in kinds and n.inputsSize() > index:
                    return _const(n.inputsAt(index), mod)
            return None

        return hp


def _rnn_outputs(mod: Any, method: str, cell: str) -> Any:
    """Which of (output, h_n, c_n) a traced RNN call returns, as a nested structure of
    "out"/"h"/"c"; a scripted nn.LSTM/GRU returns the standard (out, (h, c)) / (out, h)."""
    names = ("out", "h", "c")
    graph = mod._c._get_method(method).graph

    def back(v: Any) -> Any:
        n = v.node()
        if n.kind() in ("aten::lstm", "aten::gru"):
            return names[v.offset()]
        if n.kind() == "prim::TupleConstruct":
            parts = [back(i) for i in n.inputs()]
            return None if any(p is None for p in parts) else tuple(parts)
        return None

    outs = list(graph.outputs())
    found = back(outs[0]) if len(outs) == 1 else None
    if found is not None:
        return found
    return ("out", ("h", "c")) if cell == "lstm" else ("out", "h")


def _pick(struct: Any, values: dict[str, Any]) -> Any:
    return tuple(_pick(s, values) for s in struct) if isinstance(struct, tuple) else values[struct]


def _all_nodes(nodes: Any) -> Any:
    for n in nodes:
        yield n
        for b in n.blocks():
            yield from _all_nodes(b.nodes())


def _const(v: Any, mod: Any) -> Any:
    n = v.node()
    if n.kind() == "prim::Constant":
        return v.toIValue()
    if n.kind() == "prim::ListConstruct":
        return [_const(i, mod) for i in n.inputs()]
    if n.kind() == "prim::GetAttr" and hasattr(mod, n.s("name")):
        return getattr(mod, n.s("name"))
    return None


def _numpy(v: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return v


def _symbolic(v: Any) -> bool:
    return isinstance(v, (Sym, State, Zero, Poison))


def _first_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def _single(vals: list[Any]) -> Any:
    return vals[0] if len(vals) == 1 else tuple(vals)


# ------------------------------------------------------------------ torch.fx


def _fx_graph(module: Any) -> Any:
    import torch.fx as fx

    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    return tracer.trace(module)


class _Fx:
    def __init__(self, walker: Walker, root: Any):
        self.w = walker
        self.root = root

    def run(self, graph: Any) -> tuple[Plan, dict[str, np.ndarray]]:
        import torch.fx as fx

        env: dict[Any, Any] = {}
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            self.w.fail(f"a forward with {len(placeholders)} inputs "
                        "(tflite-keras rebuilds single-input models)")
        for node in graph.nodes:
            if node.op != "output" and not node.users:
                continue
            where = locate(node.stack_trace or "", innermost_first=False)[0]
            if where:
                self.w.where = where
            args = fx.node.map_aggregate(node.args, lambda a: env[a] if isinstance(a, fx.Node) else a)
            kwargs = fx.node.map_aggregate(node.kwargs, lambda a: env[a] if isinstance(a, fx.Node) else a)
            args = [_slices(a, env) for a in args]
            if node.op == "placeholder":
                env[node] = self.w.input
            elif node.op == "get_attr":
                env[node] = _numpy(_fetch(self.root, node.target))
            elif node.op == "call_module":
                env[node] = self.module(node.target, args, kwargs)
            elif node.op == "call_function":
                name, display = _fx_name(node.target)
                env[node] = self.w.op(name, list(args), dict(kwargs), display)
            elif node.op == "call_method":
                env[node] = self.w.op(node.target, list(args), dict(kwargs), f"Tensor.{node.target}")
            elif node.op == "output":
                return self.w.finish(args[0])
        self.w.fail("a graph without an output")

    def module(self, target: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        m = _fetch(self.root, target)
        kind = type(m).__name__
        if not type(m).__module__.startswith("torch.nn") or kind not in LEAVES:
            self.w.fail(f"nn.{kind}" if type(m).__module__.startswith("torch.nn") else f"the module {kind}")
        args = list(args) + [v for k, v in kwargs.items() if k in ("hx", "h_0")]
        return self.w.layer(kind, m, target, args, lambda attr, kind_, index: getattr(m, attr, None))


def _fetch(root: Any, target: str) -> Any:
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _slices(a: Any, env: dict[Any, Any]) -> Any:
    import torch.fx as fx

    def one(v: Any) -> Any:
        return env[v] if isinstance(v, fx.Node) else v

    if isinstance(a, slice):
        return slice(one(a.start), one(a.stop), one(a.step))
    if isinstance(a, tuple):
        return tuple(_slices(x, env) for x in a)
    return a


def _fx_name(target: Any) -> tuple[str, str]:
    if target is builtins.getattr:
        return "getattr", "getattr"
    name = getattr(target, "__name__", str(target))
    mod = getattr(target, "__module__", None) or ""
    if mod in ("_operator", "operator"):
        return name, f"operator.{name}"
    if mod.startswith("torch") and not mod.startswith("torch.nn"):
        return name, f"torch.{name}"
    return name, f"{mod}.{name}"
