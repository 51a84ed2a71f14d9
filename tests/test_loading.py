"""Loading model.pt: checkpoints, TorchScript, refused and trusted pickles, bad files."""

from __future__ import annotations

import random
import zipfile

import pytest
import torch

import edgernn
from edgernn.errors import EdgeRNNError, ExportError
from edgernn.loading import load_model
from tests.user_models import BiLSTMConv, Evil, ProjLSTM, SeqFirstGRU


def test_checkpoint_roundtrip_keeps_outputs_and_spec(weather_models):
    lm = load_model(weather_models["lstm"])
    assert lm.kind == "checkpoint"
    assert lm.spec.task == "classify" and lm.spec.num_classes == 2
    assert lm.spec.to_dict()["shape"] == "batch=1,seq=14,4"
    x = lm.example_input(batch=3, seq=20)
    again = load_model(weather_models["lstm"]).module(x)
    assert torch.equal(lm.module(x), again)


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
    with pytest.raises(EdgeRNNError, match="unpickling can run arbitrary code.*--trust-pickle"):
        load_model(p, input_shape="batch=1,seq=10,4")
    lm = load_model(p, trust_pickle=True, imports=("tests.user_models",),
                    input_shape="batch=1,seq=10,4")
    assert lm.kind == "pickle"


def test_pickle_that_runs_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": Evil(str(marker))}, p)
    with pytest.raises(EdgeRNNError, match="pickled Python object"):
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


def test_proj_size_is_named(tmp_path):
    p = edgernn.save(ProjLSTM(), tmp_path / "proj.pt", torch.randn(1, 5, 4))
    with pytest.raises(ExportError, match="proj_size=4 is not supported"):
        load_model(p)
