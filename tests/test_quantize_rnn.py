"""GRU (and LSTM) int8 in ONNX and PyTorch's own dynamic int8 as a peer row, on users' models
built here with plain torch. Expected values: an independent count of the file's int8
tensors, PyTorch run directly, onnxruntime called directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests.conftest import cli
from tests.onnx_count import independent_shares, op_types

FAST = ["--trials", "1", "--runs", "5", "--min-seconds", "0", "--warmup", "1"]


class GRUHead(nn.Module):
    """The issue's GRU: 2 layers, hidden 128, batch-first, a Linear head on the last step."""

    def __init__(self, cell=nn.GRU, features: int = 40, hidden: int = 128, layers: int = 2,
                 bidirectional: bool = False):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=True,
                        bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _export(tmp_path: Path, module: nn.Module, name: str, shape: str) -> dict:
    torch.manual_seed(0)
    p = tmp_path / f"{name}.pt"
    torch.jit.save(torch.jit.script(module.eval()), str(p))
    code, out, err = cli(["export", p, "--input-shape", shape, "--format", "onnx",
                          "--quantize", "dynamic", "--out", tmp_path / name])
    assert code == 0, err + out
    m = json.loads((tmp_path / name / "manifest.json").read_text())
    return {a["variant"]: tmp_path / name / a["path"] for a in m["artifacts"] if a["path"]}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_scripted_two_layer_gru_gets_int8_weights(tmp_path):
    torch.manual_seed(0)
    model = GRUHead().eval()
    files = _export(tmp_path, model, "gru2", "batch=1,seq=50,40")
    fp32, q = files["onnx-fp32"], files["onnx-int8-dynamic"]
    share = independent_shares(q)["int8"]
    ops = set(op_types(q))
    assert share >= 0.9, share  # the GRU weights too: the head alone is 0.4%
    assert "GRU" in ops  # onnxruntime's fused kernel, fed int8-stored weights
    assert q.stat().st_size <= 0.35 * fp32.stat().st_size
    x = np.random.default_rng(0).standard_normal((200, 50, 40)).astype(np.float32)
    with torch.no_grad():
        want = torch.jit.load(str(tmp_path / "gru2.pt"))(torch.from_numpy(x)).numpy()
    got = _run(q, x)  # dynamic batch: all samples at once
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.97
    assert np.max(np.abs(got - want)) < 0.05 * np.max(np.abs(want))


@pytest.mark.parametrize("cell, bidirectional, layers", [
    (nn.GRU, False, 2), (nn.GRU, True, 1), (nn.LSTM, False, 2), (nn.LSTM, True, 1)])
def test_scan_form_computes_the_same_recurrence(tmp_path, cell, bidirectional, layers):
    """The int8 Scan rewrite against PyTorch: a wrong gate order, direction or bias fold gives
    errors of the size of the outputs, int8 rounding a few percent at most."""
    torch.manual_seed(1)
    model = GRUHead(cell, features=12, hidden=32, layers=layers, bidirectional=bidirectional)
    files = _export(tmp_path, model, "scan", "batch=1,seq=20,12")
    q = files["onnx-int8-scan"]
    share = independent_shares(q)["int8"]
    ops = set(op_types(q))
    assert "Scan" in ops and "GRU" not in ops and "LSTM" not in ops
    assert share >= 0.9
    ts = torch.jit.load(str(tmp_path / "scan.pt"))
    for batch, seq in ((1, 1), (3, 7), (2, 30)):  # other batch sizes and lengths than exported
        x = np.random.default_rng(batch).standard_normal((batch, seq, 12)).astype(np.float32)
        with torch.no_grad():
            want = ts(torch.from_numpy(x)).numpy()
        got = _run(q, x)
        assert np.max(np.abs(got - want)) <= 0.05 * max(1.0, float(np.max(np.abs(want)))), \
            (batch, seq)


def test_torch_int8_peer_row(tmp_path):
    torch.manual_seed(2)
    model = GRUHead(nn.LSTM, features=6, hidden=16, layers=1).eval()
    p = tmp_path / "eager.pt"
    torch.save(model, p)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 9, 6)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy().argmax(1)
    y[::4] = (y[::4] + 1) % 5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, _, err = cli(["bench", p, "--trust-pickle", "--import", "tests.test_quantize_rnn",
                        "--input-shape", "batch=1,seq=9,6", "--data", tmp_path / "d.npz",
                        "--format", "onnx", "--quantize", "dynamic", *FAST, "--out", tmp_path / "b"])
    assert code == 0, err
    rows = {r["variant"].split("/")[1]: r
            for r in json.loads((tmp_path / "b" / "results.json").read_text())}
    r = rows["torch-int8-dynamic"]
    assert r["status"] == "ok", r
    from torch.ao.quantization import quantize_dynamic

    q = quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        pred = np.concatenate([q(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    assert r["value"] == pytest.approx(float(np.mean(pred.argmax(1) == y)))
    assert r["size_bytes"] < 0.6 * rows["torch-fp32"]["size_bytes"]
    # a TorchScript archive cannot be re-quantized by PyTorch: a skipped row says why
    ts = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(model), str(ts))
    code, _, err = cli(["bench", ts, "--input-shape", "batch=1,seq=9,6", "--data",
                        tmp_path / "d.npz", "--format", "onnx", "--quantize", "dynamic", *FAST,
                        "--out", tmp_path / "c"])
    assert code == 0, err
    rows = {r["variant"].split("/")[1]: r
            for r in json.loads((tmp_path / "c" / "results.json").read_text())}
    assert rows["torch-int8-dynamic"]["status"] == "skipped"
    assert "TorchScript archive cannot be re-quantized" in rows["torch-int8-dynamic"]["reason"]


def test_conv_kept_float_variant_and_the_per_op_decision(step_kws, tmp_path):
    from tests.step_models import KWS_ARGS

    code, out, err = cli(["export", step_kws["model"], *KWS_ARGS, "--format", "onnx",
                          "--quantize", "dynamic", "--out", tmp_path / "e"])
    assert code == 0, err
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    files = {a["variant"]: tmp_path / "e" / a["path"] for a in m["artifacts"]}
    full = set(op_types(files["onnx-int8-dynamic"]))
    share = independent_shares(files["onnx-int8-dynamic-fp32conv"])["int8"]
    kept = set(op_types(files["onnx-int8-dynamic-fp32conv"]))
    assert "ConvInteger" in full and "Conv" not in full
    assert "Conv" in kept and "ConvInteger" not in kept and "DynamicQuantizeLSTM" in kept
    assert share > 0.8  # the LSTM (most weights) stays int8
    from edgernn.results.selection import op_decisions

    def row(q: str, p50: float, drop: float) -> dict:
        return {"model": "m", "target": "pi", "format": "onnx", "quantization": q,
                "status": "ok", "latency_ms": {"p50": p50, "spread": 0.02},
                "accuracy_drop": drop, "size_bytes": 1000}
    slow_conv = op_decisions([row("int8-dynamic", 0.2, 0.0), row("int8-dynamic-fp32conv", 0.1, 0.0)])
    assert slow_conv and slow_conv[0].startswith("Per-op: ")
    assert "keep Conv fp32" in slow_conv[0] and "2.00x slower" in slow_conv[0]
    fast_conv = op_decisions([row("int8-dynamic", 0.1, 0.0), row("int8-dynamic-fp32conv", 0.2, 0.0)])
    assert "keep Conv int8" in fast_conv[0]
    lossy = op_decisions([row("int8-dynamic", 0.1, 0.05), row("int8-dynamic-fp32conv", 0.2, 0.0)])
    assert "keep Conv fp32" in lossy[0] and "costs accuracy" in lossy[0]


class FixedBasisFront(nn.Module):
    """A fixed-basis conv front end (an STFT-like Conv1d) over a quiet signal channel beside a
    loud reference channel, then an LSTM: int8 conv activations (one scale per call) lose the
    quiet channel, so plain int8 costs accuracy that the LSTM's int8 does not."""

    def __init__(self):
        super().__init__()
        self.front = nn.Conv1d(2, 8, 5, padding=2, bias=False)
        with torch.no_grad():
            t = torch.arange(5.0)
            w = torch.zeros(8, 2, 5)
            for k in range(8):
                w[k, 0] = torch.cos(np.pi * k * t / 5) * 50.0  # the quiet channel, amplified
                w[k, 1] = 0.001  # the loud channel, nearly ignored
            self.front.weight.copy_(w)
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.front(x.transpose(1, 2)).transpose(1, 2))[0][:, -1])


def test_max_drop_keeps_the_sensitive_op_float(tmp_path):
    torch.manual_seed(0)
    m = FixedBasisFront().eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 30, 2)).astype(np.float32)
    x[..., 0] *= 0.01
    x[..., 1] *= 100.0
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy().argmax(1)  # fp32 is right on every sample
    assert 0.2 < y.mean() < 0.8
    p = tmp_path / "front.pt"
    torch.jit.save(torch.jit.script(m), str(p))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, out, err = cli(["bench", p, "--input-shape", "batch=1,seq=30,2", "--data",
                          tmp_path / "d.npz", "--format", "onnx", "--quantize", "dynamic",
                          "--max-drop", "0.02", *FAST, "--out", tmp_path / "b"])
    assert code == 0, err
    work = tmp_path / "b" / "front"
    plain = _run(work / "front.onnx.int8-dynamic.onnx", x).argmax(1)
    mixed_file = work / "front.onnx.int8-mixed.onnx"
    mixed = _run(mixed_file, x).argmax(1)
    assert 1 - np.mean(plain == y) > 0.02  # plain int8 is over the budget ...
    assert 1 - np.mean(mixed == y) <= 0.02  # ... the mixed file is within it
    ops = set(op_types(mixed_file))
    assert "Conv" in ops and "ConvInteger" not in ops and "DynamicQuantizeLSTM" in ops
    rows = {r["variant"].split("/")[1]: r
            for r in json.loads((tmp_path / "b" / "results.json").read_text())}
    r = rows["onnx-int8-mixed"]
    assert r["status"] == "ok" and r["accuracy_drop"] <= 0.02
    assert any("kept float /front/Conv (Conv" in n for n in r["notes"]), r["notes"]
    # without samples to measure the drop on, export refuses in one line
    code, _, err = cli(["export", p, "--input-shape", "batch=1,seq=30,2", "--format", "onnx",
                        "--max-drop", "0.02", "--out", tmp_path / "e"])
    assert code == 1 and "--max-drop needs samples" in err and len(err.strip().splitlines()) == 1


class TokenGRU(nn.Module):
    """A user's keyword/text classifier: Embedding -> GRU -> Linear (scripted)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(60, 16)
        self.rnn = nn.GRU(16, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(tokens))[0][:, -1])


def _stored(path: Path) -> dict[str, np.ndarray]:
    """Every stored tensor of the file by name (the test's own walk)."""
    from onnx import numpy_helper

    from tests.onnx_count import stored_tensors
    return {t.name: numpy_helper.to_array(t) for t in stored_tensors(onnx.load(str(path)).graph)}


def _weights_of(path: Path, shape: tuple[int, ...]) -> list[np.ndarray]:
    return [a for a in _stored(path).values() if a.shape == shape]


def _token_export(d: Path, target: str | Path):
    torch.manual_seed(0)
    model = TokenGRU().eval()
    p = d / "tok.pt"
    torch.jit.save(torch.jit.script(model), str(p))
    base = ["export", p, "--input-shape", "batch=1,seq=12", "--input-dtype", "int64",
            "--format", "onnx", "--quantize", "dynamic", "--target", target]
    code, out, err = cli([*base, "--out", d / "plain"])
    assert code == 0, err + out
    plain = json.loads((d / "plain" / "manifest.json").read_text())
    code, out, err = cli([*base, "--per-op", "--tune", "--out", d / "all"])
    assert code == 0, err + out
    m = json.loads((d / "all" / "manifest.json").read_text())
    arts = {a["quantization"]: a for a in m["artifacts"]}
    return model, plain, arts, {q: d / "all" / a["path"] for q, a in arts.items() if a["path"]}


@pytest.fixture(scope="module")
def token_variants(tmp_path_factory):
    """Every per-op and setting variant for this host (files that run here)."""
    return _token_export(tmp_path_factory.mktemp("token-gru"), "x86")


@pytest.fixture(scope="module")
def token_settings(tmp_path_factory):
    """The setting variants for a CPU whose int8 products do not saturate, whatever this host
    is: onnxruntime's settings around its 8-bit default (stored weights only, never run here)."""
    d = tmp_path_factory.mktemp("token-gru-vnni")
    target = d / "vnni.yaml"
    target.write_text("name: vnni\nrunner: local\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\n"
                      "int8_saturates: false\n")
    return _token_export(d, target)


def test_per_op_and_setting_variants_only_when_asked(token_settings):
    _, plain, arts, _ = token_settings
    asked = {"int8-dynamic-fp32rnn", "int8-dynamic-fp32matmul", "int8-dynamic-fp32gather",
             "int8-dynamic-perchannel", "int8-dynamic-u8", "int8-dynamic-reducerange"}
    assert {a["quantization"] for a in plain["artifacts"]}.isdisjoint(asked)
    assert all(arts[q]["status"] == "ok" for q in asked), {q: arts[q] for q in asked}
    # the model has no Conv: that variant is about an op the graph lacks
    assert arts["int8-dynamic-fp32conv"]["status"] == "not applicable"


def test_each_op_class_kept_fp32_is_float_in_its_file(token_variants):
    model, _, _, files = token_variants
    table, gru_w, head = (tuple(model.emb.weight.shape), (1, 96, 16), (32, 4))

    def dtypes(q: str, shape: tuple[int, ...]) -> set[str]:
        return {a.dtype.name for a in _weights_of(files[q], shape)}
    # every weight 8-bit in int8-dynamic (the head is stored transposed for MatMulInteger;
    # onnxruntime stores a Gather table as asymmetric uint8 whatever the weight type)
    assert dtypes("int8-dynamic", table) == {"uint8"} and dtypes("int8-dynamic", gru_w) == {"int8"}
    assert dtypes("int8-dynamic", head) == {"int8"}
    assert dtypes("int8-dynamic-fp32gather", table) == {"float32"}
    assert dtypes("int8-dynamic-fp32gather", head) == {"int8"}
    assert dtypes("int8-dynamic-fp32matmul", head) == {"float32"}
    assert dtypes("int8-dynamic-fp32matmul", table) == {"uint8"}
    assert dtypes("int8-dynamic-fp32rnn", gru_w) == {"float32"}
    assert dtypes("int8-dynamic-fp32rnn", table) == {"uint8"}
    x = torch.randint(0, 60, (3, 12))
    with torch.no_grad():
        ref = model(x).numpy()
    for q, f in files.items():  # every variant still computes the model
        got = _run(f, x.numpy())
        np.testing.assert_allclose(got, ref, atol=0.05 * max(1.0, np.abs(ref).max()), err_msg=q)


def test_settings_really_change_the_stored_weights(token_settings):
    model, _, arts, files = token_settings
    head = (32, 4)
    w = model.head.weight.detach().numpy().T

    def scales(q: str) -> list[int]:
        """Sizes of the float tensors stored beside the head's int8 weight: its scales."""
        stored = _stored(files[q])
        name = next(k for k, a in stored.items() if a.shape == head)
        return [stored[k].size for k in stored if k.startswith(name.rsplit("_quantized")[0])
                and stored[k].dtype == np.float32]
    default = _weights_of(files["int8-dynamic"], head)[0]
    assert default.dtype == np.int8 and scales("int8-dynamic") == [1]
    assert scales("int8-dynamic-perchannel") == [4]  # one scale per output column
    u8 = _weights_of(files["int8-dynamic-u8"], head)[0]
    assert u8.dtype == np.uint8
    zero = [int(a) for a in _stored(files["int8-dynamic-u8"]).values()
            if a.dtype == np.uint8 and a.size == 1]
    lo, hi = min(w.min(), 0.0), max(w.max(), 0.0)  # asymmetric uint8: the zero point maps 0.0
    assert any(abs(z - round(-lo / ((hi - lo) / 255))) <= 1 for z in zero), zero
    rr = _weights_of(files["int8-dynamic-reducerange"], head)[0]
    assert rr.dtype == np.int8 and np.abs(rr).max() == 64  # 7-bit: symmetric [-64, 64]
    assert np.abs(default).max() == 127  # 8-bit in the default
    note = "; ".join(arts["int8-dynamic-perchannel"]["notes"])
    assert "per_channel=True" in note and "GRU weights are int8 per output channel" in note


def test_setting_decision_keeps_the_fastest_within_the_drop():
    from edgernn.results.selection import op_decisions

    def row(q: str, p50: float, drop: float, size: int = 1000) -> dict:
        return {"model": "m", "target": "pi", "format": "onnx", "variant": f"m/onnx-{q}",
                "quantization": q, "status": "ok", "accuracy_drop": drop, "size_bytes": size,
                "latency_ms": {"p50": p50, "spread": 0.01}}
    rows = [row("int8-dynamic", 0.20, 0.00), row("int8-dynamic-perchannel", 0.10, 0.03),
            row("int8-dynamic-u8", 0.15, 0.00), row("int8-dynamic-reducerange", 0.19, 0.00)]
    (line,) = op_decisions(rows)
    assert line.startswith("Settings: ") and "keep asymmetric uint8 weights" in line
    # a budget that admits the per-channel drop: it is the fastest then
    (line,) = op_decisions(rows, max_drop=0.05)
    assert "keep per-channel weights" in line
    # equal latency: the smaller file wins
    (line,) = op_decisions([row("int8-dynamic", 0.10, 0.0, 900),
                            row("int8-dynamic-u8", 0.101, 0.0, 800)])
    assert "keep asymmetric uint8 weights" in line
    # an op kept fp32 that is as fast and smaller than its int8 form: keep it fp32
    (line,) = op_decisions([row("int8-dynamic", 0.10, 0.0, 900),
                            row("int8-dynamic-fp32matmul", 0.10, 0.0, 800)])
    assert "keep MatMul/Gemm fp32" in line and "saves no space" in line


def _max_abs_int8(path: Path) -> int:
    """The largest |value| among the file's int8 weight tensors (>= 16 elements), read with
    onnx + numpy (tests/onnx_count's walk)."""
    from onnx import numpy_helper

    from tests.onnx_count import stored_tensors

    vals = [np.abs(numpy_helper.to_array(t).astype(np.int32)).max()
            for t in stored_tensors(onnx.load(str(path)).graph)
            if t.data_type == onnx.TensorProto.INT8 and np.prod(t.dims) >= 16]
    return int(max(vals))


@pytest.mark.parametrize("seven_bit", [False, True])
def test_seven_bit_weights_for_a_cpu_whose_int8_products_saturate(tmp_path, seven_bit):
    """On x86 without VNNI, onnxruntime's u8 x s8 kernels add two products in int16, which
    8-bit weights overflow (seen on an AVX2-only AMD EPYC: GRU+head int8 max error 0.026 -> 0.003
    with 7-bit weights). Files for such a CPU store weights in [-64, 64]."""
    from edgernn.convert.exporting import SEVEN_BIT_REASON, export_model
    from edgernn.model.loading import load_model

    torch.manual_seed(0)
    p = tmp_path / "lstm.pt"
    torch.jit.save(torch.jit.script(GRUHead(cell=nn.LSTM, hidden=32).eval()), str(p))
    lm = load_model(p, input_shape="batch=1,seq=20,40")
    m = export_model(lm, tmp_path / "out", ["onnx"], ["dynamic"], seven_bit_weights=seven_bit)
    art = next(a for a in m["artifacts"] if a["variant"] == "onnx-int8-dynamic")
    biggest = _max_abs_int8(tmp_path / "out" / art["path"])
    assert m["seven_bit_weights"] is seven_bit
    if seven_bit:
        assert biggest <= 64 and SEVEN_BIT_REASON in art["notes"]  # 2 x 255 x 64 < 2^15
    else:
        assert biggest == 127 and SEVEN_BIT_REASON not in art["notes"]


def test_the_host_cpu_check_reads_the_vnni_flags(tmp_path):
    import platform

    from edgernn.runners.local import x86_without_vnni

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert x86_without_vnni(avx2) is x86  # never on ARM, whatever the file says
    assert x86_without_vnni(vnni) is False


def test_on_a_saturating_cpu_the_reduce_range_setting_is_the_default(tmp_path):
    """--tune's 7-bit setting adds nothing where the default is 7-bit already; the uint8
    setting keeps 8-bit weights (u8 x u8 kernels widen to 16 bits before multiplying)."""
    torch.manual_seed(0)
    p = tmp_path / "tok.pt"
    torch.jit.save(torch.jit.script(TokenGRU().eval()), str(p))
    target = tmp_path / "avx2.yaml"
    target.write_text("name: avx2\nrunner: local\nformats: [onnx]\nruntimes: {onnx: onnxruntime}\n"
                      "int8_saturates: true\n")
    code, out, err = cli(["export", p, "--input-shape", "batch=1,seq=12", "--input-dtype", "int64",
                          "--format", "onnx", "--quantize", "dynamic", "--tune", "--target", target,
                          "--out", tmp_path / "o"])
    assert code == 0, err + out
    arts = {a["quantization"]: a for a in
            json.loads((tmp_path / "o" / "manifest.json").read_text())["artifacts"]}
    assert arts["int8-dynamic-reducerange"]["status"] == "skipped"
    assert "7-bit weights already" in arts["int8-dynamic-reducerange"]["error"]
    head = TokenGRU().head.weight.shape[::-1]
    default = _weights_of(tmp_path / "o" / arts["int8-dynamic"]["path"], tuple(head))[0]
    u8 = _weights_of(tmp_path / "o" / arts["int8-dynamic-u8"]["path"], tuple(head))[0]
    assert default.dtype == np.int8 and np.abs(default).max() == 64
    assert u8.dtype == np.uint8 and int(u8.max()) - int(u8.min()) > 128  # all 8 bits in use
