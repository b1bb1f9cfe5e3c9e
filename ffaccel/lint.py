"""Lint and compile checks of generated RTL: Verilator ``--lint-only -Wall`` warnings by type
(with the waiver list below) and an Icarus compile. ``python -m ffaccel.lint DIR [--json]``
exits 0 when there are no errors and no unwaived warnings, 1 otherwise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from .cli import FFAccelError, make_parser, run_main
from .sim.tools import verilator_bin

PROG = "ffaccel.lint"

# Warnings that Amaranth's Verilog back end produces by construction, with the reason
# they are safe. Anything else counts as an unwaived warning.
WAIVERS = {
    "PROCASSINIT": "Amaranth gives every register its reset value as a declaration initialiser",
    "CASEINCOMPLETE": "Array indexing by a value whose range is not a power of two; the default keeps the old value",
    "UNUSEDSIGNAL": "Amaranth keeps the full width of intermediate arithmetic; unused high bits are trimmed by synthesis",
    "WIDTHEXPAND": "Amaranth's arithmetic widens operands implicitly (its semantics are width-exact)",
    "WIDTHTRUNC": "Amaranth emits `!x` for `x == 0` on multi-bit values and truncating assignments on purpose",
    "DECLFILENAME": "one file holds the engine and its submodules",
}


def lint(folder: str | Path, top: str) -> dict:
    folder = Path(folder)
    srcs = sorted(str(p) for p in folder.glob("*.v"))
    if not srcs:
        raise FFAccelError(f"no Verilog files in {str(folder)!r}")
    vb = verilator_bin()
    r = subprocess.run([vb, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top, *srcs],
                       capture_output=True, text=True)
    kinds = Counter(re.findall(r"%Warning-([A-Z_]+)", r.stderr))
    errors = len(re.findall(r"%Error", r.stderr))
    out = {"verilator_errors": errors, "verilator_rc": r.returncode,
           "warnings": dict(sorted(kinds.items())),
           "unwaived": {k: v for k, v in kinds.items() if k not in WAIVERS},
           "waivers": WAIVERS}
    iv = shutil.which("iverilog")
    if iv:
        ri = subprocess.run([iv, "-g2012", "-o", os.devnull, "-s", top, *srcs], capture_output=True, text=True)
        out["icarus_rc"] = ri.returncode
        out["icarus_errors"] = ri.stderr.strip().splitlines()[:5]
    else:
        out["icarus_rc"] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("folder", help="output folder of ffaccel.gen")
    p.add_argument("--top", default=None, help="top module (default: the manifest's)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    top = args.top
    if top is None:
        mf = Path(args.folder) / "manifest.json"
        if not mf.is_file():
            raise FFAccelError(f"{str(mf)!r} not found: give --top or a folder written by ffaccel.gen")
        try:
            top = json.loads(mf.read_text())["top"]
            if not isinstance(top, str) or not top.isidentifier():
                raise TypeError(top)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise FFAccelError(f"{str(mf)!r} is not a manifest written by ffaccel.gen "
                               f"({type(e).__name__}: no valid 'top')") from None
    if not top.isidentifier():
        raise FFAccelError(f"--top {top!r} is not a Verilog module name")
    modules = set()
    for v in Path(args.folder).glob("*.v"):
        try:
            modules |= set(re.findall(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", v.read_text(errors="replace"),
                                      re.M))
        except OSError:
            pass
    if modules and top not in modules:
        raise FFAccelError(f"--top {top!r}: no such module in {str(args.folder)!r} "
                           f"(modules: {', '.join(sorted(modules)[:5])}{', ...' if len(modules) > 5 else ''})")
    rep = lint(args.folder, top)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"verilator: {rep['verilator_errors']} errors; warnings by type: {rep['warnings']}")
        print(f"unwaived warnings: {rep['unwaived'] or 'none'}; icarus compile rc={rep['icarus_rc']}")
    ok = (rep["verilator_errors"] == 0 and rep["verilator_rc"] == 0 and not rep["unwaived"]
          and rep["icarus_rc"] in (0, None))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
