"""Host runtimes agree on the same file: LiteRT and tf.lite (TensorFlow's interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

from edgernn.api import export
from edgernn.probe import runtimes


@pytest.fixture(scope="module")
def fused_lstm(weather_models, tmp_path_factory):
    pytest.importorskip("tf_keras")
    out = tmp_path_factory.mktemp("rt")
    manifest = export(weather_models["lstm"], "x86", out, ["tflite-keras"], [])
    art = manifest["artifacts"][0]
    assert art["status"] == "ok", art
    return out / art["path"]


def test_tf_lite_matches_litert_and_is_stateless(fused_lstm, weather_models):
    pytest.importorskip("tensorflow")
    x = np.load(weather_models["eval"])["x"][:20]
    lite = runtimes.load("litert", str(fused_lstm))
    tf = runtimes.load("tf.lite", str(fused_lstm))
    assert tf.runtime == "tf.lite" and tf.version.startswith("2.")
    for i in range(len(x)):
        a = lite.run(x[i:i + 1])
        b = [tf.run(x[i:i + 1]) for _ in range(3)]  # the fused LSTM keeps state unless reset
        assert np.array_equal(b[0], b[1]) and np.array_equal(b[1], b[2])
        np.testing.assert_allclose(a, b[0], atol=1e-5)
    # other sequence lengths go through resize_tensor_input on both
    long = np.repeat(x[:1], 2, axis=1)
    np.testing.assert_allclose(lite.run(long), tf.run(long), atol=1e-5)


def test_missing_runtime_says_how_to_install():
    with pytest.raises(RuntimeError, match="pip install tflite-runtime"):
        runtimes.load("tflite_runtime", "/nonexistent.tflite")
