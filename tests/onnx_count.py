"""An independent count of what an ONNX file stores as int8 (tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def int8_share(path: Path) -> tuple[float, set[str]]:
    """Share of weight elements stored as 8-bit integers over initializers and Constant
    tensors of >= 16 elements, in every graph (Scan/Loop bodies too), and the op types."""
    model = onnx.load(str(path))
    int8 = total = 0
    ops: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        nonlocal int8, total
        tensors = list(g.initializer)
        for n in g.node:
            ops.add(n.op_type)
            for a in n.attribute:
                if n.op_type == "Constant" and a.t.dims:
                    tensors.append(a.t)
                if a.g.node:
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)
        for t in tensors:
            size = int(np.prod(t.dims)) if t.dims else 1
            if size < 16:  # scales, zero points, shapes
                continue
            total += size
            int8 += size if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) else 0

    walk(model.graph)
    return int8 / total, ops
