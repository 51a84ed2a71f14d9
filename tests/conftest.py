"""Shared fixtures: small trained models and evaluation data, built once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgernn.api import train_model


@pytest.fixture(scope="session", autouse=True)
def isolated_store(tmp_path_factory):
    """Every test writes to a throwaway results store, never the user's."""
    import os

    path = tmp_path_factory.mktemp("store") / "results.db"
    old = os.environ.get("EDGERNN_DB")
    os.environ["EDGERNN_DB"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGERNN_DB", None)
    else:
        os.environ["EDGERNN_DB"] = old


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("edgernn")


@pytest.fixture(scope="session")
def weather_models(workdir) -> dict[str, Path]:
    """A trained LSTM and GRU classifier on the real weather data (few epochs, small)."""
    paths = {}
    for name, layers in (("lstm", "lstm:32"), ("gru", "gru:32")):
        out = workdir / f"{name}.pt"
        train_model("weather", layers, out, workdir / "weather.eval.npz", epochs=3, seed=0)
        paths[name] = out
    paths["eval"] = workdir / "weather.eval.npz"
    return paths


@pytest.fixture(scope="session")
def temps_model(workdir) -> dict[str, Path]:
    """A small forecaster on the real hourly temperature data."""
    out = workdir / "temps_gru.pt"
    train_model("temps", "gru:16", out, workdir / "temps.eval.npz", epochs=1, max_train=600)
    return {"model": out, "eval": workdir / "temps.eval.npz"}


@pytest.fixture(scope="session")
def tokens_model(workdir) -> dict[str, Path]:
    """A token (Embedding) mixed GRU+LSTM classifier on synthetic ids."""
    out = workdir / "tokens_mixed.pt"
    train_model("tokens", "gru:16,lstm:16", out, workdir / "tokens.eval.npz", epochs=1,
                max_train=400)
    return {"model": out, "eval": workdir / "tokens.eval.npz"}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the real entry point in-process; return (exit code, stdout, stderr)."""
    from edgernn.cli import main

    old = sys.argv
    sys.argv = ["edgernn", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def cli(args: list) -> tuple[int, str, str]:
    """Run the real entry point in-process with stdout/stderr captured (usable anywhere,
    including session-scoped fixtures); return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from edgernn.cli import main

    so, se = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["edgernn", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
            main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    return code, so.getvalue(), se.getvalue()


# -- reliability counters, printed at the end of the run (and summarised in the README) --------
RELIABILITY: dict[str, int] = {}


def count(kind: str, n: int = 1) -> None:
    RELIABILITY[kind] = RELIABILITY.get(kind, 0) + n


def pytest_configure(config):
    """The session's Ray token, in a temporary folder, before any test module imports ray."""
    import os
    import tempfile

    from tests import testbeds

    if "RAY_AUTH_TOKEN_PATH" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="edgernn-ray-"))
        os.environ.update(testbeds.ray_token(folder))
        config._ray_token_dir = folder


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_ray_token_dir", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Mark the slow tests (tests/tiers.py); ``-m "not slow"`` is the quick tier."""
    from tests.tiers import is_slow

    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("backend")
        if is_slow(item.nodeid, item.fixturenames, param):
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session):
    """Remember which test beds are up before the suite: those are the developer's."""
    from tests import testbeds

    session.config._testbeds_before = testbeds.running_now()


def pytest_sessionfinish(session, exitstatus):
    """Stop the test beds this run started, unless EDGERNN_KEEP_TESTBEDS=1."""
    import os

    from tests import testbeds

    before = getattr(session.config, "_testbeds_before", None)
    if before is None or os.environ.get(testbeds.KEEP_ENV) == "1":
        return
    session.config._testbeds_stopped = testbeds.stop_started(before)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stopped = getattr(config, "_testbeds_stopped", None)
    if stopped:
        terminalreporter.write_line(
            f"test beds stopped: {', '.join(stopped)} (EDGERNN_KEEP_TESTBEDS=1 keeps them)")
    if RELIABILITY:
        terminalreporter.section("reliability counts")
        for k in sorted(RELIABILITY):
            terminalreporter.write_line(f"{k}: {RELIABILITY[k]}")


@pytest.fixture(scope="session")
def step_kws(workdir) -> dict[str, Path]:
    """A user's scripted streaming step model (conv front end + LSTM 128) and its frames."""
    from tests.step_models import write_step_kws

    return write_step_kws(workdir / "step_kws")
