"""Torch side of the fused TFLite route: recurrent ops become named StableHLO composites.

``torch.export`` keeps ``aten.lstm.input`` / ``aten.gru.input`` as single nodes. :func:`mark`
rewrites each into one composite per layer and direction (``edgernn.lstm`` / ``edgernn.gru``)
around a cheap placeholder of the right shape, so litert-torch converts the rest of the graph
as usual (every op it knows) and never unrolls the recurrence. The composite survives in the
.tflite file as a ``STABLEHLO_COMPOSITE`` op; ``tflite_fused.legalize`` then replaces it with
the fused kernel, reading the weights recorded here by the composite's ``id``.

Layout: every layer sees ``[B, T, F]`` (batch-first) or ``[T, B, F]``; a reverse direction is
``flip -> composite -> flip``. Each composite takes ``(x, h0[, c0])`` and gives
``(y, h_n[, c_n])`` for its layer and direction: a zero initial state is a zeros constant (the
legalizer sees it and may use the fused op, whose state is a variable), a given one (a
learned state, a step model's state input) is a tensor, and so are final states the graph
reads; the legalizer makes those layers loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgernn.errors import Unsupported

LSTM = "edgernn.lstm"
GRU = "edgernn.gru"
GIVEN = "s"  # composite name suffix: the layer starts from a given state


@dataclass
class Layer:
    """One direction of one recurrent layer, as the legalizer needs it."""

    id: int
    cell: str  # "lstm" | "gru"
    hidden: int
    out: int  # output width (proj_size for a projection LSTM, else hidden)
    reverse: bool
    time_major: bool
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # torch layout, see _layer_weights
    where: str = ""  # the module path that owns it, for notes

    def describe(self) -> str:
        kind = self.cell.upper() + (f" {self.hidden}->proj {self.out}" if self.out != self.hidden
                                    else f" {self.hidden}")
        return f"{self.where or 'rnn'} {kind}{' reverse' if self.reverse else ''}"


@dataclass
class Marked:
    """The rewritten module and the layers its composites stand for, by composite id."""

    module: Any
    layers: dict[int, Layer]
    kept: list[str]  # recurrent ops left to litert-torch (unrolled), with the reason


def mark_modules(module: Any) -> Marked:
    """A copy of an eager ``module`` whose ``nn.LSTM`` / ``nn.GRU`` submodules run as composites
    (called with a given initial state or a PackedSequence, a layer runs as itself: unrolled).
    Swapping modules before ``torch.export`` means the export never traces the recurrence."""
    import copy

    import torch

    root = copy.deepcopy(module)
    layers: dict[int, Layer] = {}
    kept: list[str] = []
    swaps = [(name, m) for name, m in root.named_modules()
             if type(m) in (torch.nn.LSTM, torch.nn.GRU)]
    if isinstance(root, (torch.nn.LSTM, torch.nn.GRU)):
        raise Unsupported("the model is a bare nn.LSTM/nn.GRU; wrap it in a module")
    for name, m in swaps:
        parent_name, _, attr = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, attr, _MarkedRNN(m, name, layers, kept))
    return Marked(root, layers, kept)


def _marked_rnn_class() -> Any:
    import torch

    class MarkedRNN(torch.nn.Module):
        """Stands for one nn.LSTM / nn.GRU: composites when the state starts at zero."""

        def __init__(self, rnn: Any, where: str, layers: dict[int, Layer], kept: list[str]):
            super().__init__()
            self.rnn = rnn
            self.where = where or "rnn"
            self.layers = layers
            self.kept = kept
            self.cell = "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru"
            flat = [p.detach().float().numpy().copy() for p in rnn._flat_weights]
            self.ids = _register(self.cell, flat, rnn.bias, rnn.num_layers, rnn.bidirectional,
                                 rnn.batch_first, self.where, layers)

        def forward(self, x: Any, hx: Any = None) -> Any:
            rnn = self.rnn
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                note = (f"{self.where}: {self.cell.upper()} called with a packed or unbatched "
                        "input (unrolled by litert-torch)")
                if note not in self.kept:
                    self.kept.append(note)
                return rnn(x, hx)
            state = () if hx is None else ((hx,) if self.cell == "gru" else tuple(hx))
            outs = tuple(self.layers[i].out for i in self.ids)
            res = _run_marked(x, *state, cell=self.cell, ids=self.ids, outs=outs,
                              hiddens=tuple(self.layers[i].hidden for i in self.ids),
                              bidirectional=rnn.bidirectional, batch_first=rnn.batch_first)
            return res[0], (res[1] if self.cell == "gru" else (res[1], res[2]))

    return MarkedRNN


def _MarkedRNN(rnn: Any, where: str, layers: dict[int, Layer], kept: list[str]) -> Any:  # noqa: N802
    return _marked_rnn_class()(rnn, where, layers, kept)


def _register(cell: str, flat: list[np.ndarray], has_biases: bool, num_layers: int, bidi: bool,
              batch_first: bool, where: str, layers: dict[int, Layer]) -> tuple[int, ...]:
    """Add one Layer per layer and direction; their composite ids in torch's order."""
    ids = []
    for k, w in enumerate(_layer_weights(cell, flat, has_biases, num_layers, bidi)):
        lid = len(layers)
        hidden = int(w["w_hr"].shape[1]) if "w_hr" in w else int(w["w_hh"].shape[1])
        out = int(w["w_hr"].shape[0]) if "w_hr" in w else hidden
        layers[lid] = Layer(lid, cell, hidden, out, reverse=bidi and k % 2 == 1,
                            time_major=not batch_first, weights=w,
                            where=f"{where}.l{k // (2 if bidi else 1)}")
        ids.append(lid)
    return tuple(ids)


def mark_graph(gm: Any) -> Marked:
    """Rewrite the recurrent nodes of ``gm`` (``ExportedProgram.module()``, e.g. of a
    TorchScript archive, whose shapes are already fixed) in place."""
    import torch

    layers: dict[int, Layer] = {}
    kept: list[str] = []
    targets = {torch.ops.aten.lstm.input: "lstm", torch.ops.aten.gru.input: "gru"}
    for node in list(gm.graph.nodes):
        cell = targets.get(node.target) if node.op == "call_function" else None
        if cell is None:
            continue
        if cell == "lstm":
            x, hx, params, has_biases, num_layers, _drop, _train, bidi, batch_first = node.args
            state = list(hx)
        else:
            x, h0, params, has_biases, num_layers, _drop, _train, bidi, batch_first = node.args
            state = [h0]
        where = _owner(node)
        if all(_is_zeros(gm, s) for s in state):
            state = []  # a zero state (a traced archive bakes it as a constant)
        tensors = [_value(gm, p) for p in params]
        if any(t is None for t in tensors):
            kept.append(f"{where}: {cell.upper()} weights are computed in the graph (unrolled)")
            continue
        ids = _register(cell, [t.detach().float().numpy() for t in tensors], bool(has_biases),
                        int(num_layers), bool(bidi), bool(batch_first), where, layers)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(_run_marked, (x, *state), {
                "cell": cell, "ids": tuple(ids), "outs": tuple(layers[i].out for i in ids),
                "hiddens": tuple(layers[i].hidden for i in ids),
                "bidirectional": bool(bidi), "batch_first": bool(batch_first)})
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return Marked(gm, layers, kept)


def _run_marked(x: Any, *state: Any, cell: str, ids: tuple[int, ...], outs: tuple[int, ...],
                hiddens: tuple[int, ...], bidirectional: bool,
                batch_first: bool) -> tuple[Any, ...]:
    """What replaces one ``aten.lstm`` / ``aten.gru`` node (``state``: torch's h0[, c0]
    [layers*dirs, B, H], or nothing for zeros): composites and the flips around them."""
    import torch

    t_axis = 1 if batch_first else 0
    dirs = 2 if bidirectional else 1
    n = len(ids)
    h0s = [state[0][k] for k in range(n)] if state else [None] * n
    c0s = [state[1][k] for k in range(n)] if state and cell == "lstm" else [None] * n
    h_n: list[Any] = []
    c_n: list[Any] = []
    h = x
    for layer in range(n // dirs):
        ys = []
        for d in range(dirs):
            k = layer * dirs + d
            src = torch.flip(h, [t_axis]) if d == 1 else h
            res = _composite(src, cell, ids[k], outs[k], hiddens[k], h0s[k], c0s[k], batch_first)
            y = torch.flip(res[0], [t_axis]) if d == 1 else res[0]
            ys.append(y)
            # a final state read while y is not crashes litert-torch's converter (a composite
            # whose first output is dead): 0 * y's last step keeps y alive (a few tiny ops)
            anchor = res[0].select(t_axis, -1)[..., :1] * 0.0
            h_n.append(res[1] + anchor)
            if cell == "lstm":
                c_n.append(res[2].reshape(res[2].shape[2:]) + anchor)
        h = ys[0] if dirs == 1 else torch.cat(ys, dim=-1)
    if cell == "gru":
        return h, torch.stack(h_n, dim=0)
    return h, torch.stack(h_n, dim=0), torch.stack(c_n, dim=0)


def _composite(x: Any, cell: str, lid: int, out: int, hidden: int, h0: Any, c0: Any,
               batch_first: bool) -> tuple[Any, ...]:
    """One layer and direction as a composite around a placeholder of the right shapes (the
    legalizer replaces it): ``(x[, h0, c0]) -> (y, h_n, c_n)``.

    litert-torch drops a composite's constant inputs and its unused outputs, so the legalizer
    tells the ports apart by rank (x and y rank 3, h rank 2, c rank 4 as [1, 1, B, H]) and
    the name says whether a state was given (``.s``). A given state that is a constant (a
    learned one) is tied to ``x`` by adding ``0 * x[0]`` (not folded: 0 * NaN is NaN), so it
    stays an input."""
    import torch
    from litert_torch.hlfb import StableHLOCompositeBuilder

    given = h0 is not None
    # the id rides in the name: composite attributes do not survive torch.export.save
    b = StableHLOCompositeBuilder(
        name=f"{LSTM if cell == 'lstm' else GRU}.{lid}" + (f".{GIVEN}" if given else ""))
    t_axis = 1 if batch_first else 0
    if given:
        zero = x.reshape(-1)[:1] * 0.0
        ports = [x, h0 + zero]
        if cell == "lstm":
            ports.append((c0 + zero).reshape(1, 1, *c0.shape))
        ports = list(b.mark_inputs(*ports))
        x = ports[0]
        # the placeholder reads every input: an input it ignores is dropped from the op
        tie = ports[1].unsqueeze(t_axis) + sum(p.sum() for p in ports[2:])
    else:
        x = b.mark_inputs(x)
        tie = 0.0
    first = x[:, 0, :1] if batch_first else x[0, :, :1]  # [B, 1]
    y = x[..., :1] * torch.ones(out, dtype=x.dtype) + tie
    if cell == "gru":
        return b.mark_outputs(y, first * torch.ones(out, dtype=x.dtype))
    c = first * torch.ones(hidden, dtype=x.dtype)
    return b.mark_outputs(y, first * torch.ones(out, dtype=x.dtype), c.reshape(1, 1, *c.shape))


def _layer_weights(cell: str, flat: list[np.ndarray], has_biases: bool, num_layers: int,
                   bidi: bool) -> list[dict[str, np.ndarray]]:
    """Split torch's flat parameter list into one dict per layer and direction:
    ``w_ih [G*H, F]``, ``w_hh [G*H, H or P]``, ``b_ih``, ``b_hh`` (zeros when absent),
    ``w_hr [P, H]`` for a projection LSTM. Torch's order per direction is w_ih, w_hh,
    (b_ih, b_hh), (w_hr)."""
    dirs = 2 if bidi else 1
    per = len(flat) // (num_layers * dirs)
    out = []
    for k in range(num_layers * dirs):
        chunk = flat[k * per:(k + 1) * per]
        w = {"w_ih": chunk[0], "w_hh": chunk[1]}
        rest = chunk[2:]
        if has_biases:
            w["b_ih"], w["b_hh"] = rest[0], rest[1]
            rest = rest[2:]
        else:
            w["b_ih"] = np.zeros(chunk[0].shape[0], np.float32)
            w["b_hh"] = np.zeros(chunk[0].shape[0], np.float32)
        if rest:
            w["w_hr"] = rest[0]
        out.append(w)
    return out


def _is_zeros(gm: Any, node: Any) -> bool:
    """A zeros op, or a constant that is all zeros (a traced archive bakes its zero state)."""
    import torch

    if getattr(node, "op", None) == "call_function":
        return node.target in (torch.ops.aten.zeros.default, torch.ops.aten.zeros_like.default)
    value = _value(gm, node)
    return isinstance(value, torch.Tensor) and not bool(torch.any(value != 0))


def _value(gm: Any, node: Any) -> Any:
    """The tensor behind a get_attr node (a parameter or constant), else None."""
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _owner(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        return str(path).replace("L['self'].", "") or "rnn"
    return node.name
