"""The one place that reaches into cocotb's Python runner beyond its public API.

``cocotb_tools.runner`` has no public hook to add a build step or simulator arguments;
ffaccel needs both (a cached copy of Verilator's run-time objects, Icarus' ``-vcd``
argument). The private methods used here are those of cocotb 2.1, the version the
project pins; any other version is refused with a clear error instead of failing in an
unexpected way deep inside a build.
"""

from __future__ import annotations

import contextlib
import os

SUPPORTED = "2.1"


class CocotbVersionError(RuntimeError):
    pass


def check_version() -> None:
    import cocotb
    v = str(getattr(cocotb, "__version__", "?"))
    if not (v == SUPPORTED or v.startswith(SUPPORTED + ".")):
        raise CocotbVersionError(
            f"cocotb {v} is installed; ffaccel's simulation runner is written for cocotb {SUPPORTED}.x "
            f"(pip install 'cocotb=={SUPPORTED}.*')")


def get_runner(sim: str):
    check_version()
    from cocotb_tools.runner import get_runner as _get
    return _get(sim)


def insert_build_step(runner, index: int, cmd: list[str]) -> None:
    """Run ``cmd`` as the ``index``-th command of the runner's build."""
    orig = runner._build_command

    def with_step():
        cmds = list(orig())
        if len(cmds) >= index:
            cmds.insert(index, cmd)
        return cmds
    runner._build_command = with_step


def append_sim_args(runner, args: list[str]) -> None:
    """Extra arguments after the simulator command's own (the last one wins)."""
    orig = runner._get_sim_cmd_suffix
    runner._get_sim_cmd_suffix = lambda: [*orig(), *args]


@contextlib.contextmanager
def outside_pytest():
    """cocotb's runner sys.exit()s on a failed test when it sees PYTEST_CURRENT_TEST; the
    callers report failures themselves, so it is hidden for the duration."""
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
