"""Targets: YAML files (``targets/*.yaml``) describing a device and how to reach it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgernn.errors import EdgeRNNError

REPO_TARGETS = Path(__file__).resolve().parent.parent / "targets"

_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "runner": str, "formats": list, "runtimes": dict,
    "quantize": list, "threads": int, "cpus": list, "emulated": bool, "options": dict,
    "timeout_s": (int, float),
}


_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", int: "an integer",
               bool: "true or false"}


@dataclass
class Target:
    name: str
    runner: str
    formats: list[str]
    runtimes: dict[str, str]
    quantize: list[str] = field(default_factory=lambda: ["dynamic", "fp16"])
    threads: int = 1
    cpus: list[int] = field(default_factory=list)
    emulated: bool = False
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 900.0
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # runner-specific keys (host, port, ...)

    def runtime_for(self, fmt: str) -> str | None:
        return self.runtimes.get(fmt)


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("EDGERNN_TARGETS"):
        dirs += [Path(d) for d in os.environ["EDGERNN_TARGETS"].split(os.pathsep) if d]
    dirs += [Path.cwd() / "targets", REPO_TARGETS, Path.home() / ".config" / "edgernn" / "targets"]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def list_targets() -> dict[str, Path]:
    """Target name -> file, first found wins (EDGERNN_TARGETS, ./targets, bundled, ~/.config)."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            found.setdefault(p.stem, p)
    return found


def load_target(name_or_path: str) -> Target:
    """Load a target by name or YAML path; one-line error on anything malformed."""
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") and p.is_file()):
        known = list_targets()
        if name_or_path not in known:
            raise EdgeRNNError(
                f"unknown target {name_or_path!r}; known targets: {', '.join(sorted(known))} "
                "(or pass a path to a target .yaml)"
            )
        p = known[name_or_path]
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EdgeRNNError(f"target file {p} is not valid YAML ({_line(e)})") from None
    return parse_target(data, p)


def parse_target(data: Any, p: Path) -> Target:
    from edgernn.runners import RUNNERS

    if not isinstance(data, dict):
        raise EdgeRNNError(f"target file {p} must be a mapping of keys to values")
    for key in ("name", "runner", "formats", "runtimes"):
        if key not in data:
            raise EdgeRNNError(f"target file {p} lacks the required key {key!r}")
    for key, val in data.items():
        want = _SCHEMA.get(key)
        if want is None:
            continue
        if not isinstance(val, want) or (want is int and isinstance(val, bool)):
            tn = _TYPE_NAMES.get(want, "a number")
            raise EdgeRNNError(f"target file {p}: {key!r} must be {tn}, got {val!r}")
    if data["runner"] not in RUNNERS:
        raise EdgeRNNError(
            f"target file {p}: unknown runner {data['runner']!r}; known: {', '.join(sorted(RUNNERS))}"
        )
    from edgernn.probe.runtimes import available

    for fmt, rt in data["runtimes"].items():
        if rt not in available():
            raise EdgeRNNError(
                f"target file {p}: unknown runtime {rt!r} for {fmt}; known: {', '.join(available())}"
            )
    if data.get("threads", 1) < 1:
        raise EdgeRNNError(f"target file {p}: 'threads' must be at least 1")
    fields = {k: v for k, v in data.items()
              if k in Target.__dataclass_fields__ and k not in ("path", "extra")}
    extra = {k: v for k, v in data.items() if k not in Target.__dataclass_fields__}
    runner_cls = RUNNERS[data["runner"]]
    schema = getattr(runner_cls, "SCHEMA", {})
    for key in getattr(runner_cls, "REQUIRED", ()):
        if key not in extra:
            raise EdgeRNNError(f"target file {p}: runner {data['runner']!r} needs the key {key!r}")
    for key, val in extra.items():
        if key not in schema:
            known = ", ".join(sorted(set(_SCHEMA) | set(schema)))
            raise EdgeRNNError(f"target file {p}: unknown key {key!r} (known: {known})")
        want = schema[key]
        if not isinstance(val, want) or (want is int and isinstance(val, bool)):
            raise EdgeRNNError(
                f"target file {p}: {key!r} must be {_TYPE_NAMES.get(want, 'a number')}, got {val!r}")
    return Target(**fields, path=p, extra=extra)


def _line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
