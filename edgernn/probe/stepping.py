"""The one step loop of a streaming model: feed a step's data and the carried state, keep the
new state. Used by the export check, the probe's timing and its evaluation (numpy only: this
runs on devices)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Call = Callable[[list[np.ndarray]], list[np.ndarray]]


class Stepper:
    """Calls a model one step at a time, carrying every state output into its input."""

    def __init__(self, call: Call, plan: dict[str, Any]):
        self.call = call
        self.inputs = plan["inputs"]
        self.feed = [tuple(p) for p in plan["feed"]]
        self.prediction = int(plan.get("prediction", 0))
        self.data_idx = [k for k, t in enumerate(self.inputs) if t["role"] != "state"]
        self.reset()

    def reset(self, initial: dict[str, np.ndarray] | None = None) -> None:
        """States back to zero (or to ``initial``, by input name), as at a stream's start."""
        self.values: list[np.ndarray | None] = [None] * len(self.inputs)
        for k, _ in self.feed:
            t = self.inputs[k]
            given = (initial or {}).get(t["name"])
            self.values[k] = (np.asarray(given, dtype=t["dtype"]).reshape(t["shape"])
                              if given is not None else np.zeros(t["shape"], dtype=t["dtype"]))

    def step(self, data: list[np.ndarray]) -> list[np.ndarray]:
        """One call on the data inputs (model layout, in order) and the carried state."""
        for k, x in zip(self.data_idx, data, strict=True):
            self.values[k] = x
        outs = self.call(list(self.values))  # type: ignore[arg-type]
        for k, o in self.feed:
            self.values[k] = outs[o]
        return outs

    def layout(self, step: np.ndarray, which: int = 0) -> np.ndarray:
        """One sample's step data (no batch axis) in the model's layout (batch axis added)."""
        t = self.inputs[self.data_idx[which]]
        axis = t.get("batch_axis")
        x = np.expand_dims(step, 0 if axis is None else axis)
        return x.astype(t["dtype"], copy=False)

    def run(self, seq: np.ndarray, initial: dict[str, np.ndarray] | None = None,
            every: bool = False) -> list[np.ndarray]:
        """Run one sample's steps ``seq`` [T, *step] from a fresh state; the prediction
        output at every step, or every output at every step when ``every``."""
        self.reset(initial)
        out = []
        for t in range(len(seq)):
            o = self.step([self.layout(seq[t])])
            out.append(o if every else o[self.prediction])
        return out
