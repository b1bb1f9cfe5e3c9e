#!/usr/bin/env python3
"""Exit schemes side by side on the same FF layers: MP (LightFF's multi-pass goodness),
OP with learned heads (LightFF), OP with LLS heads (sin and square basis, generated on
chip). Accuracy (float and integer, full depth and with exit), mean exit layer, MACs,
stored parameters, energy per inference and area, per data set.

    python scripts/exit_heads.py [--datasets mnist,fashion-mnist] [--layers 4x500] [--epochs 10]
                                 [--energy-samples 500] [--json] [--out runs/exit_heads]

One OP network per data set is trained (FF layers, then the learned heads; cached like
every training of ffaccel), and the first four schemes use its FF layers unchanged: MP
embeds the label in the input and scores the goodness; the LLS schemes replace the learned
heads by the fixed basis. The last two train their layers with LLS's local loss for their
basis (what zero-parameter heads need: a fixed basis reads nothing useful from layers that
never learned to project onto it). Thresholds: LightFF's rule (k) on the validation split.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


from ffaccel.cli import FFAccelError, add_recipe_args, make_parser, recipe_from_args, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.energy.coeffs import load_coeffs
from ffaccel.energy.report import report
from ffaccel.fsutil import atomic_write_text
from ffaccel.model.cache import cached_fit
from ffaccel.model.embed import input_codes
from ffaccel.model.evaluation import report_for_k
from ffaccel.model.exits import exit_report
from ffaccel.model.ff import FFNet
from ffaccel.model.golden import GoldenModel
from ffaccel.model.quant import CALIBRATION_SAMPLES, calibrate_integer, choose_formats, quantize
from ffaccel.workload import Workload

PROG = "exit_heads.py"
# (scheme, layers): "ff" = the FF-trained layers of the OP network; "lls" = layers trained
# with LLS's local loss for that basis
SCHEMES = (("mp", "ff"), ("op-learned", "ff"), ("op-lls", "ff"), ("op-lls-square", "ff"),
           ("op-lls", "lls"), ("op-lls-square", "lls"))


def scheme_net(base: FFNet, scheme: str) -> FFNet:
    """The OP network's FF layers under another exit scheme."""
    cfg = base.cfg
    if scheme == "op-learned":
        return base
    # the scored layers were chosen for the learned heads: other schemes score every layer
    if scheme == "mp":
        cfg = cfg.replace(mode="mp", exit_head="learned", hfrac=(), score_mask=())
    else:
        cfg = cfg.replace(exit_head=scheme[3:], hfrac=(), score_mask=())
    net = FFNet(cfg)
    net.layers.load_state_dict(base.layers.state_dict())
    return net


def evaluate_scheme(net: FFNet, ds, args) -> dict:
    cfg = net.cfg.replace(rows=args.rows, cols=args.cols, exit_k=args.k, weight_mem=args.weight_mem)
    xtr, xva = input_codes(ds.x_train[:CALIBRATION_SAMPLES], cfg), input_codes(ds.x_val, cfg)
    xte = input_codes(ds.x_test, cfg)
    fl = report_for_k(net.scores(xva), net.scores(xte), cfg, ds, k=args.k, policy=cfg.exit_policy, integer=False)
    qcfg = choose_formats(net, xtr, ds.y_train[:CALIBRATION_SAMPLES], cfg=cfg)
    qm = calibrate_integer(quantize(net, qcfg), xva, ds.y_val, args.k)
    gm = GoldenModel(qm)
    res = gm.run(xte)
    acc_exit = float((res.label == ds.y_test).mean())
    acc_full = float((res.label_full == ds.y_test).mean())
    irep = exit_report(res.exit_layer, res.label, res.label_full, ds.y_test, qm.cfg)
    n = min(args.energy_samples, len(xte))
    wl = Workload(qm, xte[:n], ds.y_test[:n], {"dataset": ds.name, "limit": n})
    erep = report(wl, load_coeffs(tech=qm.cfg.tech), args.toggle_samples)
    layer_params = sum(int(w.size + b.size) for w, b in zip(qm.weights, qm.biases))
    heads = erep["heads"]
    head_params = sum(h["stored_weights"] + h["stored_biases"] for h in heads)
    return {
        "float": {"accuracy_full": fl["accuracy_full"], "accuracy_exit": fl["accuracy"],
                  "mean_exit_layer": fl["mean_exit_layer"]},
        "integer": {"accuracy_full": acc_full, "accuracy_exit": acc_exit, "mean_exit_layer": irep["mean_exit_layer"],
                    "macs_per_sample": irep["macs_per_sample"], "macs_full": irep["macs_full"],
                    "mac_reduction": irep["mac_reduction"], "exit_histogram": irep["exit_histogram"]},
        "params": {"layers": layer_params, "heads": head_params},
        "energy_pj": erep["total_pj"],
        "energy_full_depth_pj": erep["full_depth_pj"],
        "head_weight_energy_pj_full_depth": sum(h["weight_mem_pj"] + h["basis_gen_pj"] + h["bias_mem_pj"]
                                            for h in heads),
        "energy_components_pj": erep["components"],
        "area_cells_model": erep["area_cells_model"],
        "head_weight_words": sum(h["weight_words"] for h in heads),
        "energy_samples": n,
    }


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--datasets", default="mnist,fashion-mnist")
    p.add_argument("--layers", default="4x500")
    p.add_argument("--k", type=float, default=1.0)
    p.add_argument("--rows", type=int, default=10)
    p.add_argument("--cols", type=int, default=16)
    p.add_argument("--weight-mem", default="sram")
    p.add_argument("--energy-samples", type=int, default=500, help="test samples through the energy model")
    p.add_argument("--toggle-samples", type=int, default=10)
    p.add_argument("--out", default="runs/exit_heads")
    p.add_argument("--json", action="store_true")
    add_recipe_args(p)
    args = p.parse_args(argv)
    recipe = recipe_from_args(args)
    layers = parse_layers(args.layers)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for name, v in (("--energy-samples", args.energy_samples),
                    ("--toggle-samples", args.toggle_samples)):
        if v < 1:
            raise FFAccelError(f"{name}={v} out of range (allowed: >= 1)")
    dss = [load_dataset(n) for n in names]
    out = Path(args.out)
    doc = {"layers": list(layers), "recipe": recipe.to_dict(), "k": args.k, "array": [args.rows, args.cols],
           "weight_mem": args.weight_mem, "results": {}}
    for ds in dss:
        t0 = time.perf_counter()
        cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=layers, mode="op")
        base, _, meta, path = cached_fit(ds, cfg, recipe, progress=not args.json)
        rows, trained = {}, {"ff": (path, meta["train"]["seconds"])}
        for scheme, layers_from in SCHEMES:
            if layers_from == "ff":
                net = scheme_net(base, scheme)
            else:
                net, _, lmeta, lpath = cached_fit(ds, cfg.replace(exit_head=scheme[3:]), recipe,
                                                  progress=not args.json)
                trained[f"lls:{scheme[3:]}"] = (lpath, lmeta["train"]["seconds"])
            key = f"{scheme}/{layers_from}-layers"
            rows[key] = evaluate_scheme(net, ds, args)
            if not args.json:
                r = rows[key]
                print(f"{ds.name:14s} {key:24s} int full {r['integer']['accuracy_full']:.4f} "
                      f"exit {r['integer']['accuracy_exit']:.4f} mean exit {r['integer']['mean_exit_layer']:.2f} "
                      f"MACs {r['integer']['macs_per_sample']:,.0f} head params {r['params']['heads']:,} "
                      f"energy {r['energy_pj'] / 1e3:,.1f} nJ", file=sys.stderr)
        doc["results"][ds.name] = {"trainings": {k: {"checkpoint": p, "seconds": t} for k, (p, t) in trained.items()},
                                   "seconds": round(time.perf_counter() - t0, 1), "schemes": rows}
    atomic_write_text(out / "exit_heads.json", json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
