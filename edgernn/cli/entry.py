"""The entry point: user errors become one line and exit 1; Ctrl-C exits 130."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.markup import escape as rich_escape

from edgernn.cli.app import cli, err
from edgernn.errors import EdgeRNNError, EdgeRNNWarning
from edgernn.names import shown


def main() -> None:
    """Entry point: user errors become one line and exit 1; Ctrl-C exits 130."""
    from edgernn.model import sandbox

    sandbox.configure(sandbox=True)  # model files that are programs run sandboxed (--trust-model)
    try:
        with warnings_after_the_command():
            cli.main(standalone_mode=False)
    except EdgeRNNError as e:
        _line(f"[red]edgernn: error:[/] {rich_escape(_text(e))}")
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("edgernn: interrupted; finished rows were kept")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("edgernn: interrupted; finished rows were kept")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:  # a path that cannot be read or written (permissions, a full disk)
        if os.environ.get("EDGERNN_DEBUG"):
            raise
        where = f": {shown(str(e.filename))}" if e.filename else ""
        _line(f"[red]edgernn: error:[/] {rich_escape(e.strerror or _text(e))}"
              f"{rich_escape(where)}; check the path, its permissions and free space")
        sys.exit(1)
    except MemoryError as e:  # an input too big for this machine: say so, in one line
        if os.environ.get("EDGERNN_DEBUG"):
            raise
        _line(f"[red]edgernn: error:[/] out of memory ({rich_escape(_text(e))}); use smaller "
              "inputs, fewer samples or a machine with more memory")
        sys.exit(1)
    except ValueError as e:
        if "null byte" not in str(e) or os.environ.get("EDGERNN_DEBUG"):
            _internal(e)
        _line("[red]edgernn: error:[/] an argument or path contains a NUL byte; "
              "pass it without one")
        sys.exit(1)
    except Exception as e:  # a bug, not the user's fault: still one line unless debugging
        _internal(e)
    finally:
        sandbox.reset()


def _internal(e: Exception) -> None:
    """A bug, not the user's fault: one line (the traceback with EDGERNN_DEBUG=1)."""
    if os.environ.get("EDGERNN_DEBUG"):
        raise e
    _line(f"edgernn: internal error: {type(e).__name__}: {rich_escape(_text(e))} "
          "(set EDGERNN_DEBUG=1 for the traceback)")
    sys.exit(1)




LINE_LIMIT = 400  # characters of an error's message shown on its one line


def _text(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty),
    control characters escaped; a longer line loses its middle, not its end (edgernn's own
    messages end with what to do: long paths must not cut that off)."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return shown(clip_middle(lines[0]) if lines else type(e).__name__)


def clip_middle(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` within ``limit`` characters: its start and end with `` ... `` between."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 3 // 5
    return f"{text[:head]} ... {text[-(limit - 5 - head):]}"


def _line(text: str) -> None:
    err.print(text, highlight=False, soft_wrap=True)


@contextmanager
def warnings_after_the_command() -> Iterator[None]:
    """edgernn's own warnings (``EdgeRNNWarning``) print at once as ``edgernn: warning:``
    lines; a library's warnings (torch, numpy...) are held and shown, once each, only when
    the command succeeds, so they never precede or bury a refusal line."""
    held: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, EdgeRNNWarning):
            _line(f"edgernn: warning: {rich_escape(shown(str(message)))}")
            return
        first = str(message).strip().splitlines()
        text = f"{category.__name__}: {first[0] if first else ''}"
        if text not in held:
            held.append(text)

    with warnings.catch_warnings():  # the filters in force stay, but edgernn's always show
        warnings.simplefilter("always", EdgeRNNWarning)
        warnings.showwarning = show
        yield
        for text in held:
            _line(f"edgernn: note from a library: {rich_escape(shown(text[:300]))}")
