"""``python -m ffaccel.energy``: picojoules per inference, where they go, what early exit saves.

    python -m ffaccel.energy <config flags> [--samples N --seed S | --checkpoint CKPT --dataset D --limit N]
                             [--tech 45nm] [--coeffs FILE] [--toggle-samples M] [--json] [--plots DIR]
"""

from __future__ import annotations

import argparse

import json
import sys
import time
from pathlib import Path
from typing import Sequence

from ..cli import (path_arg, FFAccelError, add_config_args, add_workload_args, config_from_args, make_parser, run_main, strict_float, strict_int,
                   workload_from_args)
from ..config import K_RANGE
from ..fsutil import check_writable, foreign_files
from .coeffs import load_coeffs
from .report import PLOT_NAMES, PLOTS_BYTES, k_sweep, report, write_plots

# k_sweep, report: re-exported from the library, ffaccel.energy.report
__all__ = ["build_parser", "main", "k_sweep", "report"]

PROG = "ffaccel.energy"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    add_workload_args(p)
    p.add_argument("--coeffs", type=path_arg, help="TOML/JSON file overriding coefficients (see --show-coeffs)")
    p.add_argument("--show-coeffs", action="store_true", help="print the coefficient table and exit")
    p.add_argument("--toggle-samples", type=strict_int, default=16, help="inferences whose toggles are computed")
    p.add_argument("--ks", default=None, help="with a checkpoint: k values for the energy-accuracy plot")
    p.add_argument("--plots", type=path_arg, help="folder for PNG plots")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    coeffs = load_coeffs(args.coeffs, cfg.tech)
    if args.show_coeffs:
        for row in coeffs.table():
            print(f"{row['name']:22s} {row['value']:>12.5g} {row['unit']:36s} {row['source']}")
        return 0
    if args.toggle_samples < 1:
        raise FFAccelError(f"--toggle-samples={args.toggle_samples} out of range (allowed: >= 1)")
    if args.plots:
        why = check_writable(Path(args.plots), folder=True, need=PLOTS_BYTES) or \
            foreign_files(Path(args.plots), set(PLOT_NAMES))
        if why:
            raise FFAccelError(f"--plots {args.plots!r} cannot be written: {why}")
    ks = None
    if args.ks is not None:                    # checked before any work
        if not args.checkpoint:
            raise FFAccelError("--ks needs --checkpoint and --dataset (accuracy needs labels)")
        try:
            ks = [strict_float(v) for v in args.ks.split(",")]
        except argparse.ArgumentTypeError:
            raise FFAccelError(f"--ks {args.ks!r} is not a comma-separated list of finite numbers") from None
        bad = [k for k in ks if not K_RANGE[0] <= k <= K_RANGE[1]]
        if bad:
            raise FFAccelError(f"--ks: k={bad[0]:g} out of range (allowed: {K_RANGE[0]:g}..{K_RANGE[1]:g}, as --k)")
    t0 = time.perf_counter()
    wl = workload_from_args(args)
    rep = report(wl, coeffs, args.toggle_samples)
    sweep = None
    if ks:
        sweep = k_sweep(args.checkpoint, args.dataset, args.limit, wl.cfg, rep, ks)
        rep["k_sweep"] = sweep
    if args.plots:
        rep["plots"] = write_plots(rep, Path(args.plots), sweep)
    for key in ("_depth", "_layers", "_setup"):
        rep.pop(key)
    rep["seconds"] = round(time.perf_counter() - t0, 2)
    rep["config"] = wl.cfg.to_dict(resolved=True)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{wl.cfg.summary()} at {coeffs.tech}, weights in {wl.cfg.weight_mem}")
    print(f"  {rep['total_pj'] / 1e6:.3f} uJ per inference with early exit, {rep['full_depth_pj'] / 1e6:.3f} uJ "
          f"full depth ({rep['full_depth_pj'] / rep['total_pj']:.2f}x); lower bound {rep['lower_bound_pj'] / 1e6:.3f} uJ "
          f"(ratio {rep['ratio_to_lower_bound']:.2f})")
    for k, v in sorted(rep["components"].items(), key=lambda kv: -kv[1]):
        print(f"    {k:16s} {v / 1e6:10.4f} uJ  {v / rep['total_pj'] * 100:5.1f}%")
    print(f"  exit histogram {rep['exit_histogram']}; EDP {rep['edp_pj_s']:.3g} pJ*s; "
          f"area model {rep['area_cells_model']:,.0f} cells, {rep['area_mm2']:.2f} mm^2 with the SRAM")
    m = rep["weight_memory"]
    if m["onchip_layers"]:
        banks = f"{m['banks']} banks of {m['bank_kib']:g} KiB" if m["bank_kib"] else "one memory"
        print(f"  weight SRAM {m['sram_kib']:,.0f} KiB ({banks}, layers {m['onchip_layers']}): "
              f"{m['e_bank_pj']:.1f} pJ per word + {m['e_wire_pj']:.1f} pJ of wires ({m['wire_mm']:.2f} mm)"
              + (f"; layers {m['dram_layers']} in DRAM" if m["dram_layers"] else ""))
    for h in rep["heads"]:           # OP exit heads, per layer (an inference that reaches it)
        print(f"  head {h['layer']} ({h['scheme']}): {h['stored_weights']:,} stored weights, "
              f"{h['macs_per_sample']:,} MACs/sample, weights {(h['weight_mem_pj'] + h['basis_gen_pj']) / 1e3:.2f} nJ, "
              f"biases {h['bias_mem_pj'] / 1e3:.3f} nJ per inference")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
