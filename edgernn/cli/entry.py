"""The entry point: user errors become one line and exit 1; Ctrl-C exits 130."""

from __future__ import annotations

import os
import sys

import click
from rich.markup import escape as rich_escape

from edgernn.cli.app import cli, err
from edgernn.errors import EdgeRNNError


def main() -> None:
    """Entry point: user errors become one line and exit 1; Ctrl-C exits 130."""
    from edgernn.model import sandbox

    sandbox.configure(sandbox=True)  # model files that are programs run sandboxed (--trust-model)
    try:
        cli.main(standalone_mode=False)
    except EdgeRNNError as e:
        err.print(f"[red]edgernn: error:[/] {rich_escape(str(e))}", highlight=False, soft_wrap=True)
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
    except Exception as e:  # a bug, not the user's fault: still one line unless debugging
        if os.environ.get("EDGERNN_DEBUG"):
            raise
        err.print(f"edgernn: internal error: {type(e).__name__}: "
                  f"{rich_escape(str(e).splitlines()[0][:300])} "
                  "(set EDGERNN_DEBUG=1 for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
    finally:
        sandbox.reset()
