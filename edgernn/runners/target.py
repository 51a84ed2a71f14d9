"""Targets: YAML files (``targets/*.yaml``) describing a device and how to reach it.

A target is found by file name or by one of the ``aliases`` its file lists (case-insensitive;
``_``, spaces and ``-`` are the same). A file may leave keys its runner requires unset when it
says in ``setup`` how to set them (a template such as ``rpi``): it exports, and the first
runner to read such a key gets that one line as its error.

A file may also describe a GROUP of identical boards (``devices:``, ``hosts:``, ``serials:`` or,
for the local runner, ``count:``); ``edgernn.runners.inventory.devices`` expands it into one Target per
device. A plain file is a group of one device. What each runner allows (its keys, its group
shorthand, ``count``, its device ids) is declared by its class (``edgernn.runners.base``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.limits import finite_number, load_yaml

# the runner classes are registered: importing this module ran edgernn/runners/__init__.py
from edgernn.runners.base import RUNNERS, runner_class

REPO_TARGETS = Path(__file__).resolve().parents[2] / "targets"

_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "runner": str, "formats": list, "runtimes": dict,
    "quantize": list, "threads": int, "cpus": list, "emulated": bool, "options": dict,
    "timeout_s": (int, float), "aliases": list, "setup": str,
    "count": int, "devices": list, "int8_saturates": bool,
}  # and each runner's group shorthand (hosts, serials): a list


def _shorthands() -> dict[str, tuple[str, str]]:
    """Group shorthand keys (one device per list item) -> (runner, the runner key each item
    sets on its device), as the registered runner classes declare them; sorted by key."""
    found = {cls.GROUP_SHORTHAND[0]: (name, cls.GROUP_SHORTHAND[1])
             for name, cls in RUNNERS.items() if cls.GROUP_SHORTHAND}
    return dict(sorted(found.items()))


def _group_keys() -> tuple[str, ...]:
    return ("devices", *_shorthands())


def _file_schema() -> dict[str, type | tuple[type, ...]]:
    """The keys every target file may set (whatever its runner) -> their types."""
    return {**_SCHEMA, **dict.fromkeys(_shorthands(), list)}


_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", int: "an integer",
               bool: "true or false"}


class RunnerKeys(dict):
    """Runner-specific keys of a target. Reading a required key that the file leaves unset
    raises the target's one-line ``setup`` hint (a RunnerError) instead of a KeyError."""

    unset_message: str = ""
    unset_keys: frozenset[str] = frozenset()

    def __missing__(self, key: str) -> Any:
        if key in self.unset_keys:
            raise RunnerError(self.unset_message)
        raise KeyError(key)


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
    aliases: list[str] = field(default_factory=list)
    setup: str = ""  # one line: how to make the target measurable (when ``unset`` is not empty)
    unset: list[str] = field(default_factory=list)  # required runner keys the file leaves unset
    count: int = 1  # local runner: measurement slots on this host
    group: list[dict[str, Any]] = field(default_factory=list)  # per-device overrides (+ "id")
    device_id: str = ""  # set on a device's Target (edgernn.runners.inventory.devices) and plain targets
    # the device's CPU saturates 8-bit int8 products (x86 without VNNI); None: the runner knows
    int8_saturates: bool | None = None

    def seven_bit_weights(self) -> bool:
        """Whether int8 files for this target store 7-bit weights: the file's
        ``int8_saturates``, else what the runner knows of the device (``Runner.int8_saturates``)."""
        if self.int8_saturates is not None:
            return self.int8_saturates
        return runner_class(self.runner).int8_saturates(self.extra)

    def __post_init__(self) -> None:
        self.extra = RunnerKeys(self.extra)
        if self.unset:
            self.extra.unset_keys = frozenset(self.unset)
            self.extra.unset_message = (
                f"target {self.name} names no device ({', '.join(self.unset)} not set; it can "
                f"export but not measure): {self.setup}")

    def runtime_for(self, fmt: str) -> str | None:
        return self.runtimes.get(fmt)

    def require_device(self) -> None:
        """Raise the one-line setup hint when the file leaves a required runner key unset."""
        if self.unset:
            raise RunnerError(self.extra.unset_message)


_YAML_FIELDS = set(Target.__dataclass_fields__) - {"path", "extra", "unset", "group", "device_id"}


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


def norm(name: str) -> str:
    """Lower case, with runs of ``_``, ``-`` and spaces as one ``-``: how names are compared."""
    return re.sub(r"[\s_-]+", "-", name.strip().lower())


@dataclass(frozen=True)
class TargetEntry:
    """A target file found on the search path, with the aliases that lead to it."""

    name: str
    path: Path
    aliases: tuple[str, ...]


def _declared_aliases(p: Path) -> list[str]:
    try:
        data = load_yaml(p, "target file")
    except EdgeRNNError:
        return []
    al = data.get("aliases") if isinstance(data, dict) else None
    return [a for a in al if isinstance(a, str) and a.strip()] if isinstance(al, list) else []


def target_index() -> list[TargetEntry]:
    """Every target by name, with its aliases; a name beats an alias, an earlier file a later
    one (an alias that another target already claims is dropped)."""
    files = list_targets()  # in search order
    taken = {norm(n) for n in files}
    out = []
    for name, p in files.items():
        mine = []
        for a in _declared_aliases(p):
            if norm(a) not in taken:
                taken.add(norm(a))
                mine.append(a)
        out.append(TargetEntry(name, p, tuple(mine)))
    return sorted(out, key=lambda e: e.name)


def target_listing() -> list[tuple[str, Path]]:
    """(label, file) per target for ``edgernn targets``; the label shows the aliases."""
    return [(e.name + (f" (aliases: {', '.join(e.aliases)})" if e.aliases else ""), e.path)
            for e in target_index()]


def resolve_target(name: str) -> Path:
    """The file of target ``name`` (a name or alias, any case); one-line error naming the
    known targets and the closest one when there is none."""
    index = target_index()
    key = norm(name)
    for e in index:
        if norm(e.name) == key:
            return e.path
    owner = {norm(a): e for e in index for a in e.aliases}
    if key in owner:
        return owner[key].path
    words = {norm(e.name): e.name for e in index} | {a: e.name for a, e in owner.items()}
    close = difflib.get_close_matches(key, list(words), n=1, cutoff=0.6)
    hint = f"did you mean {words[close[0]]}? " if close else ""
    known = ", ".join(e.name for e in index) or "none"
    raise EdgeRNNError(f"unknown target {name!r}; {hint}known targets: {known} "
                       "(or pass a path to a target .yaml)")


def load_target(name_or_path: str) -> Target:
    """Load a target by name, alias or YAML path; one-line error on anything malformed."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and not p.is_file() and (os.sep in name_or_path
                                                             or p.exists()):
        raise EdgeRNNError(f"target file {p} does not exist (or is not a file)")
    if not (p.suffix in (".yaml", ".yml") and p.is_file()):
        p = resolve_target(name_or_path)
    return parse_target(load_yaml(p, "target file"), p)


def parse_target(data: Any, p: Path) -> Target:
    if not isinstance(data, dict):
        raise EdgeRNNError(f"target file {p} must be a mapping of keys to values")
    for key in ("name", "runner", "formats", "runtimes"):
        if key not in data:
            raise EdgeRNNError(f"target file {p} lacks the required key {key!r}")
    file_schema, group_keys = _file_schema(), _group_keys()
    for key, val in data.items():
        want = file_schema.get(key)
        if want is None:
            continue
        if not isinstance(val, want) or (want is int and isinstance(val, bool)):
            tn = _TYPE_NAMES.get(want, "a number")
            raise EdgeRNNError(f"target file {p}: {key!r} must be {tn}, got {val!r}")
    _check_values(data, p)
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
    fields = {k: v for k, v in data.items() if k in _YAML_FIELDS}
    extra = {k: v for k, v in data.items() if k not in _YAML_FIELDS and k not in group_keys}
    runner_cls = RUNNERS[data["runner"]]
    schema = runner_cls.SCHEMA
    unset = [k for k in runner_cls.REQUIRED if k not in extra]
    for a in data.get("aliases", []):
        if not isinstance(a, str) or not a.strip():
            raise EdgeRNNError(f"target file {p}: 'aliases' must be a list of names, got {a!r}")
    for key, val in extra.items():
        if key not in schema:
            known = ", ".join(sorted(set(file_schema) | set(schema)))
            raise EdgeRNNError(f"target file {p}: unknown key {key!r} (known: {known})")
        want = schema[key]
        if not isinstance(val, want) or (want is int and isinstance(val, bool)):
            raise EdgeRNNError(
                f"target file {p}: {key!r} must be {_TYPE_NAMES.get(want, 'a number')}, got {val!r}")
        _check_runner_value(runner_cls, key, val, p, repr(key))
    short = runner_cls.GROUP_SHORTHAND[0] if runner_cls.GROUP_SHORTHAND else None
    for item in data.get(short) or [] if short else []:
        if isinstance(item, str):
            _check_runner_value(runner_cls, short, item, p, repr(short))
    _check_cpus(data.get("cpus", []), p, "'cpus'")
    group = _parse_group(data, extra, schema, p)
    if group:
        unset = _group_unset(group, unset, p)
    if unset and not str(data.get("setup", "")).strip():
        raise EdgeRNNError(f"target file {p}: runner {data['runner']!r} needs the key {unset[0]!r}")
    t = Target(**fields, path=p, extra=extra, unset=unset, group=group)
    if not group and t.count == 1:
        t.device_id = default_id(t)
        return t
    ids = [d.id for d in devices(t)]  # validates: ids unique within the group
    per_device = [k for k in runner_cls.REQUIRED if k not in extra]
    if per_device:  # only each device's Target can open a runner
        t.extra.unset_keys = frozenset(per_device)
        t.extra.unset_message = (f"target {t.name} is a group of {len(ids)} devices "
                                 f"({', '.join(ids)}); this needs one device's target")
    return t


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]{0,63}$")
_LISTS_OF_NAMES = ("formats", "quantize", "aliases")
_BOUNDS = {"threads": (1, 1024), "count": (1, 256)}


def _check_values(data: dict[str, Any], p: Path) -> None:
    """Values, not just types: names that are safe in file names and terminals, lists of
    names, a runtime name per format, numbers within bounds and finite."""
    name = data["name"]
    if not _NAME_RE.match(name):
        raise EdgeRNNError(f"target file {p}: 'name' {name!r} must be 1-64 letters, digits and "
                           "'.', '_', '+', '@', '-' (it names files and rows), starting with a "
                           "letter or digit")
    for key in _LISTS_OF_NAMES:
        for item in data.get(key) or []:
            if not isinstance(item, str) or not item.strip():
                raise EdgeRNNError(f"target file {p}: {key!r} must be a list of names, got "
                                   f"{item!r} in it")
    if not data["formats"]:
        raise EdgeRNNError(f"target file {p}: 'formats' is empty; list at least one format")
    for fmt, rt in data["runtimes"].items():
        if not isinstance(fmt, str) or not isinstance(rt, str):
            raise EdgeRNNError(f"target file {p}: 'runtimes' must map format names to runtime "
                               f"names, got {fmt!r}: {rt!r}")
    if "timeout_s" in data:
        finite_number(data["timeout_s"], f"target file {p}: 'timeout_s'", 0.001, 7 * 86400.0)
    for key, (low, high) in _BOUNDS.items():
        if key in data and data[key] < low:
            raise EdgeRNNError(f"target file {p}: {key!r} must be at least {low}, got {data[key]}")
        if key in data and data[key] > high:
            raise EdgeRNNError(f"target file {p}: {key!r} is {data[key]}; it must be at most "
                               f"{high}")


def _check_runner_value(runner_cls: Any, key: str, val: Any, p: Path, where: str) -> None:
    problem = runner_cls.value_problem(key, val)
    if problem:
        raise EdgeRNNError(f"target file {p}: {where}: {problem}")


def _check_cpus(val: Any, p: Path, what: str) -> None:
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in val):
        raise EdgeRNNError(f"target file {p}: {what} must list CPU ids (integers >= 0), got {val!r}")


def _parse_group(data: dict[str, Any], extra: dict[str, Any], schema: dict[str, Any],
                 p: Path) -> list[dict[str, Any]]:
    """The per-device overrides of a target group (``[]`` for a plain target), validated."""
    runner = data["runner"]
    runner_cls, shorthands = RUNNERS[runner], _shorthands()
    given = [k for k in _group_keys() if k in data]
    if len(given) > 1:
        raise EdgeRNNError(f"target file {p}: set only one of {', '.join(given)} "
                           "(each lists the group's devices)")
    count = data.get("count", 1)
    if count < 1:
        raise EdgeRNNError(f"target file {p}: 'count' must be at least 1, got {count}")
    if count > 1 and not runner_cls.ON_HOST:
        way = f"{runner_cls.GROUP_SHORTHAND[0]}: [...]" if runner_cls.GROUP_SHORTHAND else ""
        raise EdgeRNNError(
            f"target file {p}: 'count' is for the local runner's slots on this host; list the "
            f"{runner} devices instead ({way + ' or ' if way else ''}devices: [{{id: ..., ...}}])")
    if not given:
        return []
    key = given[0]
    if count > 1:
        raise EdgeRNNError(f"target file {p}: set either 'count' or {key!r}, not both")
    items = data[key]
    if not items:
        raise EdgeRNNError(f"target file {p}: {key!r} is an empty list (list at least one device)")
    if key in shorthands:
        want_runner, runner_key = shorthands[key]
        if runner != want_runner:
            raise EdgeRNNError(f"target file {p}: {key!r} is for the {want_runner} runner (this "
                               f"target's runner is {runner}); list devices: [...] instead")
        if runner_key in extra:
            raise EdgeRNNError(f"target file {p}: set either {runner_key!r} or {key!r}, not both")
        for v in items:
            if not isinstance(v, str) or not v.strip():
                raise EdgeRNNError(f"target file {p}: {key!r} must list names, got {v!r}")
        return [{runner_key: v.strip()} for v in items]
    allowed = {**schema, "cpus": list}
    group = []
    for i, d in enumerate(items):
        where = f"devices[{i}]"
        if not isinstance(d, dict):
            raise EdgeRNNError(f"target file {p}: {where} must be a mapping like {{id: ..., "
                               f"{next(iter(schema), 'cpus')}: ...}}, got {d!r}")
        for k, v in d.items():
            if k == "id":
                if not isinstance(v, str) or not v.strip():
                    raise EdgeRNNError(f"target file {p}: {where}.id must be a name, got {v!r}")
                continue
            if k not in allowed:
                known = ", ".join(["id", *sorted(allowed)])
                raise EdgeRNNError(f"target file {p}: {where} sets {k!r}, which a {runner} "
                                   f"device cannot override (known: {known})")
            want = allowed[k]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise EdgeRNNError(f"target file {p}: {where}.{k} must be "
                                   f"{_TYPE_NAMES.get(want, 'a number')}, got {v!r}")
            if k == "cpus":
                _check_cpus(v, p, f"{where}.cpus")
            else:
                _check_runner_value(runner_cls, k, v, p, f"{where}.{k}")
        group.append({k: (v.strip() if k == "id" else v) for k, v in d.items()})
    return group


def _group_unset(group: list[dict[str, Any]], unset: list[str], p: Path) -> list[str]:
    """A group names its devices: every device must set the required keys the file leaves
    unset (then nothing is unset any more)."""
    for i, d in enumerate(group):
        missing = [k for k in unset if k not in d]
        if missing:
            who = f"device {d['id']!r}" if "id" in d else f"devices[{i}]"
            raise EdgeRNNError(f"target file {p}: {who} sets no {missing[0]!r} (the file leaves "
                               "it unset, so every device must set it)")
    return []


def _line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


# -- a target file's devices (a group of boards, or local slots) ------------------------------
@dataclass(frozen=True)
class Device:
    id: str
    target: Target


def default_id(t: Target, index: int | None = None) -> str:
    """The id its runner class gives a device: ``<name>@<host>:<port>`` (ssh),
    ``<name>@<serial>`` (adb), ``<name>#<i>`` (local slot i), else ``<name>``; a template that
    names no device is ``<name>``."""
    return runner_class(t.runner).device_id(t.name, t.extra, index)


def _device(t: Target, overrides: dict[str, Any], index: int | None, cpus: list[int]) -> Device:
    over = {k: v for k, v in overrides.items() if k not in ("id", "cpus")}
    dt = dataclasses.replace(t, extra={**t.extra, **over}, cpus=list(overrides.get("cpus", cpus)),
                             group=[], count=1, unset=list(t.unset))
    dt.device_id = str(overrides.get("id") or default_id(dt, index))
    return Device(dt.device_id, dt)


def devices(t: Target) -> list[Device]:
    """The devices of target (group) ``t``, in file order; a plain target is one device."""
    if t.group:
        slots = runner_class(t.runner).ON_HOST  # numbered slots of this host
        out = [_device(t, d, i if slots else None, t.cpus) for i, d in enumerate(t.group)]
    elif t.count > 1:
        pin = len(t.cpus) >= t.count
        out = [_device(t, {}, i, [t.cpus[i]] if pin else t.cpus) for i in range(t.count)]
    else:
        dt = dataclasses.replace(t)
        dt.device_id = t.device_id or default_id(t)
        return [Device(dt.device_id, dt)]
    seen: dict[str, int] = {}
    for i, d in enumerate(out):
        if d.id in seen:
            raise EdgeRNNError(f"target file {t.path}: devices {seen[d.id]} and {i} have the same "
                               f"id {d.id!r}; give each device its own id")
        seen[d.id] = i
    return out
