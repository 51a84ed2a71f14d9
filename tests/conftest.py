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


def built_once(tmp_path_factory, name: str, dest: Path, build) -> None:
    """``build(folder)`` writes a session artifact's files into ``folder``; put them in ``dest``.
    Under pytest-xdist the workers build it once between them (the xdist docs' pattern: a file
    lock in the run's shared temporary root; the first worker builds, the others wait for it and
    copy its files into their own ``dest``, so no two workers ever write the same folder)."""
    import os
    import shutil

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        build(dest)
        return
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # this run's, shared by its workers
    shared = root / f"shared-{name}"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not (shared / ".built").exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(shared)
            (shared / ".built").touch()
    shutil.copytree(shared, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))


@pytest.fixture(scope="session")
def weather_models(workdir, tmp_path_factory) -> dict[str, Path]:
    """A trained LSTM and GRU classifier on the real weather data (few epochs, small)."""

    def build(d: Path) -> None:
        for name, layers in (("lstm", "lstm:32"), ("gru", "gru:32")):
            train_model("weather", layers, d / f"{name}.pt", d / "weather.eval.npz", epochs=3,
                        seed=0)

    built_once(tmp_path_factory, "weather_models", workdir, build)
    return {"lstm": workdir / "lstm.pt", "gru": workdir / "gru.pt",
            "eval": workdir / "weather.eval.npz"}


@pytest.fixture(scope="session")
def temps_model(workdir, tmp_path_factory) -> dict[str, Path]:
    """A small forecaster on the real hourly temperature data."""
    built_once(tmp_path_factory, "temps_model", workdir, lambda d: train_model(
        "temps", "gru:16", d / "temps_gru.pt", d / "temps.eval.npz", epochs=1, max_train=600))
    return {"model": workdir / "temps_gru.pt", "eval": workdir / "temps.eval.npz"}


@pytest.fixture(scope="session")
def tokens_model(workdir, tmp_path_factory) -> dict[str, Path]:
    """A token (Embedding) mixed GRU+LSTM classifier on synthetic ids."""
    built_once(tmp_path_factory, "tokens_model", workdir, lambda d: train_model(
        "tokens", "gru:16,lstm:16", d / "tokens_mixed.pt", d / "tokens.eval.npz", epochs=1,
        max_train=400))
    return {"model": workdir / "tokens_mixed.pt", "eval": workdir / "tokens.eval.npz"}


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


def _xdist_worker(config) -> bool:
    """Whether this process is a pytest-xdist worker (the controller runs no tests)."""
    return hasattr(config, "workerinput")


def pytest_configure(config):
    """The session's Ray token, in a temporary folder, before any test module imports ray.
    Under xdist the controller makes it: its workers inherit the environment, so every Ray
    process of the run shares one token."""
    import os
    import tempfile

    from tests import testbeds

    if "RAY_AUTH_TOKEN_PATH" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="edgernn-ray-"))
        os.environ.update(testbeds.ray_token(folder))
        config._ray_token_dir = folder
    if not _xdist_worker(config) and getattr(config.option, "numprocesses", None):
        config._xdist_groups_dir = Path(tempfile.mkdtemp(prefix="edgernn-xdist-groups-"))


def pytest_unconfigure(config):
    import shutil

    for name in ("_ray_token_dir", "_xdist_groups_dir"):
        folder = getattr(config, name, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


# pytest-xdist (./scripts/test.sh: -n 2 --dist loadgroup): tests that share a test bed run on ONE
# worker, in the group below: the emulated Pi (one sshd in /var/tmp/edgernn-pi, fixed ports
# 22022/22023, restarted on two ports by the sweep and the inventory tests), the Android stand-in
# (/var/tmp/edgernn-android, inside the Pi's root), adb servers and ~/.android's key, PostgreSQL
# (port 55432, /var/tmp/edgernn-pg) and Ray (`ray stop --force` stops every Ray on the machine).
# Every other test is grouped by its module: a module's fixtures (TensorFlow conversions, benches)
# are built once, on one worker, and its tests keep their order.
#
# The groups reach xdist's scheduler through a file, not through xdist's own side channel: with
# pytest 9.2, pytest-xdist 3.8 can no longer append "@group" to a test's nodeid, and
# ``--dist loadgroup`` silently schedules every test on its own (pytest-dev/pytest-xdist#1386).
# Each worker writes {nodeid: group} to a folder the controller names (pytest_configure_node);
# the controller's scheduler (pytest_xdist_make_scheduler) reads it to form the work units.
TESTBED_GROUP = "testbeds"
TESTBED_TESTS = frozenset({
    "test_inventory.py::test_adb_devices_behind_one_server_all_get_their_own_answer",  # adb
})


def xdist_group_of(nodeid: str, fixtures: list[str], param: object = None) -> str:
    """The xdist_group of a test: TESTBED_GROUP for the ones using a test bed, else its module."""
    from tests.tiers import SLOW_MODULES, TESTBED_FIXTURES

    path, _, name = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    if (module in SLOW_MODULES or TESTBED_FIXTURES & set(fixtures) or param == "postgres"
            or f"{module}::{name.split('[')[0]}" in TESTBED_TESTS):
        return TESTBED_GROUP
    return module


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Mark the slow tests (tests/tiers.py); ``-m "not slow"`` is the quick tier. Give every test
    its xdist_group (used by ``--dist loadgroup``)."""
    from tests.tiers import is_slow

    groups: dict[str, list[int]] = {}  # group -> [slow tests, tests]
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("backend")
        slow = is_slow(item.nodeid, item.fixturenames, param)
        if slow:
            item.add_marker(pytest.mark.slow)
        group = xdist_group_of(item.nodeid, item.fixturenames, param)
        item.add_marker(pytest.mark.xdist_group(group))
        n = groups.setdefault(group, [0, 0])
        n[0] += slow
        n[1] += 1
    if _xdist_worker(config):
        # xdist hands out the groups in collection order (scripts/test.sh: --no-loadscope-reorder)
        # and a worker keeps a group to its end: the longest first, so neither worker is left
        # with a long one at the end. The test beds' group first, then by slow tests, then size.
        def rank(item):
            group = item.get_closest_marker("xdist_group").args[0]
            return (group != TESTBED_GROUP, -groups[group][0], -groups[group][1])

        items.sort(key=rank)  # stable: a group's tests keep their order
        folder = config.workerinput.get("edgernn_xdist_groups")
        if folder:
            import json

            mine = Path(folder) / f"{config.workerinput['workerid']}.json"
            mine.with_suffix(".tmp").write_text(json.dumps(
                {item.nodeid: item.get_closest_marker("xdist_group").args[0] for item in items}))
            mine.with_suffix(".tmp").replace(mine)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist hooks: unknown without the plugin
def pytest_configure_node(node):
    """xdist controller: tell each worker where to write its tests' groups."""
    import tempfile

    if getattr(node.config, "_xdist_groups_dir", None) is None:
        node.config._xdist_groups_dir = Path(tempfile.mkdtemp(prefix="edgernn-xdist-groups-"))
    node.workerinput["edgernn_xdist_groups"] = str(node.config._xdist_groups_dir)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: one work unit per xdist_group, read from the workers' files (see
    TESTBED_GROUP). Every worker has sent its collection before the scheduler forms the units,
    and a worker writes its file before it sends its collection."""
    if config.getvalue("dist") != "loadgroup":
        return None
    import json

    from xdist.scheduler import LoadGroupScheduling

    class FileGroupScheduling(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                files = sorted(config._xdist_groups_dir.glob("*.json"))
                self.groups = json.loads(files[0].read_text()) if files else {}
            group = self.groups.get(nodeid)
            return group if group is not None else super()._split_scope(nodeid)

    return FileGroupScheduling(config, log)


def pytest_sessionstart(session):
    """Remember which test beds are up before the suite: those are the developer's. Under
    xdist only the controller does (a worker must never stop a bed the other one uses)."""
    from tests import testbeds

    if not _xdist_worker(session.config):
        session.config._testbeds_before = testbeds.running_now()


def pytest_sessionfinish(session, exitstatus):
    """Stop the test beds this run started, unless EDGERNN_KEEP_TESTBEDS=1. An xdist worker
    hands its reliability counts to the controller instead (pytest_testnodedown)."""
    import os

    from tests import testbeds

    if _xdist_worker(session.config):
        session.config.workeroutput["edgernn_reliability"] = dict(RELIABILITY)
        return
    before = getattr(session.config, "_testbeds_before", None)
    if before is None or os.environ.get(testbeds.KEEP_ENV) == "1":
        return
    session.config._testbeds_stopped = testbeds.stop_started(before)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown without the plugin
def pytest_testnodedown(node, error):
    """xdist controller: add a finished worker's reliability counts to the run's totals."""
    for kind, n in getattr(node, "workeroutput", {}).get("edgernn_reliability", {}).items():
        count(kind, n)


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
