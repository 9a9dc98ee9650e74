"""Run-wide switches read from the environment (read when called, never at import)."""

from __future__ import annotations

import os

__all__ = ["quick_mode"]


def quick_mode() -> bool:
    """True when ``RPL_QUICK`` is set to a true value: notebooks and CI run small versions."""
    value = os.environ.get("RPL_QUICK", "0").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"RPL_QUICK must be 0 or 1, got {value!r}")
