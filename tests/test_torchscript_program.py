"""TorchScript archives (scripted step models with prim::If) into ExportedPrograms for
litert-torch. User models are plain torch; expected values come from the ScriptModule itself
and from the LiteRT interpreter called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgernn.convert.formats.torchscript_program import exported_program
from edgernn.errors import ExportError

TOL = 1e-5


def _conv():
    return nn.Sequential(nn.Conv1d(1, 16, 9, stride=4), nn.ReLU(), nn.Conv1d(16, 32, 9, stride=4),
                         nn.ReLU(), nn.AdaptiveAvgPool1d(1))


class StepLSTM(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.conv, self.lstm, self.head = _conv(), nn.LSTM(32, hidden, batch_first=True), nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x.unsqueeze(1)).squeeze(-1).unsqueeze(1)
        y, (h, c) = self.lstm(f, (state[0:1], state[1:2]))
        return torch.sigmoid(self.head(y[:, -1])), torch.stack([h[0], c[0]])


class StepUnpack(StepLSTM):
    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x.unsqueeze(1)).squeeze(-1).unsqueeze(1)
        h, c = state[0], state[1]
        y, (h2, c2) = self.lstm(f, (h.unsqueeze(0), c.unsqueeze(0)))
        return torch.sigmoid(self.head(y[:, -1])), torch.stack([h2[0], c2[0]])


class StepGRU(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.conv, self.gru, self.head = _conv(), nn.GRU(32, hidden, batch_first=True), nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x.unsqueeze(1)).squeeze(-1).unsqueeze(1)
        y, h = self.gru(f, state)
        return torch.sigmoid(self.head(y[:, -1])), h


class Window(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 12, 3, padding=1)
        self.lstm = nn.LSTM(12, 16, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.lstm(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))
        return self.fc(y[:, -1])


STEP = {"lstm": (StepLSTM, (2, 1, 32)), "unpack": (StepUnpack, (2, 1, 32)), "gru": (StepGRU, (1, 1, 32))}


def _step(kind):
    torch.manual_seed(0)
    cls, state = STEP[kind]
    return torch.jit.script(cls().eval()), (torch.randn(1, 576), torch.zeros(state))


def _leaves(out):
    return [t.detach() for t in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("kind", sorted(STEP))
def test_scripted_step_model_matches_on_random_inputs(kind):
    sm, ex = _step(kind)
    graph_before = str(sm.graph)
    ep = exported_program(sm, ex)
    assert str(sm.graph) == graph_before  # the user's module is left alone
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        args = tuple(torch.randn(a.shape, generator=g) for a in ex)
        got, want = _leaves(ep.module()(*args)), _leaves(sm(*args))
        assert len(got) == len(want) == 2  # prediction and new state
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and float((a - b).abs().max()) <= TOL


def test_whole_window_scripted_model_still_converts():
    torch.manual_seed(0)
    sm = torch.jit.script(Window().eval())
    ep = exported_program(sm, (torch.randn(1, 20, 8),))
    x = torch.randn(1, 20, 8)
    assert float((ep.module()(x) - sm(x)).abs().max()) <= TOL


def test_litert_runs_the_step_model_with_state(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    interp_mod = pytest.importorskip("ai_edge_litert.interpreter")
    sm, ex = _step("lstm")
    edge = litert_torch.convert(exported_program(sm, ex).module(), ex)
    path = tmp_path / "step.tflite"
    edge.export(str(path))
    run = interp_mod.Interpreter(model_path=str(path)).get_signature_runner()
    x, state = torch.randn(1, 576), torch.randn(2, 1, 32)
    res = run(args_0=x.numpy(), args_1=state.numpy())
    want = _leaves(sm(x, state))
    for i, w in enumerate(want):
        np.testing.assert_allclose(res[f"output_{i}"], w.numpy(), atol=TOL)


class RareBranch(nn.Module):
    def forward(self, x):
        idx = torch.nonzero(x > 100.0)  # empty for both probe inputs
        if idx.size(0) > 0:
            return x * 2
        return x * 3


def test_value_dependent_shape_is_not_baked_in():
    sm = torch.jit.script(RareBranch())
    big = torch.full((1, 8), 200.0)
    try:
        ep = exported_program(sm, (torch.randn(1, 8),))
    except ExportError as e:
        assert "\n" not in str(e)
        return
    assert float((ep.module()(big) - sm(big)).abs().max()) == 0.0  # 200 if the size was folded


class BufferState(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.register_buffer("h", torch.zeros(1, 1, 16))

    def forward(self, x):
        y, h = self.gru(x, self.h)
        self.h = h
        return y[:, -1]


def test_state_kept_in_an_attribute_is_named():
    with pytest.raises(ExportError, match="prim::SetAttr"):
        exported_program(torch.jit.script(BufferState().eval()), (torch.randn(1, 5, 8),))
