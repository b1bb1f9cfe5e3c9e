#!/usr/bin/env python3
"""FPGA implementation table (issue #16): the generated engine of each named config through
synthesis and place-and-route (``ffaccel.fpga``), one after the other, and the calibrated
resource / fmax model's prediction beside each measurement.

    python scripts/bench_fpga.py [--only NAME ...] [--device LFE5U-85F] [--speed 6] [--freq 100]
                                 [--build-dir build/fpga] [--json OUT] [--timeout 21600]

Configs (MNIST 784-4x2000 on 4x4, 10x16 and 16x16 arrays, the issue's small 64-2x32 engine,
a tiny one, and a narrow one with 4-bit operands), each without and with the PEs' operand
operand registers (``NAME+regs``, ``AccelConfig.fpga_regs``): see ``CONFIGS``. Tool runs are cached in
the build folder, so a second run only reports. Prints a Markdown table; ``--json`` writes
every report (and the model's predictions) to OUT.
"""

from __future__ import annotations

import json
import sys
import time

from ffaccel.cli import atomic_write_text, make_parser, path_arg, run_main
from ffaccel.config import AccelConfig
from ffaccel.errors import FFAccelError
from ffaccel.fpga.devices import lookup
from ffaccel.fpga.flow import DEFAULT_BUILD_DIR, implement
from ffaccel.fpga.model import Point, estimate, fields_config, holdout, kind, regs

PROG = "bench_fpga"
MNIST = {"inputs": 784, "classes": 10, "layers": "4x2000"}
#: name -> config fields (the table of the issue, and the calibration points of ffaccel.fpga.model)
CONFIGS = {
    "tiny": {"inputs": 8, "classes": 2, "layers": "1x4", "rows": 2, "cols": 2},
    "small": {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 10, "cols": 4},
    "narrow": {"inputs": 64, "classes": 10, "layers": "2x32", "rows": 6, "cols": 8, "abits": 4, "wbits": 4},
    "mnist-4x4": {**MNIST, "rows": 4, "cols": 4},
    "mnist-10x16": {**MNIST, "rows": 10, "cols": 16},
    "mnist-16x16": {**MNIST, "rows": 16, "cols": 16},
}
# each again with the multipliers' operand registers (AccelConfig.fpga_regs): the engines
# the FPGA flow is for; ffaccel.fpga.model fits each kind on its own points
CONFIGS.update({f"{name}+regs": {**fields, "fpga_regs": True} for name, fields in list(CONFIGS.items())})


def config(name: str) -> AccelConfig:
    return fields_config(CONFIGS[name])


def point(name: str, rep: dict) -> Point:
    """A calibration point of ffaccel.fpga.model from a placed run's report."""
    return Point(name, dict(CONFIGS[name]), luts=rep["luts"], ffs=rep["ffs"], dsps=rep["dsps"],
                 lut_pes=rep["pe_products_in_luts"], brams=rep["brams"], fmax_mhz=rep["fmax_mhz"])


def row(name: str, rep: dict, est: dict | None) -> str:
    cp = rep.get("critical_path") or {}
    path = f"`{cp.get('from')}` -> `{cp.get('to')}`" if cp else "-"
    fits = "yes" if rep["fits"] else f"no ({rep['reason']})"
    sec = rep["seconds"]
    return (f"| {name} | {rep['config']} | {rep['luts'] or '-'} | {rep['ffs'] or '-'} | {rep['dsps']} | "
            f"{rep['pe_products_in_luts']} | {rep['brams']} | {rep['fmax_mhz'] or '-'} | {path} | {fits} | "
            f"{sec['synth']} + {sec['pnr']} | " + (f"{est['luts']:,d} / {est['ffs']:,d} / {est['dsps']} / "
                                                 f"{est['brams']} / {est['fmax_mhz']} |" if est else "- |"))


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="configs to run (default: all)")
    p.add_argument("--device", default="LFE5U-85F")
    p.add_argument("--speed", type=int, default=None, help="speed grade (default: the slowest)")
    p.add_argument("--freq", type=float, default=100.0, help="target clock (MHz)")
    p.add_argument("--build-dir", type=path_arg, default=str(DEFAULT_BUILD_DIR))
    p.add_argument("--json", type=path_arg, metavar="OUT")
    p.add_argument("--timeout", type=float, default=6 * 3600.0,
                   help="seconds per tool run (the MNIST 10x16 placement ran past 2 hours on 2 shared cores)")
    args = p.parse_args(argv)
    if not (args.timeout > 0 and args.timeout != float("inf")):
        raise FFAccelError(f"--timeout={args.timeout} out of range (allowed: > 0 s)")
    dev, package, speed = lookup(args.device, None, args.speed)
    names = args.only or list(CONFIGS)
    out = {"device": dev.name, "package": package, "speed": speed, "target_mhz": args.freq, "rows": {}}
    print("| name | config | LUT4 | FF | MULT18X18D | PE products in LUTs | DP16KD | fmax MHz | critical path | "
          "fits | tool s (synth + P&R) | model: LUT / FF / DSP / BRAM / fmax |")
    print("| --- " * 12 + "|")
    for name in names:
        cfg = config(name)
        t0 = time.perf_counter()
        rep = implement(cfg, dev, package, speed, freq_mhz=args.freq, build_dir=args.build_dir, timeout=args.timeout,
                        progress=lambda phase: print(f"  {name}: {phase}", file=sys.stderr, flush=True))
        rep["seconds"]["total"] = round(time.perf_counter() - t0, 1)
        try:
            est = estimate(cfg, dev)
        except ValueError:              # the model is not calibrated yet (its points come from here)
            est = None
        out["rows"][name] = {"report": rep, "model": est}
        print(row(name, rep, est), flush=True)
    # the model refitted without each measured point in turn, predicting it
    points = tuple(point(name, r["report"]) for name, r in out["rows"].items() if r["report"]["fits"])
    # (each kind of engine, with or without the operand registers, on its own points)
    held = [pt for pt in points if len(kind(points, regs(pt))) >= 4]
    if held:
        out["leave_one_out"] = {}
        print("\n| held out | LUT4 error | FF error | MULT18X18D error | DP16KD error | fmax error |")
        print("| --- " * 6 + "|")
        for pt in held:
            h = out["leave_one_out"][pt.name] = holdout(pt.name, points)
            e = h["error"]
            print(f"| {pt.name} | {e['luts']:+.1%} | {e['ffs']:+.1%} | {e['dsps']:+.1%} | {e['brams']:+.1%} | "
                  f"{e['fmax_mhz']:+.1%} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
