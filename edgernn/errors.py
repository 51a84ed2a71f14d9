"""One error type for the user's mistakes; the CLI turns it into one line."""

from __future__ import annotations


class EdgeRNNError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class ExportError(EdgeRNNError):
    """A model construct or setting that an exporter cannot handle."""


class RunnerError(EdgeRNNError):
    """A target or runtime failed while measuring."""


class Unsupported(EdgeRNNError):
    """A format plug-in cannot handle this model at all (a ``skipped`` row, not a failure);
    the message names the construct, e.g. ``tflite-keras cannot rebuild aten::stft at m.py:12``."""


class EdgeRNNWarning(Warning):
    """Something the user should know that does not stop the command (a stored row skipped,
    an export made again); the CLI prints it as one ``edgernn: warning:`` line."""
