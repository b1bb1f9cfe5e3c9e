#!/usr/bin/env python3
"""Training benchmark: ``python -m ffaccel.train`` with its default flags over a matrix of
data sets, shapes and modes; float and integer accuracy at full depth and with exit, the
best single layer, MAC reduction, seconds.

    python scripts/bench_training.py [--json] [--cells digits:2x128,mnist:4x500] [--modes mp,op]
                                     [--jobs 2] [--out runs/bench_training]

Each cell is what a new user gets from ``python -m ffaccel.train --dataset D --layers S
--mode M --out CKPT`` (the default ``TrainRecipe``, the only place defaults live). "best layer" is the
accuracy of the best layer scored alone (MP: its own goodness; OP: its own head); a
cumulative score that falls below it means later layers hurt the decision.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


from ffaccel.cli import FFAccelError, make_parser, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.fsutil import atomic_write_text
from ffaccel.model.embed import input_codes
from ffaccel.model.recipe import TrainRecipe
from ffaccel.model.training import fit

# what `python -m ffaccel.train` uses when no recipe flag is given
RECIPE = TrainRecipe()

PROG = "bench_training.py"
CELLS = "digits:2x128,digits:3x64,mnist:2x500,mnist:4x500,fashion-mnist:2x500,fashion-mnist:4x500"


def best_single_layer(net, cfg, ds) -> tuple[float, list[float]]:
    """Test accuracy of every layer's own score (MP goodness, OP head), scored or not."""
    own = net.layer_scores(input_codes(ds.x_test, cfg))            # (B, L, classes)
    acc = [float((own[:, l].argmax(1) == ds.y_test).mean()) for l in range(own.shape[1])]
    return max(acc), acc


def run_cell(name: str, layers: tuple, mode: str) -> dict:
    """Train one cell with the default recipe (one torch thread) and measure it."""
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds = load_dataset(name)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=layers, mode=mode)
    net, qcfg, meta = fit(ds, cfg, RECIPE, progress=False)
    best, per_layer = best_single_layer(net, cfg, ds)
    fl, it = meta["float"], meta["integer"]
    return {"dataset": name, "layers": list(layers), "mode": mode, "epochs": meta["train"]["epochs"],
            "steps": meta["train"]["steps"], "scored_layers": meta["train"]["scored_layers"],
            "float_full": fl["accuracy_full"], "float_exit": fl["accuracy"],
            "integer_full": it["accuracy_full"], "integer_exit": it["accuracy"],
            "best_single_layer_float": best, "single_layers_float": per_layer,
            "full_minus_best_layer_points": round(100 * (fl["accuracy_full"] - best), 2),
            "mac_reduction": it["mac_reduction"], "mean_exit_layer": it["mean_exit_layer"],
            "train_seconds": meta["train"]["seconds"], "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--cells", default=CELLS, help="comma-separated DATASET:LAYERS")
    p.add_argument("--modes", default="mp,op")
    p.add_argument("--out", default="runs/bench_training")
    p.add_argument("--jobs", type=int, default=2, help="cells trained at once (processes, one thread each)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cells = []
    for c in [c.strip() for c in args.cells.split(",") if c.strip()]:
        name, sep, layers = c.partition(":")
        if not sep:
            raise FFAccelError(f"--cells {c!r}: expected DATASET:LAYERS (e.g. mnist:4x500)")
        cells.append((name, parse_layers(layers)))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("mp", "op"):
            raise FFAccelError(f"--modes {m!r} (allowed: mp, op)")
    if not 1 <= args.jobs <= (os.cpu_count() or 1):
        raise FFAccelError(f"--jobs={args.jobs} out of range (allowed: 1..{os.cpu_count() or 1})")
    t_all = time.perf_counter()
    work = [(name, layers, mode) for name, layers in cells for mode in modes]
    # cells are independent: one process per core, one torch thread each (same results as
    # one after the other: every cell is seeded and single-threaded)
    if args.jobs == 1:
        rows = [run_cell(*w) for w in work]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            rows = list(ex.map(run_cell, *zip(*work)))
    for row in rows:
        if not args.json:
            layers = row["layers"]
            print(f"{row['dataset']:14s} {'x'.join(map(str, layers)) if len(set(layers)) > 1 else f'{len(layers)}x{layers[0]}':>9s} "
                  f"{row['mode']}  float {row['float_full']:.4f}/{row['float_exit']:.4f}  int {row['integer_full']:.4f}/"
                  f"{row['integer_exit']:.4f}  best layer {row['best_single_layer_float']:.4f}  "
                  f"MACs /{row['mac_reduction']:.2f}  {row['seconds']:.0f} s", file=sys.stderr)
    doc = {"recipe": RECIPE.to_dict(), "jobs": args.jobs, "cells": rows,
           "seconds": round(time.perf_counter() - t_all, 1)}
    atomic_write_text(Path(args.out) / "bench_training.json", json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
