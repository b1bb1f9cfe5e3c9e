#!/usr/bin/env python3
"""Reproduce LightFF's accuracy-vs-MACs trade-off on MNIST, MP and OP, float and integer.

Trains (or loads from the cache) a 784-4x2000 Multi-Pass network and a One-Pass network,
sweeps the exit knob k of T_l = mu_l - k * sigma_l, prints a table of accuracy vs MAC
reduction and saves the plot as PNG. Checkpoints are cached under
``~/.cache/ffaccel/ckpt-<key>.ckpt`` keyed by the hash of config, recipe and data, so
benchmarks never retrain; ``--mp-checkpoint`` / ``--op-checkpoint`` use a given file.

    python scripts/reproduce_lightff.py --epochs 30 [--op-epochs 30] [recipe flags] [--out runs/lightff]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ffaccel.cli import FFAccelError, add_recipe_args, atomic_write_text, recipe_from_args, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.model.evaluation import report_for_k, score_splits
from ffaccel.model.cache import cached_fit
from ffaccel.model.embed import input_codes
from ffaccel.model.golden import GoldenModel
from ffaccel.model.quant import CALIBRATION_SAMPLES, calibrate_integer, quantize

PROG = "reproduce_lightff"


def golden_throughput(net, cfg, ds, n: int = 2000) -> dict:
    """Golden-model samples/s (full depth and with exit) and its ratio to float64 matmul speed."""
    import torch

    qm = calibrate_integer(quantize(net, cfg), input_codes(ds.x_val[:CALIBRATION_SAMPLES], cfg),
                           ds.y_val[:CALIBRATION_SAMPLES])
    gm = GoldenModel(qm)
    x = input_codes(ds.x_test[:n], cfg)
    t = time.perf_counter(); res = gm.run(x); full_s = time.perf_counter() - t
    t = time.perf_counter(); gm.run(x, early_exit=True); exit_s = time.perf_counter() - t
    # this machine's float64 matmul rate on a layer-shaped product
    a, b = np.random.rand(2000, 2000), np.random.rand(2000, 2000)
    a @ b
    t = time.perf_counter(); a @ b; mm = time.perf_counter() - t
    mm_macs = 2000 ** 3 / mm
    from ffaccel.model.exits import layer_macs
    macs = sum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, cfg.share_layer1))
    return {"samples": n, "threads": torch.get_num_threads(),
            "full_samples_per_s": round(n / full_s, 1), "exit_samples_per_s": round(n / exit_s, 1),
            "golden_macs_per_s": round(n * macs / full_s / 1e9, 3),
            "float64_matmul_macs_per_s": round(mm_macs / 1e9, 3),
            "ratio_to_matmul": round(n * macs / full_s / mm_macs, 3),
            "mean_exit_layer_k_default": float(res.exit_layer.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--mp-layers", default="4x2000")
    p.add_argument("--op-layers", default="3x2000")
    p.add_argument("--op-epochs", type=int, default=None, help="OP FF and head epochs (default: --epochs)")
    p.add_argument("--ks", default="-1,-0.5,0,0.5,1,1.5,2,3", help="comma-separated k values")
    p.add_argument("--mp-checkpoint")
    p.add_argument("--op-checkpoint")
    p.add_argument("--skip-op", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/lightff", help="folder for the PNG and JSON")
    p.add_argument("--no-progress", action="store_true")
    add_recipe_args(p)
    args = p.parse_args(argv)
    recipe = recipe_from_args(args)
    op_recipe = recipe.replace(epochs=args.op_epochs) if args.op_epochs else recipe
    try:
        ks = [float(v) for v in args.ks.split(",")]
    except ValueError:
        raise FFAccelError(f"--ks {args.ks!r} is not a comma-separated list of numbers") from None

    import torch
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    out = Path(args.out)
    results: dict = {"dataset": ds.name, "runs": {}}
    modes = [("mp", args.mp_layers, recipe, args.mp_checkpoint)]
    if not args.skip_op:
        modes.append(("op", args.op_layers, op_recipe, args.op_checkpoint))
    for mode, layers, mode_recipe, given in modes:
        if given:   # a given checkpoint decides its own network
            from ffaccel.model.checkpoint import load_checkpoint
            layers = ",".join(map(str, load_checkpoint(given)[1].layers))
        cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=parse_layers(layers), mode=mode)
        net, qcfg, meta, path = cached_fit(ds, cfg, mode_recipe, given, progress=not args.no_progress,
                                           threads=args.threads)
        run = {"checkpoint": path, "config": qcfg.summary(), "train": meta.get("train", {}), "sweep": {}}
        for integer in (False, True):
            t = time.perf_counter()
            sva, ste, _ = score_splits(net, qcfg, ds, integer=integer)
            rows = [report_for_k(sva, ste, qcfg, ds, k=k, policy=qcfg.exit_policy, integer=integer) for k in ks]
            run["sweep"]["integer" if integer else "float"] = rows
            print(f"\n{mode.upper()} {qcfg.summary()} {'integer' if integer else 'float'} "
                  f"({time.perf_counter() - t:.1f} s); full depth {rows[0]['accuracy_full'] * 100:.2f}%")
            print(f"{'k':>6} {'acc %':>7} {'MACs/sample':>12} {'reduction':>9} {'mean exit':>9}  histogram")
            for r in rows:
                print(f"{r['k']:6.2f} {r['accuracy'] * 100:7.2f} {r['macs_per_sample'] / 1e6:11.3f}M "
                      f"{r['mac_reduction']:8.2f}x {r['mean_exit_layer']:9.3f}  {r['exit_histogram']}")
        if mode == "mp":
            run["golden_throughput"] = golden_throughput(net, qcfg, ds)
            print("golden model throughput:", json.dumps(run["golden_throughput"]))
        results["runs"][mode] = run

    out.mkdir(parents=True, exist_ok=True)
    png = out / "lightff_accuracy_vs_macs.png"
    plot(results, png)
    atomic_write_text(out / "lightff.json", json.dumps(results, indent=2, sort_keys=True))
    print(f"\nplot: {png}\njson: {out / 'lightff.json'}")
    return 0


def plot(results: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, run in results["runs"].items():
        for kind, rows in run["sweep"].items():
            xs = [r["mac_reduction"] for r in rows]
            ys = [r["accuracy"] * 100 for r in rows]
            ax.plot(xs, ys, marker="o" if kind == "float" else "s", ls="-" if kind == "float" else "--",
                    label=f"{mode.upper()} {run['config'].split()[0]} {kind}")
            for r, x_, y_ in zip(rows, xs, ys):
                if kind == "integer":
                    ax.annotate(f"k={r['k']:g}", (x_, y_), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.axhline(rows[0]["accuracy_full"] * 100, lw=0.6, ls=":", color=ax.lines[-1].get_color())
    ax.set_xlabel("MAC reduction vs full depth (x, layer-1 sharing in both)")
    ax.set_ylabel("test accuracy with early exit (%)")
    ax.set_title(f"LightFF early exit on {results['dataset']} (dotted: full depth)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120, metadata={"Software": None})
    os.replace(tmp, png)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
