"""A converter child runs in its own session (so a timeout can kill its whole group); when
edgernn itself is killed (SIGKILL, or SIGTERM with no cleanup) the child must not run on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import os
from edgernn.convert.formats.tflite_common import ChildSettings, run_child
os.environ["EDGERNN_TEST_CHILD_FAULT"] = "hang"  # the child sleeps an hour before working
run_child("json", {}, "test conversion",
          ChildSettings(timeout_env="EDGERNN_TEST_CHILD_T", default_timeout=600,
                        fault_env="EDGERNN_TEST_CHILD_FAULT"))
"""


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (read from /proc, not from edgernn)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PDEATHSIG: Linux")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_converter_child_dies_with_a_killed_parent(sig):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 60
        kids: list[int] = []
        while not kids and time.monotonic() < deadline:
            time.sleep(0.2)
            kids = children_of(parent.pid)
        assert kids, "the converter child never started"
        (child,) = kids
        assert os.getsid(child) == child  # its own session: the parent group's kill misses it
        time.sleep(1.0)  # let it reach its fault hook (it sleeps there for an hour)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(child), "the converter child outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for k in children_of(parent.pid):
            os.kill(k, signal.SIGKILL)
