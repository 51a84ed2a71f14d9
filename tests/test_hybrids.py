"""Hybrid and ensemble contenders: the GRU-encoder / LSTM-decoder forecaster (``gru:H/lstm:H``)
and the LSTM+GRU ensemble (``lstm:H+gru:H``).

Expected values are computed independently: the encoder/decoder by a hand re-implementation
with plain torch.nn GRU / LSTMCell / GRUCell / Linear loaded with the model's weights (a step
loop for the decoder: the state hand-off and the decoder's inputs are checked, not assumed),
the ensemble as the mean of its members' outputs (numpy, members called directly), parameter
counts by the gate formulas, exported files run by onnxruntime directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgernn.data.datasets import Dataset
from edgernn.errors import EdgeRNNError
from edgernn.models.build import build_model, count_parameters
from edgernn.models.layers import EncDecSpec, EnsembleSpec, LayerSpec, format_layers, parse_layers
from edgernn.study.training import model_config, train, write_outputs

# --------------------------------------------------------------------------- helpers


def forecast_data(n: int = 160, seq: int = 20, horizon: int = 5, features: int = 2,
                  seed: int = 0) -> Dataset:
    """A noisy two-frequency series in windows: x [n, seq, features] (the series and a phase
    feature), y the next ``horizon`` values; time-ordered 75/25 split. Units far from 0/1 so
    the model's standardisation buffers matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + seq + horizon, dtype=np.float64)
    s = 50 + 8 * np.sin(t / 3.0) + 3 * np.sin(t / 11.0) + rng.normal(0, 0.5, len(t))
    cols = [s, np.cos(t / 3.0) * 5 + 2][:features]
    series = np.stack(cols, axis=1).astype(np.float32)
    x = np.stack([series[i:i + seq] for i in range(n)])
    y = np.stack([s[i + seq:i + seq + horizon] for i in range(n)]).astype(np.float32)
    cut = int(n * 0.75)
    return Dataset("synthetic", "forecast", x[:cut], y[:cut], x[cut:], y[cut:], "test series",
                   real=False, horizon=horizon)


def classify_data(n: int = 160, seq: int = 12, classes: int = 3) -> Dataset:
    rng = np.random.default_rng(1)
    y = rng.integers(0, classes, n)
    x = (rng.normal(0, 1, (n, seq, 2)) + y[:, None, None]).astype(np.float32)
    cut = int(n * 0.75)
    return Dataset("synthetic_cls", "classify", x[:cut], y[:cut], x[cut:], y[cut:], "test",
                   real=False, num_classes=classes)


def rnn_params(cell: str, inp: int, hidden: int, layers: int = 1, bi: bool = False) -> int:
    """PyTorch's LSTM/GRU parameter count: per direction and layer, gates * (W_ih + W_hh +
    b_ih + b_hh); gates 4 (LSTM) or 3 (GRU)."""
    gates = {"lstm": 4, "gru": 3}[cell]
    d = 2 if bi else 1
    total = 0
    for layer in range(layers):
        i = inp if layer == 0 else hidden * d
        total += d * gates * (hidden * i + hidden * hidden + 2 * hidden)
    return total


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial standardisation buffers (so a wrong order of operations shows)."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("x_mean") or name.endswith("y_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 3)
        elif name.endswith("x_std") or name.endswith("y_std"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)


def copy_rnn(dst: nn.Module, src: nn.Module) -> None:
    dst.load_state_dict(src.state_dict())


def cell_from(rnn: nn.Module, layer: int) -> nn.Module:
    """An LSTMCell / GRUCell holding layer ``layer`` of ``rnn``'s weights."""
    kind = nn.LSTMCell if isinstance(rnn, nn.LSTM) else nn.GRUCell
    inp = rnn.input_size if layer == 0 else rnn.hidden_size
    cell = kind(inp, rnn.hidden_size)
    with torch.no_grad():
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, part).copy_(getattr(rnn, f"{part}_l{layer}"))
    return cell


@torch.no_grad()
def hand_encdec(model: nn.Module, x: torch.Tensor, enc_specs: list[LayerSpec],
                dec: LayerSpec, horizon: int) -> np.ndarray:
    """The encoder/decoder written out: standardise; encoder blocks as plain nn.GRU/nn.LSTM;
    ctx = last step (bidirectional: forward at the end, backward at the start); initial
    decoder state = tanh(Linear(ctx)) laid out [h(layer 0..L-1), c(layer 0..L-1)] * hidden;
    ``horizon`` decoder steps, each fed ctx, through per-layer cells; a Linear per step;
    de-standardise."""
    sd = model.state_dict()
    h = (x - sd["x_mean"]) / sd["x_std"]
    width = x.shape[-1]
    for i, spec in enumerate(enc_specs):
        kind = nn.LSTM if spec.cell == "lstm" else nn.GRU
        rnn = kind(width, spec.hidden, num_layers=spec.num_layers, batch_first=True,
                   bidirectional=spec.bidirectional)
        rnn.load_state_dict({k.removeprefix(f"encoder.{i}."): v for k, v in sd.items()
                             if k.startswith(f"encoder.{i}.")})
        h, _ = rnn(h)
        width = spec.hidden * (2 if spec.bidirectional else 1)
    last = enc_specs[-1]
    if last.bidirectional:
        ctx = torch.cat([h[:, -1, :last.hidden], h[:, 0, last.hidden:]], dim=1)
    else:
        ctx = h[:, -1, :]
    n_state = 2 if dec.cell == "lstm" else 1
    bridge = nn.Linear(width, n_state * dec.num_layers * dec.hidden)
    bridge.load_state_dict({"weight": sd["bridge.weight"], "bias": sd["bridge.bias"]})
    s = torch.tanh(bridge(ctx))
    H, L = dec.hidden, dec.num_layers
    hs = [s[:, k * H:(k + 1) * H] for k in range(L)]
    cs = [s[:, (L + k) * H:(L + k + 1) * H] for k in range(L)] if dec.cell == "lstm" else []
    dec_rnn = (nn.LSTM if dec.cell == "lstm" else nn.GRU)(width, H, num_layers=L,
                                                          batch_first=True)
    dec_rnn.load_state_dict({k.removeprefix("decoder."): v for k, v in sd.items()
                             if k.startswith("decoder.")})
    cells = [cell_from(dec_rnn, k) for k in range(L)]
    head = nn.Linear(H, 1)
    head.load_state_dict({"weight": sd["head.weight"], "bias": sd["head.bias"]})
    outs = []
    for _ in range(horizon):
        inp = ctx
        for k, cell in enumerate(cells):
            if dec.cell == "lstm":
                hs[k], cs[k] = cell(inp, (hs[k], cs[k]))
            else:
                hs[k] = cell(inp, hs[k])
            inp = hs[k]
        outs.append(head(inp)[:, 0])
    y = torch.stack(outs, dim=1)
    return (y * sd["y_std"] + sd["y_mean"]).numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- spec syntax


def test_spec_syntax_and_one_line_errors():
    ed = parse_layers("gru:16/lstm:8x2")
    assert ed == EncDecSpec((LayerSpec("gru", 16),), LayerSpec("lstm", 8, 2))
    assert parse_layers("GRU:16 > lstm:8x2") == ed  # '>' spells the same (quoted in a shell)
    assert format_layers(ed) == "gru:16/lstm:8x2"
    ens = parse_layers("lstm:8+gru:8")
    assert ens == EnsembleSpec(([LayerSpec("lstm", 8)], [LayerSpec("gru", 8)]))
    assert format_layers(ens) == "lstm:8+gru:8"
    mixed = parse_layers("gru:4,lstm:4+gru:4/lstm:4")
    assert isinstance(mixed, EnsembleSpec) and isinstance(mixed.members[1], EncDecSpec)
    assert format_layers(parse_layers(format_layers(mixed))) == format_layers(mixed)
    assert parse_layers("gru:8,lstm:8") == [LayerSpec("gru", 8), LayerSpec("lstm", 8)]
    for bad in ("gru:8/lstm:8/gru:8", "gru:8/bilstm:8", "gru:8/lstm:8,gru:8", "lstm:8+",
                "gru:8/", "+gru:8", "lstm:0+gru:8"):
        with pytest.raises(EdgeRNNError) as e:
            parse_layers(bad)
        assert "\n" not in str(e.value), bad


# --------------------------------------------------------------------------- encoder/decoder


@pytest.mark.parametrize("spec", ["gru:6/lstm:5", "gru:6/lstm:5x2", "lstm:4,bigru:3/gru:5"])
def test_encdec_matches_hand_reimplementation(spec):
    """Catches: a wrong state hand-off (h/c swapped or the bridge laid out differently), a
    decoder fed something other than ctx at each step, the head applied to the wrong axis,
    a missing (de)standardisation, a wrong ctx for a bidirectional last encoder block."""
    ds = forecast_data()
    sp = parse_layers(spec)
    torch.manual_seed(0)
    model = build_model(model_config(ds, sp)).eval()
    randomize(model)
    x = torch.from_numpy(ds.x_test[:7])
    with torch.no_grad():
        got = model(x).numpy()
    want = hand_encdec(model, x, list(sp.encoder), sp.decoder, ds.horizon)
    assert got.shape == (7, ds.horizon)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the hand-off matters: a decoder started from zeros gives other forecasts
    assert np.max(np.abs(want - hand_zero_state(model, x, sp, ds.horizon))) > 1e-3


@torch.no_grad()
def hand_zero_state(model, x, sp, horizon):
    m2 = build_model(model.config).eval()
    m2.load_state_dict(model.state_dict())
    m2.bridge.weight.zero_()
    m2.bridge.bias.zero_()
    return m2(x).numpy()


def test_encdec_parameter_count_by_formula():
    ds = forecast_data(features=2, horizon=5)
    model = build_model(model_config(ds, parse_layers("gru:6/lstm:5x2")))
    enc = rnn_params("gru", 2, 6)  # 3 * (6*2 + 6*6 + 2*6) = 180
    bridge = 6 * (2 * 2 * 5) + 2 * 2 * 5  # ctx 6 -> h and c of 2 layers of 5: 140
    dec = rnn_params("lstm", 6, 5, layers=2)  # 4 * (5*6 + 25 + 10) + 4 * (25 + 25 + 10) = 500
    head = 5 + 1
    assert count_parameters(model) == enc + bridge + dec + head == 826


def test_encdec_trains_and_refuses_classification():
    """Catches: the encoder/decoder not learning at all (loss / error not falling), and a
    classify dataset silently accepted."""
    ds = forecast_data(n=240)
    res = train(ds, parse_layers("gru:8/lstm:8"), epochs=4, batch_size=16, lr=1e-2, seed=0)
    assert res.model.config["arch"] == "encdec"
    assert res.history[-1]["mae"] < res.history[0]["mae"]
    assert len(res.epoch_seconds) == 4
    # better than forecasting the training mean for every step
    naive = float(np.mean(np.abs(ds.y_test - ds.y_train.mean())))
    assert res.history[-1]["mae"] < naive
    with pytest.raises(EdgeRNNError, match="synthetic_cls.*classify") as e:
        train(classify_data(), parse_layers("gru:8/lstm:8"), epochs=1)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- ensemble


def test_ensemble_forecast_is_the_mean_of_separately_trained_members(tmp_path):
    """Catches: members trained jointly or sharing a seed (member weights then differ from the
    same spec trained alone with the documented seed), an output other than the members' mean,
    training time not counting both members, the checkpoint losing a member."""
    from edgernn.model.loading import load_model
    from edgernn.study.training import MEMBER_SEED_STEP

    ds = forecast_data()
    kw = dict(epochs=2, batch_size=32, seed=5)
    res = train(ds, parse_layers("lstm:6+gru:6"), **kw)
    ens = res.model.eval()
    x = torch.from_numpy(ds.x_test)
    with torch.no_grad():
        got = ens(x).numpy()
        members = [m(x).numpy() for m in ens.members]
    np.testing.assert_allclose(got, np.mean(members, axis=0), rtol=1e-6, atol=1e-5)
    assert np.max(np.abs(members[0] - members[1])) > 1e-3  # two different models
    # members of the same spec get their own seeds (else they would be one model twice)
    twin = train(ds, parse_layers("lstm:4+lstm:4"), epochs=1, seed=0).model
    a, b = (m.state_dict()["rnns.0.weight_hh_l0"] for m in twin.members)
    assert not torch.equal(a, b)
    # each member is exactly the single model trained on its own with its own seed
    for i, spec in enumerate(("lstm:6", "gru:6")):
        alone = train(ds, parse_layers(spec), **{**kw, "seed": 5 + MEMBER_SEED_STEP * i})
        for k, v in alone.model.state_dict().items():
            torch.testing.assert_close(ens.members[i].state_dict()[k], v, rtol=0, atol=0)
    assert res.epoch_seconds == [a + b for a, b in zip(res.members[0].epoch_seconds,
                                                         res.members[1].epoch_seconds,
                                                         strict=True)]
    n = rnn_params("lstm", 2, 6) + 7 * 5 + rnn_params("gru", 2, 6) + 7 * 5  # + heads 6->5
    assert count_parameters(ens) == n
    # the checkpoint holds both members; loaded back it answers the same
    ck = tmp_path / "ens.pt"
    write_outputs(ds, res, ck, tmp_path / "ens.eval.npz")
    lm = load_model(ck)
    with torch.no_grad():
        np.testing.assert_allclose(lm.module(x).numpy(), got, rtol=1e-6, atol=1e-6)
    meta = torch.load(ck, weights_only=True)["meta"]
    assert meta["layers"] == "lstm:6+gru:6" and meta["parameters"] == n
    assert [m["layers"] for m in meta["members"]] == ["lstm:6", "gru:6"]
    assert [m["seed"] for m in meta["members"]] == [5, 5 + MEMBER_SEED_STEP]


def test_ensemble_classifier_averages_probabilities():
    """Catches: averaging logits instead of probabilities (the two differ for members of
    different confidence), and an output whose softmax is not the averaged probabilities."""
    ds = classify_data()
    res = train(ds, parse_layers("lstm:5+gru:5"), epochs=1, batch_size=32, seed=0)
    ens = res.model.eval()
    x = torch.from_numpy(ds.x_test)
    with torch.no_grad():
        out = ens(x).numpy()
        logits = [m(x).numpy() for m in ens.members]
    probs = np.mean([softmax(z) for z in logits], axis=0)
    np.testing.assert_allclose(np.exp(out), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(softmax(out), probs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(softmax(np.mean(logits, axis=0)), probs, atol=1e-4)
    # the recorded accuracy is the averaged probabilities' argmax
    acc = float(np.mean(probs.argmax(1) == ds.y_test))
    assert res.history[-1]["accuracy"] == pytest.approx(acc)


def test_ensemble_single_logit_averages_sigmoids():
    cfg = {"arch": "sequence", "input": {"kind": "features", "features": 2},
           "task": "classify", "num_classes": 1, "horizon": None}
    members = [{**cfg, "layers": [{"cell": c, "hidden": 4}]} for c in ("lstm", "gru")]
    ens = build_model({**cfg, "arch": "ensemble", "members": members}).eval()
    x = torch.randn(6, 9, 2)
    with torch.no_grad():
        for m in ens.members:  # members of clearly different scores
            m.head.bias.add_(torch.randn(1) * 2)
        out = ens(x).numpy()[:, 0]
        z = [m(x).numpy()[:, 0] for m in ens.members]
    p = np.mean([1 / (1 + np.exp(-zi)) for zi in z], axis=0)
    np.testing.assert_allclose(1 / (1 + np.exp(-out)), p, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- CLI and export


def run_ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("layers,ops", [("gru:8/lstm:8", {"GRU": 1, "LSTM": 1}),
                                        ("lstm:8+gru:8", {"LSTM": 1, "GRU": 1})])
def test_cli_train_then_export_onnx_parity(tmp_path, layers, ops):
    """`edgernn train --layers SPEC` then `edgernn export` on the real temps data; the ONNX
    file run by onnxruntime directly matches PyTorch at another batch and sequence length, and
    holds every member's recurrent layers (the ensemble is one file: its size is both
    models'). Catches: a spec the CLI path cannot train or save, a checkpoint that does not
    load back, an export that drops a member or fixes the batch/sequence length."""
    import json

    import onnx

    from edgernn.cli import cli
    from edgernn.model.loading import load_model

    ck = tmp_path / "m.pt"
    r = CliRunner().invoke(cli, ["train", "--dataset", "temps", "--layers", layers,
                                 "--epochs", "1", "--max-train", "64", "--out", str(ck)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "export"
    r = CliRunner().invoke(cli, ["export", str(ck), "--format", "onnx", "--quantize", "none",
                                 "--data", str(tmp_path / "m.eval.npz"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    assert art["status"] == "ok" and art["parity_ok"], art
    path = out / art["path"]
    model = load_model(ck).module.eval()
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 48), (3, 30)):
        x = (rng.normal(0, 5, (batch, seq, 3)) + 10).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = run_ort(path, x)
        assert got.shape == (batch, 6)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    graph = onnx.load(str(path)).graph
    census = {op: sum(n.op_type == op for n in graph.node) for op in ops}
    assert census == ops
    weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert weights >= count_parameters(model)


def test_cli_train_encdec_on_classification_is_one_line_error(tmp_path, capsys):
    from tests.conftest import run_cli

    code, _, err = run_cli(["train", "--dataset", "weather", "--layers", "gru:8/lstm:8",
                            "--epochs", "1", "--out", tmp_path / "x.pt"], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "encoder/decoder" in lines[0] and "classify" in lines[0]
    assert not (tmp_path / "x.pt").exists()


def test_write_members_splits_an_ensemble(tmp_path):
    """The members as their own checkpoints (to bench them for the record) answer exactly as
    the members inside the ensemble."""
    from edgernn.model.checkpoint import write_members
    from edgernn.model.loading import load_model

    ds = forecast_data()
    res = train(ds, parse_layers("lstm:4+gru:4/lstm:4"), epochs=1, seed=0)
    ck = tmp_path / "e.pt"
    write_outputs(ds, res, ck, tmp_path / "e.eval.npz")
    paths = write_members(ck, tmp_path)
    x = torch.from_numpy(ds.x_test[:5])
    with torch.no_grad():
        for p, m in zip(paths, res.model.members, strict=True):
            np.testing.assert_array_equal(load_model(p).module(x).numpy(), m(x).numpy())
    assert [load_model(p).module.config["arch"] for p in paths] == ["sequence", "encdec"]


def test_edgernn_save_writes_hybrids_as_checkpoints(tmp_path):
    """edgernn.save() of an encoder/decoder or an ensemble writes an edgernn checkpoint (config
    + weights, loadable without unpickling code), not a TorchScript archive."""
    import edgernn
    from edgernn.model.checkpoint import CHECKPOINT_KEY
    from edgernn.model.loading import load_model

    ds = forecast_data()
    x = torch.from_numpy(ds.x_test[:4])
    for spec in ("gru:4/lstm:4", "lstm:4+gru:4"):
        model = build_model(model_config(ds, parse_layers(spec))).eval()
        randomize(model)
        p = edgernn.save(model, tmp_path / "m.pt", x[:1])
        assert CHECKPOINT_KEY in torch.load(p, weights_only=True)
        lm = load_model(p)
        assert lm.kind == "checkpoint"
        with torch.no_grad():
            np.testing.assert_array_equal(lm.module(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("layers, why", [("gru:4/lstm:4", "no step form"),
                                         ("lstm:4+gru:4", "ensembles are not written yet")])
def test_streaming_export_of_hybrids_is_refused_in_one_line(tmp_path, capsys, layers, why):
    from tests.conftest import run_cli

    ds = forecast_data()
    res = train(ds, parse_layers(layers), epochs=1, seed=0)
    write_outputs(ds, res, tmp_path / "h.pt", tmp_path / "h.eval.npz")
    code, _, err = run_cli(["export", tmp_path / "h.pt", "--streaming", "--format", "onnx",
                            "--out", tmp_path / "o"], capsys)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and why in lines[0], err
    assert not (tmp_path / "o").exists()  # refused before any work
