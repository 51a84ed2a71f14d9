"""Loading ``model.pt``: edgernn checkpoints, TorchScript archives and (only when trusted)
pickled modules. Every failure is a one-line EdgeRNNError."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import nn

from edgernn.errors import EdgeRNNError, ExportError
from edgernn.hashing import sha256_file  # noqa: F401  (re-exported)
from edgernn.limits import check_zip
from edgernn.model import sandbox
from edgernn.model.checkpoint import CHECKPOINT_KEY, SPEC_EXTRA_FILE, read_spec_extra
from edgernn.model.signature import error_line, flat_tensors, resolve_signature
from edgernn.model.spec import (
    InputSpec,
    Signature,
    format_shape,
    parse_input,
    parse_shape,
    parse_state,
)

KINDS = ("checkpoint", "torchscript", "pickle")


@dataclass
class LoadedModel:
    """A model ready to export: eval-mode module, its input spec and where it came from."""

    module: nn.Module
    spec: InputSpec
    kind: str
    path: Path
    sha256: str
    config: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    signature: Signature | None = None  # every input/output; set by load_model
    whole: nn.Module | None = None  # a step model's whole-sequence original (export --streaming)
    chunk: int = 1  # time steps one call of a step model takes

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def sig(self) -> Signature:
        """The signature (load_model resolves it; a LoadedModel built by hand gets the
        one-input signature of its spec on first use)."""
        if self.signature is None:
            self.signature = resolve_signature(self, [], [], None)
        return self.signature

    def example_input(self, **sizes: int) -> torch.Tensor:
        """The first data input at the example shape (named axes resized by ``sizes``)."""
        shape = self.spec.with_sizes(**sizes)
        gen = torch.Generator().manual_seed(0)
        if self.spec.is_tokens:
            hi = self.spec.vocab_size or 2
            return torch.randint(0, hi, shape, generator=gen, dtype=getattr(torch, self.spec.dtype))
        return torch.randn(shape, generator=gen)

    def example_inputs(self, **sizes: int) -> list[torch.Tensor]:
        """Every input in forward's order: the data input as ``example_input``, state inputs
        random (a mid-stream state), other inputs random of their dtype."""
        gen = torch.Generator().manual_seed(1)
        out = []
        for k, t in enumerate(self.sig.inputs):
            if k == 0:
                out.append(self.example_input(**sizes))
                continue
            shape = t.with_sizes(**sizes)
            if t.dtype in ("int64", "int32"):
                hi = self.spec.vocab_size or 2
                out.append(torch.randint(0, hi, shape, generator=gen, dtype=getattr(torch, t.dtype)))
            else:
                out.append(0.5 * torch.randn(shape, generator=gen))
        return out

    def __call__(self, *inputs: Any) -> list[torch.Tensor]:
        """Run the module on positional inputs (tensors or arrays); every output tensor."""
        with torch.no_grad():
            out = self.module(*[torch.as_tensor(a) for a in inputs])
        return flat_tensors(out)

    def outputs(self, inputs: list[Any]) -> list[np.ndarray]:
        """Every output as numpy for inputs in forward's order (a ``Session.outputs`` twin, so
        PyTorch can stand where a runtime does, e.g. in a step loop)."""
        return [o.numpy() for o in self(*inputs)]

    @torch.no_grad()
    def classes(self, sample: Any) -> int:
        """Number of classes the model scores, from one forward pass on ``sample`` (model
        layout, batch 1): the first output's width; one logit column is a binary sigmoid."""
        out = self.module(torch.as_tensor(sample))
        first = out[0] if isinstance(out, (tuple, list)) else out
        width = int(first.numel() // max(1, first.shape[0])) if first.ndim else 1
        return 2 if width == 1 else width

    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


class _Program(Exception):
    """The file is a program (TorchScript, trusted pickle) and must load in the sandbox."""


class SandboxedModel(LoadedModel):
    """A model file loaded in a sandboxed worker (``edgernn.model.sandbox``): spec, signature
    and facts came back as data; ``module`` stands for the module there (calls go there)."""

    @classmethod
    def from_facts(cls, path: Path, facts: dict[str, Any], module: Any) -> SandboxedModel:
        try:
            spec = InputSpec.from_dict(facts["spec"])
            sig = Signature.from_dict(facts["signature"])
            kind = facts["kind"] if facts["kind"] in KINDS else "torchscript"
            config = facts.get("config") if isinstance(facts.get("config"), dict) else None
            meta = facts.get("meta") if isinstance(facts.get("meta"), dict) else {}
        except Exception as e:
            module.worker.close()
            raise EdgeRNNError(f"{path}: the sandboxed load returned no usable signature "
                               f"({type(e).__name__})") from None
        lm = cls(module, spec, kind, path, sha256_file(path), config, meta)  # type: ignore[arg-type]
        lm.signature = sig
        return lm

    def parameters_count(self) -> int:
        return int(self.module.facts.get("parameters") or 0)

    def close(self) -> None:
        """Stop the worker (it also stops when this object is collected or edgernn exits)."""
        self.module.worker.close()


def load_model(
    path: str | Path, *, trust_pickle: bool = False, imports: tuple[str, ...] = (),
    input_shape: str | None = None, input_dtype: str | None = None, task: str | None = None,
    inputs: tuple[str, ...] | list[str] = (), states: tuple[str, ...] | list[str] = (),
    name_axes: bool = True,
) -> LoadedModel:
    """Load any supported model file and resolve its signature: ``inputs`` are
    ``NAME:SHAPE[:DTYPE][:state]`` texts (``--input``), ``states`` ``INPUT=OUTPUT`` pairs;
    ``name_axes`` False: output axes stay unnamed (one trial run instead of one per named axis)."""
    p = Path(path)
    if not p.exists():
        raise EdgeRNNError(f"model file {p} does not exist")
    if not p.is_file():
        raise EdgeRNNError(f"{p} is not a file")
    if p.stat().st_size == 0:
        raise EdgeRNNError(f"model file {p} is empty")
    with open(p, "rb") as f:
        head = f.read(4)
    # a TorchScript archive or a trusted pickle is a program: from the CLI it runs in a sandbox
    options = {"trust_pickle": trust_pickle, "imports": imports, "input_shape": input_shape,
               "input_dtype": input_dtype, "task": task, "inputs": inputs, "states": states,
               "name_axes": name_axes}
    try:
        if head == b"PK\x03\x04":
            names = _zip_names(p)
            if any(n.split("/", 1)[-1].startswith("code/") for n in names):
                if sandbox.wanted():
                    raise _Program
                module, spec_d, meta = _load_torchscript(p)
                kind, config = "torchscript", None
            else:
                module, spec_d, meta, kind, config = _load_torch_save(p, trust_pickle, imports)
        elif head[:1] == b"\x80":
            module, spec_d, meta, kind, config = _load_torch_save(p, trust_pickle, imports)
        else:
            module = None
    except _Program:
        return sandbox.load_sandboxed(p, options)
    if module is None:
        raise EdgeRNNError(
            f"{p} is not a PyTorch model file (expected a torch.save/torch.jit.save file, "
            f"it starts with bytes {head!r})"
        )
    stored_sig = meta.pop("signature", None) if isinstance(meta, dict) else None
    given = [parse_input(t) for t in inputs]
    if given and input_shape:
        raise EdgeRNNError("pass either --input-shape (one input) or --input (each input), not both")
    if given:
        first = next((t for t in given if t.role == "data"), given[0])
        input_shape, input_dtype = format_shape(first.axes), first.dtype
        if len(first.axes) < 2 and not spec_d:
            spec_d = {"axes": [{"size": a.size, "name": a.name} for a in first.axes],
                      "dtype": first.dtype}
            input_shape = None
    spec = _resolve_spec(p, spec_d, input_shape, input_dtype, task,
                         None if spec_d or input_shape else forward_inputs(module))
    module.eval()
    lm = LoadedModel(module, spec, kind, p, sha256_file(p), config, meta)
    pairs = [parse_state(t) for t in states]
    try:
        lm.signature = resolve_signature(lm, given, pairs, stored_sig, name_axes)
    except EdgeRNNError:
        raise
    except Exception as e:
        raise run_failure(lm, e) from None
    return lm


def is_program(path: Path, trust_pickle: bool = False) -> bool:
    """True when loading ``path`` runs code from it: a TorchScript archive, or (only with
    ``trust_pickle``) a pickle that a weights-only load refuses. Unreadable zips count as
    programs (the sandbox then refuses them)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head == b"PK\x03\x04":
        try:
            if any(n.split("/", 1)[-1].startswith("code/") for n in _zip_names(path)):
                return True
        except EdgeRNNError:
            return True
    if not trust_pickle:
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        return pickle_global(str(e)) is not None
    except Exception:
        return False
    return False


def _zip_names(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:  # bad names: UnicodeError
        raise EdgeRNNError(f"{p} is truncated or corrupt (not a readable zip archive: {e})") from None
    for n in names:
        pp = PurePosixPath(n)
        if pp.is_absolute() or ".." in pp.parts or "\\" in n:
            raise EdgeRNNError(f"{p} has an unsafe member name {n!r} (path traversal); refusing it")
    check_zip(p, "model file")  # declared tensor sizes within memory, no member a zip bomb
    return names


def _load_torchscript(p: Path) -> tuple[nn.Module, dict | None, dict]:
    extra = {SPEC_EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except Exception as e:
        blocked = sandbox_blocked(e)
        if blocked:
            raise EdgeRNNError(f"{p}: loading it tried to {blocked}, which the sandbox blocks; "
                               "refused (--trust-model runs it unsandboxed: only for a file "
                               "you trust)") from None
        raise EdgeRNNError(f"{p} is a damaged TorchScript archive ({_first_line(e)})") from None
    spec_d, meta = read_spec_extra(extra[SPEC_EXTRA_FILE], p)
    return module, spec_d, meta


def _load_torch_save(p: Path, trust: bool, imports: tuple[str, ...]):
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        glob = pickle_global(msg)
        if glob is None:
            raise EdgeRNNError(f"{p} is not a readable PyTorch file ({_last_line(msg)})") from None
        if not trust:
            raise EdgeRNNError(
                f"{p} is a pickle that references {glob}: unpickling it would import and may "
                "call that code, so edgernn refuses it. If you trust the file, pass "
                "--trust-pickle (with --import MODULE so its classes resolve), or re-save the "
                "model with edgernn.save() or torch.jit.save"
            ) from None
        if sandbox.wanted():
            raise _Program from None
        return _load_trusted_pickle(p, imports)
    except _Program:
        raise
    except Exception as e:  # the restricted unpickler raises anything on a damaged stream
        raise EdgeRNNError(f"{p} is truncated or corrupt ({type(e).__name__}: "
                           f"{_first_line(e)})") from None
    if isinstance(obj, dict) and CHECKPOINT_KEY in obj:
        from edgernn.models.build import build_model

        config = obj.get("config")
        if not isinstance(config, dict) or not isinstance(obj.get("state_dict"), dict):
            raise EdgeRNNError(f"{p}: edgernn checkpoint lacks 'config' or 'state_dict'")
        try:
            module = build_model(config)
        except EdgeRNNError as e:
            raise type(e)(f"{p}: {e}") from None
        try:
            module.load_state_dict(obj["state_dict"])
        except RuntimeError as e:
            raise EdgeRNNError(f"{p}: weights do not match the config ({_first_line(e)})") from None
        return module, obj.get("input_spec"), obj.get("meta") or {}, "checkpoint", config
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeRNNError(
            f"{p} holds only a state_dict (weights without architecture); save the model with "
            "edgernn.save(model, path, example_input=...) or torch.jit.save"
        )
    if isinstance(obj, nn.Module):
        return obj, None, {}, "pickle", None
    raise EdgeRNNError(f"{p} holds a {type(obj).__name__}, not a model edgernn can load")


_GLOBAL_RE = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL|not an allowed global)"
                        r"[:\s]+(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


def pickle_global(message: str) -> str | None:
    """The ``module.name`` a restricted unpickler refused, from torch's message; None when
    the message is about something else (a damaged file)."""
    m = _GLOBAL_RE.search(message)
    if m:
        return m.group(1).rstrip(".")
    low = message.lower()
    return "a Python global" if "unsupported global" in low or "allowed global" in low else None


def _load_trusted_pickle(p: Path, imports: tuple[str, ...]):
    for mod in imports:
        import_user_module(mod)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError) as e:
        raise EdgeRNNError(
            f"{p}: the pickled model needs a class that is not importable ({_first_line(e)}); "
            "pass --import MODULE (a module name or a .py file) that defines it"
        ) from None
    except Exception as e:
        raise EdgeRNNError(f"{p} could not be unpickled ({_first_line(e)})") from None
    if not isinstance(obj, nn.Module):
        raise EdgeRNNError(f"{p} holds a {type(obj).__name__}, not an nn.Module")
    return obj, None, {}, "pickle", None


def import_user_module(name: str) -> None:
    """Import a module by dotted name or from a ``.py`` path (for trusted pickles)."""
    try:
        if name.endswith(".py"):
            path = Path(name)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise EdgeRNNError(f"--import {name}: file not found")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = mod
            spec.loader.exec_module(mod)
            # classes pickled from a script live in __main__
            main = sys.modules["__main__"]
            for k, v in vars(mod).items():
                if isinstance(v, type) and not hasattr(main, k):
                    setattr(main, k, v)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")
            importlib.import_module(name)
    except EdgeRNNError:
        raise
    except Exception as e:
        raise EdgeRNNError(f"--import {name} failed: {_first_line(e)}") from None


def forward_inputs(module: Any) -> list[str] | None:
    """The names of ``forward``'s inputs (TorchScript schema or Python signature), if known."""
    import inspect

    try:
        schema = getattr(getattr(module, "forward", None), "schema", None)
        if schema is not None:
            return [a.name for a in schema.arguments][1:]  # without self
        params = inspect.signature(module.forward).parameters.values()
        return [q.name for q in params if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError, AttributeError, RuntimeError):
        return None


def _resolve_spec(
    p: Path, spec_d: dict | None, shape: str | None, dtype: str | None, task: str | None,
    inputs: list[str] | None = None,
) -> InputSpec:
    spec = InputSpec.from_dict(spec_d) if spec_d else None
    if shape:
        spec = InputSpec(
            axes=parse_shape(shape), dtype=dtype or (spec.dtype if spec else "float32"),
            task=task or (spec.task if spec else None),
            vocab_size=spec.vocab_size if spec else None,
            num_classes=spec.num_classes if spec else None,
            horizon=spec.horizon if spec else None,
        )
    elif spec is None and inputs and len(inputs) > 1:  # a step model: every input's shape
        example = " ".join(f"--input {n}:SHAPE" for n in inputs)
        raise NoInputSpec(
            f"{p} carries no input spec and its forward takes {len(inputs)} inputs "
            f"({', '.join(inputs)}); pass {example} (e.g. --input x:batch=1,576 --input "
            "state:2,batch=1,128; named axes are dynamic, :state marks a state input)"
        )
    elif spec is None:
        raise NoInputSpec(
            f"{p} carries no input spec; pass --input-shape (e.g. batch=1,seq=64,4 where named "
            "axes are dynamic) and --input-dtype (float32 or int64)"
        )
    elif dtype:
        spec = InputSpec(spec.axes, dtype, task or spec.task, spec.vocab_size,
                         spec.num_classes, spec.horizon, spec.extra)
    if task and spec.task != task:
        spec.task = task
    return spec


class NoInputSpec(EdgeRNNError):
    """The file carries no input spec and none was given."""


def load_model_for_data(path: str | Path, x: np.ndarray,
                        options: dict[str, Any]) -> tuple[LoadedModel, dict[str, Any]]:
    """``load_model`` with ``options``; a one-input file that carries no spec and got no
    --input-shape takes its shape from the evaluation inputs ``x`` (sample-first). Returns the
    model and the options that load it again (with the shape, when it came from ``x``)."""
    try:
        return load_model(path, **options), options
    except NoInputSpec:
        shape, dtype = shape_from_data(x, options.get("input_dtype"))
        if shape is None or options.get("input_shape") or options.get("inputs"):
            raise
    options = {**options, "input_shape": shape, "input_dtype": dtype}
    return load_model(path, **options), options


def shape_from_data(x: np.ndarray, dtype: str | None) -> tuple[str | None, str | None]:
    """``--input-shape`` and dtype read off evaluation inputs ``[N, T, F]`` (features) or
    ``[N, T]`` integer ids (tokens): batch and sequence named (dynamic), batch 1; (None, dtype)
    for other shapes."""
    if x.ndim == 3 and x.dtype.kind == "f":
        return f"batch=1,seq={x.shape[1]},{x.shape[2]}", dtype or "float32"
    if x.ndim == 2 and x.dtype.kind in "iu":
        return f"batch=1,seq={x.shape[1]}", dtype or "int64"
    return None, dtype


def projection_lstm(module: nn.Module) -> str | None:
    """The first LSTM with ``proj_size`` > 0, named with its size (ONNX's LSTM has no
    projection; tflite-fused exports it), else None."""
    for name, m in module.named_modules():
        kind = type(m).__name__ if not hasattr(m, "original_name") else m.original_name
        if kind == "LSTM" and int(getattr(m, "proj_size", 0) or 0) > 0:
            return f"layer {name or 'model'}: LSTM with proj_size={m.proj_size}"
    return None


def run_failure(lm: LoadedModel, e: BaseException) -> EdgeRNNError:
    """The one-line error for a model that fails on its example inputs, naming the cause."""
    text = f"{type(e).__name__}: {e}"
    blocked = sandbox_blocked(e)
    if blocked:
        return EdgeRNNError(f"{lm.path}: calling the model tried to {blocked}, which the sandbox "
                            "blocks; refused (--trust-model runs it unsandboxed: only for a "
                            "file you trust)")
    fwd = getattr(lm.module, "forward", None)
    ann = str(getattr(fwd, "__annotations__", {})) if fwd else ""
    if "PackedSequence" in ann or "batch_sizes" in text or "PackedSequence" in text:
        return ExportError(
            "the model takes a PackedSequence input, which the exporters cannot handle; "
            "give it a forward that takes padded tensors (batch, seq, ...)")
    sig = lm.signature
    shapes = ", ".join(f"{t.name} {t.shape} {t.dtype}" for t in sig.inputs) if sig else "?"
    return EdgeRNNError(f"the model fails on an input of shape(s) {shapes}: {error_line(e)}; "
                        "check --input-shape/--input-dtype (or --input for each input)")


_BLOCKED = {"Read-only file system": "write a file", "Network is unreachable": "use the network",
            "Operation not permitted": "do something not permitted"}


def sandbox_blocked(e: BaseException) -> str | None:
    """In the sandbox: what the model tried that the sandbox stopped (from the error's text,
    with the path or address it named), else None."""
    if not sandbox.inside():
        return None
    text = str(e)
    for needle, what in _BLOCKED.items():
        if needle in text:
            line = next(x for x in text.splitlines() if needle in x).strip()
            return f"{what} ({line[:160]})"
    return None


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else type(e).__name__


def _last_line(msg: str) -> str:
    lines = [x.strip() for x in msg.strip().splitlines() if x.strip() and "Check the doc" not in x]
    return lines[-1][:200] if lines else "unreadable"
