"""Loading model.pt: checkpoints, TorchScript, refused and trusted pickles, bad files."""

from __future__ import annotations

import random
import zipfile

import pytest
import torch

import edgernn
from edgernn.errors import EdgeRNNError
from edgernn.model.loading import load_model
from tests.user_models import BiLSTMConv, Evil, ProjLSTM, SeqFirstGRU


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_roundtrip_keeps_weights_outputs_and_spec(tmp_path):
    from edgernn.models.layers import parse_layers
    from edgernn.models.sequence import SequenceModel

    torch.manual_seed(3)
    model = SequenceModel({
        "arch": "sequence", "input": {"kind": "features", "features": 4},
        "layers": [x.to_dict() for x in parse_layers("gru:6,lstm:5")],
        "task": "classify", "num_classes": 3, "horizon": None}).eval()
    # non-default standardisation buffers: a loader that drops buffers changes the outputs
    model.x_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    model.x_std.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    p = edgernn.save(model, tmp_path / "seq.pt", torch.randn(1, 7, 4))
    lm = load_model(p)
    assert lm.kind == "checkpoint"
    assert lm.spec.task == "classify" and lm.spec.num_classes == 3
    assert lm.spec.to_dict()["shape"] == "batch=1,seq=7,4"
    _same_tensors(lm.module.state_dict(), model.state_dict())
    _same_tensors(torch.load(p, weights_only=True)["state_dict"], model.state_dict())
    x = torch.randn(3, 11, 4)  # another batch and sequence length than saved
    with torch.no_grad():
        assert torch.equal(lm.module(x), model(x))


def test_torchscript_roundtrip_matches_the_module_and_torch_jit_load(tmp_path):
    torch.manual_seed(4)
    model = BiLSTMHead().eval()
    p = edgernn.save(model, tmp_path / "bilstm.pt", torch.randn(1, 9, 4), task="classify")
    lm = load_model(p)
    assert lm.kind == "torchscript"
    direct = torch.jit.load(str(p))
    _same_tensors(lm.module.state_dict(), model.state_dict())
    _same_tensors(direct.state_dict(), model.state_dict())
    x = torch.randn(2, 13, 4)
    with torch.no_grad():
        got = lm.module(x)
        assert torch.allclose(got, model(x), atol=1e-6)
        assert torch.equal(got, direct(x))


class BiLSTMHead(torch.nn.Module):
    """A user's bidirectional LSTM with a linear head on the last step."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_save_user_module_as_torchscript_with_spec(tmp_path):
    model = SeqFirstGRU().eval()
    ex = torch.randn(10, 1, 3)
    p = edgernn.save(model, tmp_path / "seqfirst.pt", ex, batch_axis=1, seq_axis=0,
                     task="classify")
    lm = load_model(p)
    assert lm.kind == "torchscript"
    assert lm.spec.batch_axis == 1 and lm.spec.seq_axis == 0
    x = torch.randn(7, 2, 3)
    assert torch.allclose(lm.module(x), model(x), atol=1e-6)


def test_edgernn_save_of_sequence_model_writes_checkpoint(weather_models, tmp_path):
    lm = load_model(weather_models["gru"])
    p = edgernn.save(lm.module, tmp_path / "again.pt", lm.example_input())
    again = load_model(p)
    assert again.kind == "checkpoint"
    x = lm.example_input(batch=2)
    assert torch.equal(again.module(x), lm.module(x))


def test_plain_torchscript_needs_input_shape(tmp_path):
    p = tmp_path / "plain.pt"
    torch.jit.script(SeqFirstGRU()).save(str(p))
    with pytest.raises(EdgeRNNError, match="carries no input spec; pass --input-shape"):
        load_model(p)
    lm = load_model(p, input_shape="seq=12,batch=1,3", input_dtype="float32")
    assert lm.spec.shape == [12, 1, 3] and lm.spec.batch_axis == 1


def test_pickled_module_refused_then_trusted(tmp_path):
    p = tmp_path / "whole.pt"
    torch.save(BiLSTMConv(), p)
    with pytest.raises(EdgeRNNError,
                       match=r"references tests\.user_models\.BiLSTMConv.*--trust-pickle"):
        load_model(p, input_shape="batch=1,seq=10,4")
    lm = load_model(p, trust_pickle=True, imports=("tests.user_models",),
                    input_shape="batch=1,seq=10,4")
    assert lm.kind == "pickle"


def test_pickle_that_runs_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": Evil(str(marker))}, p)
    # the message names what the pickle would call, and how to allow a trusted file
    with pytest.raises(EdgeRNNError, match=r"references getattr.*--trust-pickle"):
        load_model(p)
    assert not marker.exists()


def test_state_dict_only_is_explained(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(SeqFirstGRU().state_dict(), p)
    with pytest.raises(EdgeRNNError, match="only a state_dict"):
        load_model(p)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (random.Random(1).randbytes(2000), "not a PyTorch model file"),
        (b"\x80\x02" + b"\xbc" * 500, "not a readable PyTorch file"),
    ],
    ids=["empty", "random", "pickle-garbage"],
)
def test_bad_bytes(tmp_path, content, message):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(EdgeRNNError, match=message):
        load_model(p)


def test_truncated_checkpoint(weather_models, tmp_path):
    data = weather_models["lstm"].read_bytes()
    p = tmp_path / "trunc.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeRNNError, match="truncated or corrupt"):
        load_model(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(EdgeRNNError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(EdgeRNNError, match="is not a file"):
        load_model(tmp_path)


def test_zip_with_path_traversal_is_rejected(tmp_path):
    p = tmp_path / "trav.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", b"x")
        z.writestr("../../etc/evil", b"x")
    with pytest.raises(EdgeRNNError, match="path traversal"):
        load_model(p)


def test_proj_size_loads_and_onnx_names_it(tmp_path):
    """A projection LSTM loads (tflite-fused exports it); ONNX, whose LSTM has no projection,
    skips it with a reason that names the layer."""
    from edgernn.convert.exporting import export_model

    p = edgernn.save(ProjLSTM(), tmp_path / "proj.pt", torch.randn(1, 5, 4))
    lm = load_model(p)
    art = export_model(lm, tmp_path / "out", ["onnx"], [])["artifacts"][0]
    assert art["status"] == "skipped"
    assert art["error"] == ("layer rnn: LSTM with proj_size=4: ONNX's LSTM has no projection "
                            "(tflite-fused exports it)")
