"""litert-torch .tflite quantization choices beyond int8-dynamic: the ``--tune`` settings
(weight-only int8, per-tensor weight scales) and accuracy-aware int8 (``--max-drop``), on a
user's model built here with plain torch and converted once (a litert-torch conversion is the
slow part). The quantizer classes are called directly.

Expected values are independent of edgernn's own file reading: tensors, scales and ops are
counted with LiteRT's interpreter (``_get_ops_details`` / ``get_tensor_details``, no delegate),
weight-row counts come from the torch model's parameter shapes, and accuracy drops are
recomputed by running the files with ``ai_edge_litert`` directly.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

import edgernn.convert.formats.tflite_litert as tfl  # noqa: E402
from edgernn.convert.quantize import quantizers_for  # noqa: E402
from edgernn.convert.quantize.accuracy_budget import AccuracyBudget  # noqa: E402
from edgernn.convert.quantize.base import NotApplicable  # noqa: E402
from edgernn.convert.quantize.tflite_litert import LitertDynamicInt8  # noqa: E402
from edgernn.convert.quantize.tflite_mixed import (  # noqa: E402
    LitertDynamicPerTensor,
    LitertMixedInt8,
    LitertWeightOnlyInt8,
    candidates,
)
from edgernn.errors import EdgeRNNError  # noqa: E402
from edgernn.model.loading import LoadedModel  # noqa: E402
from edgernn.model.spec import Axis, InputSpec  # noqa: E402

SEQ, HIDDEN, N = 8, 16, 100
BUDGET = 0.05


class QuietFront(nn.Module):
    """A quiet signal channel beside a loud one, amplified by a Linear front end, then a GRU:
    dynamic int8 quantizes the front's input once per row (the loud channel sets the scale), so
    the quiet channel rounds to zero; the GRU's and head's int8 cost next to nothing."""

    def __init__(self):
        super().__init__()
        self.front = nn.Linear(2, 8)
        self.rnn = nn.GRU(8, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 2)
        with torch.no_grad():
            self.front.weight[:, 0] = torch.randn(8) * 100.0  # the quiet channel, amplified
            self.front.weight[:, 1] = 0.001  # the loud channel, nearly ignored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(torch.tanh(self.front(x)))[0][:, -1])


def _samples(n: int, seq: int = SEQ, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, seq, 2)).astype(np.float32)
    x[..., 0] *= 0.01
    x[..., 1] *= 100.0
    return x


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The model converted once, and its int8-dynamic file."""
    torch.manual_seed(0)
    module = QuietFront().eval()
    spec = InputSpec([Axis(1, "batch"), Axis(SEQ, "seq"), Axis(2)], "float32", "classify",
                     num_classes=2)
    lm = LoadedModel(module, spec, "checkpoint", Path("quiet.pt"), "0" * 64)
    out = tmp_path_factory.mktemp("tflite-choices")
    fp32 = tfl.TfliteLitertFormat().export(lm, out / "fp32.tflite")
    dyn = LitertDynamicInt8().quantize(lm, fp32, out / "int8-dynamic.tflite")
    return {"lm": lm, "fp32": fp32, "dyn": dyn, "out": out, "x": _samples(N)}


# --------------------------------------------------------------------------- independent reads


def _interp(path: str | Path, delegates: bool = False) -> Interpreter:
    """LiteRT's interpreter, 1 thread; without delegates the op list is the file's own."""
    kind = (OpResolverType.AUTO if delegates
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it


def _graph(path: str | Path) -> tuple[list[dict], dict[int, dict]]:
    """The file's ops (in order) and tensors by index, as LiteRT's interpreter reports them."""
    it = _interp(path)
    return it._get_ops_details(), {t["index"]: t for t in it.get_tensor_details()}


def _scales(t: dict) -> int:
    return len(t["quantization_parameters"]["scales"])


def _fc_weights(path: str | Path) -> list[tuple[dict, dict | None]]:
    """Each FULLY_CONNECTED's weight tensor, with the DEQUANTIZE feeding it (None: direct)."""
    ops, tensors = _graph(path)
    made_by = {int(o): op for op in ops for o in op["outputs"]}
    out = []
    for op in ops:
        if op["op_name"] == "FULLY_CONNECTED":
            w = int(op["inputs"][1])
            producer = made_by.get(w)
            out.append((tensors[w], producer if producer and producer["op_name"] == "DEQUANTIZE"
                        else None))
    return out


def _predictions(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Predicted classes, one sample per call, as deployed (default delegates)."""
    it = _interp(path, delegates=True)
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for s in x:
        it.set_tensor(i, np.ascontiguousarray(s[None]))
        it.invoke()
        out.append(it.get_tensor(o).copy())
    return np.concatenate(out).argmax(1)


def _changed(a: str | Path, b: str | Path, x: np.ndarray) -> float:
    return float(np.mean(_predictions(a, x) != _predictions(b, x)))


# --------------------------------------------------------------------------- --tune settings


def test_settings_are_opt_in_alternatives_of_int8_dynamic():
    plain = [q.label for q in quantizers_for("tflite-litert", ["dynamic"])]
    tuned = [q.label for q in quantizers_for("tflite-litert", ["dynamic"], {"tune"})]
    assert plain == ["int8-dynamic"]
    assert set(tuned) == {"int8-dynamic", "int8-weight-only", "int8-dynamic-pertensor"}
    for q in (LitertWeightOnlyInt8(), LitertDynamicPerTensor()):
        assert (q.opt_in, q.twin, q.kind, q.mode) == ("tune", "int8-dynamic", "setting", "dynamic")
    aware = quantizers_for("tflite-litert", ["dynamic"], {"max-drop"})
    assert [q.label for q in aware if getattr(q, "accuracy_aware", False)] == ["int8-mixed"]


def test_weight_only_stores_int8_and_computes_float(made):
    art = LitertWeightOnlyInt8().quantize(made["lm"], made["fp32"],
                                          made["out"] / "int8-weight-only.tflite")
    fcs = _fc_weights(art.path)
    # 1 front + 1 input projection (all steps) + 7 recurrent (step 0 has h = 0) + 1 head
    assert len(fcs) == 1 + 1 + (SEQ - 1) + 1
    for w, deq in fcs:  # every FC gets a float32 weight made by a DEQUANTIZE of int8 data
        assert w["dtype"] == np.float32 and deq is not None, w["name"]
    ops, tensors = _graph(art.path)
    sources = {int(op["inputs"][0]) for op in ops if op["op_name"] == "DEQUANTIZE"}
    assert all(tensors[s]["dtype"] == np.int8 and _scales(tensors[s]) >= 1 for s in sources)
    # one int8 copy per torch weight matrix: front, GRU input, GRU recurrent, head
    assert len(sources) == 4
    # float activations: the quiet channel survives, unlike int8-dynamic's per-call rounding
    # (weight rounding alone flips a few near-tied predictions: the loud channel's 0.001
    # weights round to 0 beside the front's 100s)
    x = made["x"]
    assert _changed(made["fp32"].path, art.path, x) <= 0.1
    assert _changed(made["fp32"].path, made["dyn"].path, x) > 0.3
    text = " | ".join(art.notes)
    assert "setting: weight-only int8" in text
    assert (f"{len(sources)} of {len(sources)} int8 weight tensor(s) reach their ops through a "
            f"DEQUANTIZE op ({len(fcs)} op(s) use them)") in text, text
    assert "int8-weight ops (activations quantized per call): none" in text


def test_per_tensor_has_one_scale_per_weight(made):
    art = LitertDynamicPerTensor().quantize(made["lm"], made["fp32"],
                                            made["out"] / "int8-dynamic-pertensor.tflite")
    m = made["lm"].module
    rows = [m.front.weight.shape[0], m.rnn.weight_ih_l0.shape[0], m.rnn.weight_hh_l0.shape[0],
            m.head.weight.shape[0]]
    for path, want in ((art.path, [1, 1, 1, 1]), (made["dyn"].path, rows)):
        fcs = _fc_weights(path)
        assert all(deq is None and w["dtype"] == np.int8 for w, deq in fcs)  # int8 compute
        per_tensor = {w["index"]: _scales(w) for w, _ in fcs}
        assert sorted(per_tensor.values()) == sorted(want), path
    text = " | ".join(art.notes)
    assert "setting: per-tensor weights" in text
    assert (f"4 of 4 int8 weight tensor(s) carry one scale (4 scales in all; int8-dynamic "
            f"stores {sum(rows)}, one per output channel)") in text, text


def test_a_setting_that_changes_nothing_is_not_applicable(made, monkeypatch, tmp_path):
    # a "setting" whose recipe is the default's writes the same file: said so, no variant
    monkeypatch.setattr(LitertDynamicPerTensor, "recipe_key", "dynamic")
    out = tmp_path / "same.tflite"
    with pytest.raises(NotApplicable, match="per-tensor weights makes no difference here: "
                                            "the file is byte-identical to int8-dynamic's"):
        LitertDynamicPerTensor().quantize(made["lm"], made["fp32"], out)
    assert not out.exists()


# --------------------------------------------------------------------------- --max-drop


def test_budget_runs_tflite_files_like_the_interpreter(made):
    x = made["x"][:20]
    budget = AccuracyBudget(BUDGET, x, None, "classify")
    got = budget.outputs(Path(made["dyn"].path))
    it = _interp(made["dyn"].path, delegates=True)
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    for k in range(len(x)):
        it.set_tensor(i, x[k:k + 1])
        it.invoke()
        np.testing.assert_allclose(got[k], it.get_tensor(o).reshape(-1), rtol=1e-5, atol=1e-5)
    wrong = AccuracyBudget(BUDGET, _samples(3, seq=SEQ + 2), None, "classify")
    with pytest.raises(EdgeRNNError, match=r"input is fixed at \[1, 8, 2\]") as e:
        wrong.outputs(Path(made["fp32"].path))
    assert len(str(e.value).splitlines()) == 1


def test_mixed_keeps_the_front_float_within_the_budget(made):
    x = made["x"]
    budget = AccuracyBudget(BUDGET, x, None, "classify")
    art = LitertMixedInt8().quantize(made["lm"], made["fp32"], made["out"] / "int8-mixed.tflite",
                                     budget=budget)
    fp32, dyn = made["fp32"].path, made["dyn"].path
    d_all, d_mixed = _changed(fp32, dyn, x), _changed(fp32, art.path, x)
    assert d_all > BUDGET  # plain int8 is over the budget ...
    assert d_mixed <= BUDGET  # ... the mixed file is within it
    fcs = _fc_weights(art.path)
    first, rest = fcs[0], fcs[1:]  # the front reads the model input
    ops, tensors = _graph(art.path)
    fc_ops = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert int(fc_ops[0]["inputs"][0]) == _interp(art.path).get_input_details()[0]["index"]
    assert first[0]["dtype"] == np.float32 and first[1] is None  # float front, float weight
    assert all(w["dtype"] == np.int8 and deq is None for w, deq in rest)  # the rest int8
    int8_tensors = {w["index"] for w, _ in rest}
    assert len(int8_tensors) == 3  # GRU input, GRU recurrent, head
    text = art.notes[0]
    assert text.startswith(f"mixed precision for the accuracy budget {BUDGET:g}: kept float front "
                           "(Linear) weight [8x2]"), text
    assert f"(all-int8: {d_all:.4g})" in text and f": {d_mixed:.4g} (all-int8" in text, text
    assert "3 of 4 int8 weight tensor(s) stay int8" in text
    assert art.quantization == "int8-mixed" and art.variant == "tflite-litert-int8-mixed"


def test_mixed_is_not_applicable_when_all_int8_fits(made):
    x = made["x"]
    d_all = _changed(made["fp32"].path, made["dyn"].path, x)
    with pytest.raises(NotApplicable) as e:
        LitertMixedInt8().quantize(made["lm"], made["fp32"], made["out"] / "never.tflite",
                                   budget=AccuracyBudget(1.0, x, None, "classify"))
    assert str(e.value) == ("all-int8 is within the accuracy budget 1 already (share of changed "
                            f"predictions vs fp32 on {N} calibration inputs: {d_all:.4g})")
    with pytest.raises(NotApplicable, match="needs --max-drop"):
        LitertMixedInt8().quantize(made["lm"], made["fp32"], made["out"] / "never.tflite")


def test_recurrent_weight_is_one_candidate_with_all_its_steps(made, tmp_path):
    """An unrolled GRU's recurrent weight feeds one FULLY_CONNECTED per step: the search keeps
    it float with every one of them (leaving some int8 would store the weight twice)."""
    ops, tensors = _graph(made["dyn"].path)
    users = Counter(int(op["inputs"][1]) for op in ops if op["op_name"] == "FULLY_CONNECTED")
    shared = [i for i, n in users.items() if n > 1]
    assert len(shared) == 1 and users[shared[0]] == SEQ - 1
    name = tensors[shared[0]]["name"]
    cands = candidates(made["dyn"].path)
    assert len(cands) == 4
    assert len(cands[name].consumers) == SEQ - 1
    assert cands[name].label().startswith(f"rnn (GRU) weight [{3 * HIDDEN}x{HIDDEN}] "
                                          f"(tensor {name}): {SEQ - 1} FULLY_CONNECTED share it")
    # left float through the real child: every step float, no int8 copy left behind
    from edgernn.convert.quantize.tflite_mixed import exclusion_regex

    out = tmp_path / "rec-float.tflite"
    LitertMixedInt8()._run(made["fp32"], out,
                           exclude=[exclusion_regex([s for _, s in cands[name].consumers])])
    fcs = _fc_weights(out)
    steps = [w for w, _ in fcs if w["shape"].tolist() == [3 * HIDDEN, HIDDEN]]
    assert len(steps) == SEQ - 1 and all(w["dtype"] == np.float32 for w in steps)
    assert sum(w["dtype"] == np.int8 for w, _ in fcs) == len(fcs) - (SEQ - 1)  # the rest int8
    _, after = _graph(out)
    assert not [t for t in after.values()  # no int8 copy of the recurrent weight left behind
                if t["dtype"] == np.int8 and t["shape"].tolist() == [3 * HIDDEN, HIDDEN]]
