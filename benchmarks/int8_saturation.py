"""ONNX dynamic int8 on an x86 CPU without VNNI: 8-bit vs 7-bit weights, all-int8 vs the first
LSTM layer left fp32, on a speaker-encoder-shaped model (3 stacked LSTM 256 over 160 frames x 40
log-mel-like features, Linear 256 + ReLU + L2 norm, cosine scores against 20 enrolled vectors;
untrained, seed 0). Accuracy only: the share of the 64 inputs whose best-scoring "speaker" is
the fp32 model's, and the max |score - fp32 score|. onnxruntime's own ``quantize_dynamic``
(after ``quant_pre_process``), called directly, so the numbers say what the runtime does on
this CPU, not what edgernn chooses.

    python benchmarks/int8_saturation.py   # -> benchmarks/results/int8_saturation.json
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgernn.probe.main import device_facts  # noqa: E402
from edgernn.runners.local import VNNI_FLAGS, cpu_flags, x86_without_vnni  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "int8_saturation.json"


class SpeakerEncoder(torch.nn.Module):
    def __init__(self, speakers: int = 20):
        super().__init__()
        self.lstm = torch.nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.proj = torch.nn.Linear(256, 256)
        self.enrolled = torch.nn.Parameter(F.normalize(torch.randn(speakers, 256), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = F.normalize(F.relu(self.proj(self.lstm(x)[0][:, -1])), dim=1)
        return e @ self.enrolled.t()


def main() -> None:
    torch.manual_seed(0)
    model = SpeakerEncoder().eval()
    rng = np.random.default_rng(0)
    # log-mel-like: a per-utterance level plus frame noise, roughly -12..4
    x = (rng.normal(-4, 3, (64, 1, 40)) + rng.normal(0, 2, (64, 160, 40))).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    d = Path(tempfile.mkdtemp(prefix="edgernn-sat-"))
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(d / "fp32.onnx"), dynamo=False,
                      opset_version=17, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    quant_pre_process(str(d / "fp32.onnx"), str(d / "pre.onnx"))
    lstms = [n.name for n in onnx.load(str(d / "pre.onnx")).graph.node if n.op_type == "LSTM"]
    rows = []
    for seven_bit in (False, True):
        for first_fp32 in (False, True):
            q = d / f"q{int(seven_bit)}{int(first_fp32)}.onnx"
            quantize_dynamic(str(d / "pre.onnx"), str(q), weight_type=QuantType.QInt8,
                             reduce_range=seven_bit, nodes_to_exclude=lstms[:1] if first_fp32 else None)
            sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
            got = sess.run(None, {"x": x})[0]
            rows.append({"weights": "7-bit" if seven_bit else "8-bit",
                         "first_lstm_fp32": first_fp32,
                         "agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
                         "max_abs_score_diff": float(np.abs(got - ref).max())})
            r = rows[-1]
            print(f"{r['weights']} weights, first LSTM fp32={first_fp32!s:5}: agreement "
                  f"{r['agreement']:.3f}, max |score diff| {r['max_abs_score_diff']:.4f}")
    flags = cpu_flags()
    cpu = device_facts().get("cpu_model") or platform.processor()
    OUT.write_text(json.dumps({
        "cpu": cpu, "machine": platform.machine(), "x86_without_vnni": x86_without_vnni(),
        "vnni_flags_present": [f for f in VNNI_FLAGS if f in flags],
        "onnxruntime": ort.__version__, "torch": torch.__version__, "samples": len(x),
        "rows": rows}, indent=2))
    print(f"cpu {cpu}; x86 without VNNI: {x86_without_vnni()}; -> {OUT}")


if __name__ == "__main__":
    main()
