"""The user-facing error of every ffaccel layer (the bottom of the package: imports nothing).

A :class:`FFAccelError` is bad input the user can fix: the command-line tools print it as
one line, ``prog: error: ...``, and exit with status 2 (``ffaccel.cli.run_main``).
Library code raises it; it never needs the CLI module to do so.
"""

from __future__ import annotations


class FFAccelError(Exception):
    """A user-facing error: printed as one line, exit status 2."""
