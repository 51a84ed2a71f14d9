"""A TorchScript module as a ``torch.export.ExportedProgram``, specialized to example inputs.

torch's ``TS2EPConverter`` translates every ``prim::If`` of the scripted graph into
``torch.cond``. Scripted ``nn.LSTM``/``nn.GRU`` code is full of checks on ``hx is None``,
``input.dim()`` and hidden sizes; when state is passed in, one of those branches yields a
tuple defined outside the branch and the converter fails ("TS2EPConverter failed for node
prim::If"). This module removes such branches before the converter sees the graph:

1. a private copy (save/load through memory) is frozen: calls inlined, weights and
   attributes become constants, ``self`` disappears;
2. the graph inputs take the example tensors' types, and the graph is run on the example
   (and on a second input with the same shapes and other values) to record the type (dtype,
   sizes, strides) of every top-level tensor value; types that agree between the runs are
   written into the graph, except for values computed from value-dependent ops (nonzero,
   item, int(tensor), ...), whose shapes the example cannot vouch for;
3. peephole + constant propagation then fold ``dim()``, ``size()``, ``dtype``, ``is None``
   and the branches they decide, and loops with a now-constant trip count are unrolled;
   steps 2-3 repeat until nothing changes;
4. the graph becomes a ScriptFunction for ``TS2EPConverter`` and the result is exported
   again with static shapes, then checked against the ScriptModule on both inputs.

The program is specialized to the example's shapes and dtypes (what a fixed-shape TFLite file
needs anyway; other shapes fail the program's guards) and to eval mode. Weights are constant
tensors of the program (empty ``state_dict``). Branches on tensor *values* are not folded;
if any survive, the converter's ``torch.cond`` translation is used as is. A graph the steps
cannot handle raises a one-line :class:`~edgernn.errors.ExportError`.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgernn.convert.formats.tflite_common import one_line
from edgernn.errors import ExportError

if TYPE_CHECKING:
    import torch

MAX_ROUNDS = 12  # record-and-fold rounds; each folds at least one branch or stops
PARITY_TOL = 1e-5
_CONTROL = ("prim::If", "prim::Loop")
# ops whose output shape (or scalar result) depends on tensor values: nothing computed from
# them gets a recorded type, whatever the two probe runs show
_VALUE_DEPENDENT = {
    "aten::nonzero", "aten::nonzero_numpy", "aten::masked_select", "aten::unique",
    "aten::_unique", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive",
    "aten::bincount", "aten::histc", "aten::repeat_interleave", "aten::item", "aten::Int",
    "aten::Float", "aten::Bool", "aten::ScalarImplicit", "aten::tolist", "prim::tolist",
    "aten::_local_scalar_dense",
}


def exported_program(module: torch.jit.ScriptModule,
                     example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``module`` (a ScriptModule, left untouched; exported in eval mode) as an ExportedProgram
    for inputs shaped like ``example`` (one tensor per ``forward`` argument), static shapes.
    Raises ExportError with one line."""
    import torch

    if not isinstance(module, torch.jit.ScriptModule):
        raise ExportError(f"expected a torch.jit.ScriptModule, got {type(module).__name__}")
    example = tuple(example)
    if not all(isinstance(t, torch.Tensor) for t in example):
        raise ExportError("TorchScript export needs one example tensor per forward argument")
    other = _other_input(example)
    copy = _private_copy(module)
    with torch.no_grad():
        try:
            ref_out = copy(*example)
            ref = (_leaves(ref_out), _leaves(copy(*other)))
        except Exception as e:
            raise ExportError(f"the TorchScript model fails on the example input: {one_line(e)}") from None
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        graph = _frozen_graph(copy, len(example))
        for value, t in zip(graph.inputs(), example, strict=True):
            value.setType(torch._C.TensorType.create_from_tensor(t))
        _specialize(graph, example, other)
        ep = _convert(graph, example, torch.utils._pytree.tree_structure(ref_out))
    _check_parity(ep, (example, other), ref)
    return ep


# --------------------------------------------------------------------------- steps


def _private_copy(module: Any) -> Any:
    """An eval-mode copy through memory: freezing and the converter mutate graphs in place."""
    import torch

    buf = io.BytesIO()
    try:
        torch.jit.save(module, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu").eval()
    except Exception as e:
        raise ExportError(f"cannot copy the TorchScript module: {one_line(e)}") from None


def _frozen_graph(copy: Any, n_inputs: int) -> Any:
    """Inlined, frozen ``forward`` of ``copy`` without the ``self`` input."""
    import torch

    try:
        frozen = torch._C._freeze_module(copy._c)
        graph = frozen._get_method("forward").graph.copy()
    except Exception as e:
        raise ExportError(f"cannot freeze the TorchScript module: {one_line(e)}") from None
    self_value = next(iter(graph.inputs()))
    if self_value.uses():
        kinds = sorted({u.user.kind() for u in self_value.uses()})
        if "prim::SetAttr" in kinds:
            raise ExportError("forward assigns a module attribute (prim::SetAttr); pass the state "
                              "in as an input and return the new state instead")
        raise ExportError(f"the frozen TorchScript module still reads itself ({', '.join(kinds)})")
    graph.eraseInput(0)
    n_graph = len(list(graph.inputs()))
    if n_graph != n_inputs:
        raise ExportError(f"forward takes {n_graph} inputs but the example has {n_inputs} tensors")
    return graph


def _specialize(graph: Any, example: tuple, other: tuple) -> None:
    """Record-and-fold until no tensor type or branch changes (see the module docstring)."""
    import torch

    for _ in range(MAX_ROUNDS):
        before = str(graph)
        for value, (a, b) in _observe(graph, example, other):
            ta = torch._C.TensorType.create_from_tensor(a)
            if ta == torch._C.TensorType.create_from_tensor(b):
                value.setType(ta)  # same for both inputs: treat as determined by the shapes
        torch._C._jit_pass_peephole(graph, False)  # False: shape peepholes on
        torch._C._jit_pass_constant_propagation(graph)
        torch._C._jit_pass_constant_loop_unrolling(graph)  # loops over range(x.size(1))
        torch._C._jit_pass_dce(graph)
        if str(graph) == before:
            return


def _observe(graph: Any, example: tuple, other: tuple) -> list[tuple[Any, tuple[Any, Any]]]:
    """Run a copy of ``graph`` that also returns every top-level tensor value not yet fully
    typed (outputs of unresolved If/Loop excluded); returns (value, (on example, on other))."""
    import torch

    probe = graph.copy()
    tainted = _value_dependent(graph)
    wanted = []
    for node, twin in zip(graph.nodes(), probe.nodes(), strict=True):
        if node.kind() in _CONTROL:
            continue
        for out, twin_out in zip(node.outputs(), twin.outputs(), strict=True):
            typ = out.type()
            if (isinstance(typ, torch._C.TensorType) and not _complete(typ)
                    and out.unique() not in tainted):
                wanted.append(out)
                probe.registerOutput(twin_out)
    if not wanted:
        return []
    for i in reversed(range(len(list(probe.outputs())) - len(wanted))):
        probe.eraseOutput(i)  # keep only the recorded values
    if len(wanted) > 1:
        probe.makeMultiOutputIntoTuple()
    fn = torch._C._create_function_from_graph("edgernn_probe", probe)
    runs = []
    try:
        with torch.no_grad(), torch.jit.optimized_execution(False):
            for args in (example, other):
                out = fn(*args)
                runs.append(out if len(wanted) > 1 else (out,))
    except Exception as e:
        raise ExportError(f"running the frozen TorchScript graph failed: {one_line(e)}") from None
    return [(v, (a, b)) for v, a, b in zip(wanted, runs[0], runs[1], strict=True)
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)]


def _value_dependent(graph: Any) -> set[int]:
    """Ids of values computed (directly or through any chain of ops, branches, loops) from an
    op in ``_VALUE_DEPENDENT``."""
    bad: set[int] = set()

    def visit(block: Any) -> bool:
        found = False
        for node in block.nodes():
            hit = (node.kind() in _VALUE_DEPENDENT
                   or (node.kind() == "aten::where" and node.inputsSize() == 1)
                   or any(i.unique() in bad for i in node.inputs()))
            for sub in node.blocks():
                hit = visit(sub) or hit
                hit = hit or any(o.unique() in bad for o in sub.outputs())
            if hit:
                bad.update(o.unique() for o in node.outputs())
                found = True
        return found

    visit(graph.block())
    return bad


def _convert(graph: Any, example: tuple, out_spec: Any) -> Any:
    """TS2EPConverter on the specialized graph, re-exported with static shapes and with the
    module's output structure (the converter returns a list where the module returns a tuple)."""
    import torch
    import torch.utils._pytree as pytree
    from torch._export.converter import TS2EPConverter

    fn = torch._C._create_function_from_graph("forward", graph)
    try:
        converted = TS2EPConverter(fn, example).convert().module()
    except Exception as e:
        raise ExportError(f"TS2EPConverter failed{_left_control(graph)}: {_chain(e)}") from None

    class Restructured(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.program = converted

        def forward(self, *args: Any) -> Any:
            leaves = pytree.tree_leaves(self.program(*args))
            if len(leaves) != out_spec.num_leaves:
                raise ExportError(f"the converted TorchScript program has {len(leaves)} outputs, "
                                  f"the module {out_spec.num_leaves}")
            return pytree.tree_unflatten(leaves, out_spec)

    try:  # static shapes: the graph has the example's sizes baked in
        return torch.export.export(Restructured(), example, strict=False)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"re-exporting the converted TorchScript program failed: {one_line(e)}") from None


def _check_parity(ep: Any, inputs: tuple, refs: tuple) -> None:
    import torch

    with torch.no_grad():
        for args, ref in zip(inputs, refs, strict=True):
            got = _leaves(ep.module()(*args))
            if len(got) != len(ref):
                raise ExportError(f"converted TorchScript program has {len(got)} outputs, "
                                  f"the module {len(ref)}")
            for i, (g, r) in enumerate(zip(got, ref, strict=True)):
                if not isinstance(r, torch.Tensor):
                    continue
                if g.shape != r.shape:
                    raise ExportError(f"converted TorchScript program output {i} has shape "
                                      f"{list(g.shape)}, the module {list(r.shape)}")
                diff = _max_diff(g, r)
                if not diff <= PARITY_TOL:
                    raise ExportError(f"converted TorchScript program differs from the module "
                                      f"(output {i}, max diff {diff:.3g})")


# --------------------------------------------------------------------------- helpers


def _other_input(example: tuple) -> tuple:
    """Same shapes and dtypes, other values: floats redrawn around the example's scale,
    everything else (token ids, masks) permuted so that values stay valid."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    out = []
    for t in example:
        if t.numel() == 0:
            out.append(t.clone())
        elif t.is_floating_point():
            scale = float(t.double().abs().mean()) or 1.0
            out.append(torch.randn(t.shape, generator=gen).mul(scale).to(t.dtype))
        else:
            flat = t.reshape(-1)
            out.append(flat[torch.randperm(flat.numel(), generator=gen)].reshape(t.shape).clone())
    return tuple(out)


def _max_diff(got: Any, ref: Any) -> float:
    """Largest absolute difference; equal values (also equal infinities) and NaN in both count 0."""
    import torch

    if ref.numel() == 0:
        return 0.0
    g, r = got.double(), ref.double()
    same = (g == r) | (torch.isnan(g) & torch.isnan(r))
    return float(torch.where(same, torch.zeros_like(g), (g - r).abs()).max())


def _leaves(out: Any) -> list:
    import torch.utils._pytree as pytree

    return pytree.tree_leaves(out)


def _complete(typ: Any) -> bool:
    return typ.sizes() is not None and typ.strides() is not None and typ.dtype() is not None


def _left_control(graph: Any) -> str:
    """`` (unresolved prim::If at m.py:12)``: the first branch or loop the folding left."""
    for node in graph.nodes():
        if node.kind() in _CONTROL:
            where = ""
            with contextlib.suppress(Exception):
                m = re.search(r'File "([^"]+)", line (\d+)', node.sourceRange())
                where = f" at {Path(m.group(1)).name}:{m.group(2)}" if m else ""
            return f" (unresolved {node.kind()}{where})"
    return ""


def _chain(e: BaseException) -> str:
    """The first line of each chained cause: the converter wraps the real error."""
    parts = []
    seen: BaseException | None = e
    while seen is not None and len(parts) < 3:
        parts.append(one_line(seen))
        seen = seen.__cause__
    return " <- ".join(parts)[:400]
