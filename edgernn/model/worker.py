"""The sandboxed side of ``edgernn.model.sandbox``: holds one loaded model file and answers
requests, one JSON line each (``load``, ``call``, ``export``, ``int8_bytes``); arrays and
files go through the scratch folder (argv[1]), the only place it can write.

Run only by ``Worker`` (inside bubblewrap): ``python -I -m edgernn.model.worker SCRATCH``.
Replies go to a private copy of stdout; the model's own prints land on stderr (a log)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

LAYER_KINDS = ("LSTM", "GRU", "RNN", "Linear", "Embedding", "Conv1d")
MAX_LAYERS = 2000


def main(argv: list[str]) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the model prints cannot forge a reply
    sys.stdout = sys.stderr
    scratch = Path(argv[0]).resolve()
    state: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            reply = {**handle(req, scratch, state, proto), "ok": True}
        except MemoryError:
            reply = {"ok": False, "type": "MemoryError", "error": "MemoryError"}
        except Exception as e:  # every refusal back as one line, with its type
            from edgernn.errors import EdgeRNNError

            text = str(e) if isinstance(e, EdgeRNNError) else f"{type(e).__name__}: {e}"
            lines = text.strip().splitlines() or [type(e).__name__]
            reply = {"ok": False, "type": type(e).__name__, "error": lines[0][:600]}
        proto.write(json.dumps(reply, default=str) + "\n")
    return 0


def handle(req: dict[str, Any], scratch: Path, state: dict[str, Any], proto: Any) -> dict:
    import numpy as np

    op = req.get("op")
    if op == "load":
        from edgernn.model.loading import load_model

        lm = load_model(req["path"], **req.get("options", {}))
        state["model"] = lm
        return facts(lm)
    lm = state.get("model")
    if lm is None:
        raise RuntimeError(f"request {op!r} before a model was loaded")
    if op == "call":
        with np.load(scratch / req["inputs"], allow_pickle=False) as z:
            inputs = [z[f"i{k}"] for k in range(len(z.files))]
        outs = [o.detach().numpy() for o in lm(*inputs)]
        np.savez(scratch / req["outputs"], **{f"o{k}": o for k, o in enumerate(outs)})
        return {"n": len(outs)}
    if op == "export":
        return {"manifest": export(lm, req, scratch, proto)}
    if op == "int8_bytes":
        from edgernn.convert.quantize.torch_dynamic import torch_int8_bytes

        return {"bytes": torch_int8_bytes(lm)}
    raise RuntimeError(f"unknown request {op!r}")


def facts(lm: Any) -> dict[str, Any]:
    """What the parent may know about the model without holding it."""
    import torch

    from edgernn.model.eager import DYNAMIC_TYPES

    layers = []
    dynamic = False
    for name, m in lm.module.named_modules():
        dynamic = dynamic or isinstance(m, DYNAMIC_TYPES)
        kind = getattr(m, "original_name", type(m).__name__)
        if kind in LAYER_KINDS and len(layers) < MAX_LAYERS:
            d = {"name": name, "original_name": kind}
            for a in ("hidden_size", "num_layers", "bidirectional", "proj_size", "input_size"):
                v = getattr(m, a, None)
                if isinstance(v, (bool, int)):
                    d[a] = v
            layers.append(d)
    return {"kind": lm.kind, "spec": lm.spec.to_dict(), "signature": lm.sig.to_dict(),
            "config": lm.config, "meta": lm.meta, "parameters": lm.parameters_count(),
            "layers": layers, "dynamic_layers": dynamic,
            "scripted": isinstance(lm.module, torch.jit.ScriptModule),
            "class": getattr(lm.module, "original_name", type(lm.module).__name__)}


def export(lm: Any, req: dict[str, Any], scratch: Path, proto: Any) -> dict[str, Any]:
    import numpy as np

    from edgernn.convert.exporting import export_model

    with np.load(scratch / req["arrays"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    budget = None
    if req.get("budget"):
        from edgernn.convert.quantize.accuracy_budget import AccuracyBudget

        budget = AccuracyBudget.from_request(req["budget"], arrays)

    def step(msg: str) -> None:
        proto.write(json.dumps({"step": msg}) + "\n")

    return export_model(lm, scratch / req["dir"], req["formats"], req["modes"], req["target"],
                        on_step=step, calib=arrays.get("calib"),
                        calib_source=req.get("calib_source"),
                        parity_inputs=arrays.get("parity"), budget=budget,
                        opt_in=frozenset(req.get("opt_in", ())),
                        seven_bit_weights=bool(req.get("seven_bit_weights")),
                        skip=req.get("skip") or None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
