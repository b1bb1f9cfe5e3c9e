#!/usr/bin/env python3
"""Binary stochastic FF against real-valued FF on the same engine (issue #17): each network
shape trained as ReLU FF and as BSFF (``--bsff-k`` tied units per weight row) on each data
set with the default recipe (then 2 epochs of quantisation-aware fine-tuning at the weight
width), quantised, its exit thresholds calibrated, the first ``--verify-samples`` test
images checked on the generated RTL (random stalls), then on the test set: integer
accuracy at full depth and with early exit, MACs (BSFF: weight adds), weight reads,
energy per inference (45 nm model; BSFF also with p-bits drawing the bits), area.

The engine is the co-design study's (docs/results.md, "Co-design"): MP, 10x16, zero
skipping, batches of 8, 4-bit weights in 2 KiB SRAM banks.

    python scripts/bsff_vs_relu.py [--dataset mnist,fashion-mnist] [--layers 2x500]
                                   [--bsff-k 1,3] [--limit N] [--verify-samples 16]
                                   [--sim verilator|icarus] [--threads 2] [--json OUT]

Prints one line per design, then a table and the energy ratios. Exit status 1 when the
RTL disagrees with the golden model on any sample.
"""

from __future__ import annotations

import argparse
import json
import sys

from ffaccel.cli import (add_design_args, atomic_write_text, check_design_args, dataset_matching, design_kwargs,
                         make_parser, run_main, strict_float)
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.errors import FFAccelError
from ffaccel.model.recipe import TrainRecipe

PROG = "bsff_vs_relu"
RECIPE = {"qat_epochs": 2}
ENGINE = {"mode": "mp", "rows": 10, "cols": 16, "zero_skip": True, "weight_mem": "sram", "onchip_kib": 2048,
          "batch": 8, "sram_bank_kib": 2, "wbits": 4}
K_EXIT = 1.0


def design(ds, layers: tuple, k: int | None) -> AccelConfig:
    """ReLU (``k`` None) or BSFF with ``k`` tied units, on the study's engine."""
    neuron = {} if k is None else {"neuron": "bsff", "bsff_k": k, "abits": k.bit_length()}
    return AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=layers, exit_k=K_EXIT, **ENGINE, **neuron)


def _csv(text: str, flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise FFAccelError(f"{flag} {text!r}: empty")
    return items


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist,fashion-mnist", help="data sets, comma-separated")
    p.add_argument("--layers", action="append", default=None, metavar="SPEC",
                   help="network shape (repeatable; default 2x500)")
    p.add_argument("--bsff-k", default="1,3", help="BSFF tied units per weight row, comma-separated (1..4)")
    p.add_argument("--bsff-target", default=None,
                   help="BSFF goodness targets to train each BSFF design at, comma-separated (default: the "
                        "recipe's); a lower target makes fewer units fire: fewer weight reads under zero skipping")
    add_design_args(p, verify_samples=16)
    args = p.parse_args(argv)
    # every input checked before any work starts
    shapes = [parse_layers(s) for s in (args.layers or ["2x500"])]
    ks = []
    for t in _csv(args.bsff_k, "--bsff-k"):
        if not t.isdigit() or not 1 <= int(t) <= 4:
            raise FFAccelError(f"--bsff-k {t!r} (allowed: 1..4)")
        ks.append(int(t))
    targets: list[float | None] = [None]
    if args.bsff_target is not None:
        targets = []
        for t in _csv(args.bsff_target, "--bsff-target"):
            try:
                v = strict_float(t)
            except argparse.ArgumentTypeError as e:
                raise FFAccelError(f"--bsff-target: {e}") from None
            targets.append(TrainRecipe(**RECIPE, bsff_target=v).bsff_target)     # (out of range: one line)
    check_design_args(args)
    datasets = [dataset_matching(name, 784, 10, PROG) for name in _csv(args.dataset, "--dataset")]
    for ds in datasets:
        for layers in shapes:
            for k in [None] + ks:
                design(ds, layers, k)               # a bad combination: one line, before any training

    from ffaccel.design import measure_design

    rows = []
    for ds in datasets:
        for layers in shapes:
            for k, target in [(None, None)] + [(k, t) for k in ks for t in targets]:
                cfg = design(ds, layers, k)
                recipe = TrainRecipe(**RECIPE) if target is None else TrainRecipe(**RECIPE, bsff_target=target)
                r = measure_design(cfg, recipe, ds, k=K_EXIT, **design_kwargs(args))
                r["units"] = "relu" if k is None else f"bsff k={k}" + (f" target {target:g}" if target else "")
                rows.append(r)
                ok = r["rtl"]["samples"] - r["rtl"]["mismatches"]
                print(f"{ds.name} {cfg.summary()}: {r['accuracy_full']:.2%} full depth, {r['accuracy']:.2%} "
                      f"with exit, {r['energy_uj'] * 1000:.1f} nJ per inference; RTL {ok}/{r['rtl']['samples']} "
                      f"bit-exact ({r['rtl']['sim']})", flush=True)
    ratios = []
    for r in rows:
        if r["neuron"] != "bsff":
            continue
        base = next(b for b in rows if b["neuron"] == "relu" and b["dataset"] == r["dataset"]
                    and b["layers"] == r["layers"])
        c, cb = r["energy_components_uj"], base["energy_components_uj"]
        ratios.append({"dataset": r["dataset"], "layers": r["layers"], "units": r["units"],
                       "energy": base["energy_uj"] / r["energy_uj"],
                       "energy_pbit": base["energy_uj"] / r["energy_pbit_uj"],
                       "arithmetic": cb["pe_mult"] / c["pe_mult"],
                       "weight_reads": base["weight_reads_per_sample"] / r["weight_reads_per_sample"],
                       "accuracy_points": 100 * (r["accuracy"] - base["accuracy"])})
    print("\n| data | network | units | accuracy full | with exit | MACs / sample | PE ops / sample | "
          "weight reads / sample | "
          "energy / inference | with p-bits | PE products | sampler | weight memory | area | RTL |")
    print("| --- " * 15 + "|")
    for r in rows:
        c = r["energy_components_uj"]
        net = "784-" + "-".join(str(v) for v in r["layers"])
        pb = f"{r['energy_pbit_uj'] * 1000:.1f} nJ" if "energy_pbit_uj" in r else "-"
        print(f"| {r['dataset']} | {net} | {r['units']} | {r['accuracy_full']:.2%} | {r['accuracy']:.2%} | "
              f"{r['macs_per_sample']:,.0f} | {r['pe_ops_per_sample']:,.0f} | {r['weight_reads_per_sample']:,.0f} | {r['energy_uj'] * 1000:.1f} nJ | "
              f"{pb} | {c['pe_mult'] * 1000:.2f} nJ | {c['sampler'] * 1000:.2f} nJ | "
              f"{c['weight_mem'] * 1000:.1f} nJ | {r['area_mm2']:.2f} mm^2 | "
              f"{r['rtl']['samples'] - r['rtl']['mismatches']}/{r['rtl']['samples']} |")
    print("\nWeight reads skipped per layer (inputs that were 0):")
    for r in rows:
        print(f"  {r['dataset']} {r['units']}: " + ", ".join(f"layer {i + 1} {v:.0%}" for i, v in
                                                          enumerate(r["weight_reads_skipped"]) if v is not None))
    print("\n| data | network | units | ReLU / BSFF energy | with p-bits | PE products only | weight reads | "
          "accuracy (points) |")
    print("| --- " * 8 + "|")
    for q in ratios:
        net = "784-" + "-".join(str(v) for v in q["layers"])
        print(f"| {q['dataset']} | {net} | {q['units']} | {q['energy']:.2f}x | {q['energy_pbit']:.2f}x | "
              f"{q['arithmetic']:.1f}x | {q['weight_reads']:.2f}x | {q['accuracy_points']:+.2f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"designs": rows, "ratios": ratios}, indent=2) + "\n")
    return 0 if all(r["rtl"]["mismatches"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
