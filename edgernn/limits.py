"""Limits on what a file may make edgernn do: YAML and JSON read with size, alias and depth
limits, zip archives (npz, model files) whose declared sizes are checked before anything is
read, and bounds for numbers that size an allocation. Every breach is a one-line
:class:`LimitError` naming the file, the limit and the fix."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edgernn.errors import EdgeRNNError

MAX_TEXT_BYTES = 1_000_000  # a YAML or JSON settings file (targets, sweeps, compare.json: KBs)
MAX_YAML_NODES = 100_000  # nodes after expanding aliases (a billion-laughs file has 10^9)
MAX_YAML_DEPTH = 64
MAX_JSON_DEPTH = 200
MAX_ZIP_RATIO = 200  # declared / compressed size of one member beyond this (and big): a bomb
BOMB_FLOOR = 64 * 2**20  # members this small may compress as well as they like


class LimitError(EdgeRNNError):
    """An input exceeds a limit edgernn sets so that a hostile file cannot hang or exhaust it."""


def memory_bytes() -> int:
    """Physical memory of this machine (bytes); 8 GB when it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def read_text(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a small settings file, refused when larger than ``limit`` bytes or
    not text."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise LimitError(f"{what} {path} is {size:,} bytes; a settings file may have at "
                             f"most {limit:,} (is it the right file?)")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise LimitError(f"{what} {path} is not UTF-8 text (byte {e.start}: "
                         f"{e.object[e.start:e.start + 1]!r}); save it as UTF-8") from None
    except OSError as e:
        raise EdgeRNNError(f"{what} {path} cannot be read ({e.strerror or type(e).__name__})") \
            from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses recursive aliases, nesting deeper than
    ``MAX_YAML_DEPTH`` and documents that expand to more than ``MAX_YAML_NODES`` nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: set[str] = set()
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise LimitError(f"recursive alias *{event.anchor} (a node that contains itself)")
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise LimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        if anchor:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            expanded = _expanded_nodes(node)
            if expanded > MAX_YAML_NODES:
                raise LimitError(f"its aliases expand to {expanded:,} nodes (at most "
                                 f"{MAX_YAML_NODES:,}: an alias bomb?)")
        return node


def _expanded_nodes(root: yaml.Node) -> int:
    """How many nodes the document has with every alias expanded (memoised per node, so a
    billion-laughs document costs its size to count, not its expansion)."""
    memo: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in memo:
            continue
        kids = _children(node)
        if done:
            memo[id(node)] = min(1 + sum(memo[id(k)] for k in kids), MAX_YAML_NODES + 1)
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in memo)
    return memo[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (safe types only) with the limits above; a one-line
    error naming ``what`` (e.g. ``target file``) on anything malformed."""
    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except LimitError as e:
        raise LimitError(f"{what} {path} is refused: {e}") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise EdgeRNNError(f"{what} {path} is not valid YAML ({first})") from None
    except RecursionError:
        raise LimitError(f"{what} {path} is refused: nested too deeply") from None


def load_json(path: Path, what: str, limit: int = 64 * MAX_TEXT_BYTES) -> Any:
    """The JSON document in ``path``, refused when larger than ``limit`` bytes, nested
    deeper than ``MAX_JSON_DEPTH`` or not JSON."""
    text = read_text(path, what, limit)
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise LimitError(f"{what} {path} is nested {depth:,} levels deep (at most "
                         f"{MAX_JSON_DEPTH}); it is not a file edgernn wrote")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise EdgeRNNError(f"{what} {path} is not valid JSON ({str(e)[:120]})") from None


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_str = escaped = False
    for c in text:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def check_zip(path: Path, what: str, budget: int | None = None) -> list[zipfile.ZipInfo]:
    """The members of a zip archive (npz, torch.save, TorchScript), refused before anything is
    decompressed when their declared sizes add up to more than ``budget`` bytes (default: half
    of this machine's memory) or one member claims to inflate more than ``MAX_ZIP_RATIO``
    times (a zip bomb)."""
    budget = budget or memory_bytes() // 2
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise EdgeRNNError(f"{what} {path} is not a readable zip archive ({e})") from None
    total = sum(i.file_size for i in infos)
    if total > budget:
        raise LimitError(f"{what} {path} declares {total / 1e9:.1f} GB of contents, more than "
                         f"edgernn reads into memory here ({budget / 1e9:.1f} GB); refused "
                         "before reading (a zip bomb, or a file for a bigger machine)")
    for i in infos:
        if i.file_size > BOMB_FLOOR and i.file_size > MAX_ZIP_RATIO * max(1, i.compress_size):
            raise LimitError(f"{what} {path}: member {i.filename!r} inflates {i.compress_size:,}"
                             f" bytes to {i.file_size:,} ({i.file_size // max(1, i.compress_size)}"
                             ":1, a zip bomb); refused before reading")
    return infos


def check_npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> None:
    """An ``.npy`` member's header must not declare more data than the member holds (a header
    claiming 10^9 samples would make numpy allocate them before noticing)."""
    import numpy as np

    try:
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            header = f.tell()
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError):
        return  # not a plain array header: numpy's own reader says what is wrong
    if dtype.hasobject:
        return  # refused by allow_pickle=False
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size - header:
        raise LimitError(f"{what}: array {info.filename!r} declares shape {list(shape)} "
                         f"{dtype} ({declared:,} bytes) but holds {info.file_size - header:,} "
                         "bytes; the file is damaged or hostile")


def bounded_int(value: Any, low: int, high: int, what: str) -> int:
    """``value`` as an int within [low, high]; a LimitError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise LimitError(f"{what} is {value:,}; it must be between {low:,} and {high:,}")
    return value


def finite_number(value: Any, what: str, low: float | None = None,
                  high: float | None = None) -> float:
    """``value`` as a finite float (within [low, high] when given); LimitError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LimitError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise LimitError(f"{what} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise LimitError(f"{what} is {value:g}; it must be at least {low:g}")
    if high is not None and value > high:
        raise LimitError(f"{what} is {value:g}; it must be at most {high:g}")
    return float(value)
