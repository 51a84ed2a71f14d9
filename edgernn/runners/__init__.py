"""Runner plug-ins: how a target's variants are measured (local subprocess, SSH, adb)."""

from edgernn.runners import adb as _adb  # noqa: F401
from edgernn.runners import local as _local  # noqa: F401
from edgernn.runners import ssh as _ssh  # noqa: F401
from edgernn.runners.base import RUNNERS, Runner, get_runner, register_runner, sub_variants

__all__ = ["RUNNERS", "Runner", "get_runner", "register_runner", "sub_variants"]
