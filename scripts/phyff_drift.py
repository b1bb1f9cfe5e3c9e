#!/usr/bin/env python3
"""Accuracy over time while a physical layer drifts, with and without in-situ retraining
(issue #19): a network with emulated physical layers is trained (default recipe, cached),
then the physical transforms take a random walk (``--drift`` per step; the network trains
at time 0, so its cached training is the study's, scripts/phyff_study.py) for
``--steps`` time steps of ``--step-size`` drift steps each. After each time step a frozen
copy and a copy retrained in situ (``--retrain-steps`` model-free FF steps on fresh
training samples through the drifted system) are scored on the first ``--samples`` test
images, float and integer (golden model).

    python scripts/phyff_drift.py [--dataset mnist] [--layers 2x500]
        [--physical random:seed=3,noise=0.02,out=196] [--drift 0.1] [--steps 20] [--step-size 1]
        [--retrain-steps 100] [--samples 2000] [--threads 2] [--json OUT] [--png OUT]

Prints one line per time step, then a summary. Both outputs are written whole or not at all.
"""

from __future__ import annotations

import io
import json
import sys

from ffaccel.cli import atomic_write_text, check_threads, make_parser, path_arg, run_main, strict_float, strict_int
from ffaccel.config import AccelConfig, ConfigError, parse_layers
from ffaccel.errors import FFAccelError
from ffaccel.fsutil import atomic_write_bytes, check_writable

PROG = "phyff_drift"
DEFAULT_SPEC = "random:seed=3,noise=0.02,out=196"


def plot(result: dict, title: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    t = [r["drift_steps"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for who, style in (("frozen", "--"), ("retrained", "-")):
        ax.plot(t, [100 * r[who]["int_full"] for r in rows], style, marker="o", ms=3, label=f"{who} (integer)")
        ax.plot(t, [100 * r[who]["float_full"] for r in rows], style, alpha=0.4, label=f"{who} (float)")
    ax.set_xlabel("drift steps of the physical layers")
    ax.set_ylabel("test accuracy at full depth (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--layers", default="2x500")
    p.add_argument("--physical", default=DEFAULT_SPEC, help=f"the emulated physical layers (default {DEFAULT_SPEC})")
    p.add_argument("--drift", type=strict_float, default=0.1,
                   help="relative random-walk step of each physical transform per drift step (default 0.1)")
    p.add_argument("--steps", type=strict_int, default=20, help="time steps")
    p.add_argument("--step-size", type=strict_int, default=1, help="drift steps per time step")
    p.add_argument("--retrain-steps", type=strict_int, default=100, help="FF optimiser steps after each time step")
    p.add_argument("--samples", type=strict_int, default=2000, help="test samples scored per time step")
    p.add_argument("--threads", type=strict_int, default=2)
    p.add_argument("--json", type=path_arg, metavar="OUT")
    p.add_argument("--png", type=path_arg, metavar="OUT")
    args = p.parse_args(argv)
    # every input checked before any work starts
    if not 0.0 < args.drift <= 1.0:
        raise FFAccelError(f"--drift={args.drift} out of range (allowed: 0 < drift <= 1)")
    for flag, v, lo in (("--steps", args.steps, 1), ("--step-size", args.step_size, 1),
                        ("--retrain-steps", args.retrain_steps, 1), ("--samples", args.samples, 1)):
        if v < lo:
            raise FFAccelError(f"{flag}={v} out of range (allowed: >= {lo})")
    check_threads(args.threads)
    for flag, out in (("--json", args.json), ("--png", args.png)):
        if out and (why := check_writable(out, folder=False)):
            raise FFAccelError(f"{flag} {out!r} cannot be written: {why}")
    from ffaccel.data import DataError, load_dataset
    try:
        ds = load_dataset(args.dataset)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=parse_layers(args.layers),
                      physical=args.physical, goodness="cos")
    from ffaccel.physical_spec import parse_spec
    if parse_spec(cfg.physical).kind != "random" or parse_spec(cfg.physical).get("drift"):
        raise ConfigError(f"--physical {args.physical!r}: the drift study needs a random emulator without drift "
                          "(--drift sets it; the network trains at time 0)")

    from ffaccel.model.cache import cached_fit
    from ffaccel.model.insitu import drift_run
    from ffaccel.model.recipe import TrainRecipe
    import torch
    recipe = TrainRecipe()
    net, qcfg, meta, path = cached_fit(ds, cfg, recipe, progress=True, threads=args.threads)
    torch.set_num_threads(args.threads)
    print(f"{ds.name} {qcfg.summary()}: trained (cache {path}); integer {meta['integer']['accuracy_full']:.2%} "
          f"full depth at time 0 on the whole test set", flush=True)

    def show(row):
        f, r = row["frozen"], row["retrained"]
        print(f"  step {row['step']:3d} (drift steps {row['drift_steps']}): frozen {f['int_full']:.2%} "
              f"(float {f['float_full']:.2%}), retrained {r['int_full']:.2%} (float {r['float_full']:.2%})",
              flush=True)

    res = drift_run(net, qcfg, ds, recipe, drift=args.drift, steps=args.steps, step_size=args.step_size,
                    retrain_steps=args.retrain_steps, samples=args.samples, progress=show)
    first, last = res["rows"][0], res["rows"][-1]
    summary = {"dataset": ds.name, "network": qcfg.summary(), "physical": qcfg.physical, "drift": args.drift,
               "steps": args.steps,
               "step_size": args.step_size, "retrain_steps": args.retrain_steps, "samples": args.samples,
               "seconds": res["seconds"], "start_int_full": first["frozen"]["int_full"],
               "end_frozen_int_full": last["frozen"]["int_full"],
               "end_retrained_int_full": last["retrained"]["int_full"],
               "min_retrained_int_full": min(r["retrained"]["int_full"] for r in res["rows"]),
               "rows": res["rows"]}
    print(f"after {args.steps * args.step_size} drift steps: frozen {summary['end_frozen_int_full']:.2%}, "
          f"retrained {summary['end_retrained_int_full']:.2%} (start {summary['start_int_full']:.2%}; "
          f"{res['seconds']:.0f} s)")
    if args.png:
        atomic_write_bytes(args.png, plot(res, f"{ds.name} {qcfg.summary()}"))
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
