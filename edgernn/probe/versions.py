"""Installed versions of modules (stdlib only: works on a device that lacks numpy)."""

from __future__ import annotations


def version_of(module_name: str) -> str | None:
    """Installed version of a module, or None when it cannot be imported."""
    try:
        mod = __import__(module_name, fromlist=["__version__"])
    except Exception:
        return None
    return str(getattr(mod, "__version__", "unknown"))
