#!/usr/bin/env python3
"""Quantisation-aware fine-tuning against plain rounding (issue #15): one network trained
once with the recipe, then for each weight width the integer accuracy of (a) the float
network rounded to the width's grid and (b) the same network after ``--qat-epochs`` of
fine-tuning with its weights on that grid. Exit thresholds, scored layers and formats are
chosen as ``ffaccel.train`` chooses them.

    python scripts/qat_ab.py [--dataset mnist] [--layers 1x500] [--mode mp] [--widths 2,3,4,6,8]
                             [--qat-epochs 2] [recipe flags] [--threads 2] [--json OUT]

Prints a Markdown table; ``--json`` writes it to OUT.
"""

from __future__ import annotations

import copy
import json
import sys
import time

from ffaccel.cli import (add_recipe_args, atomic_write_text, make_parser, path_arg, recipe_from_args, run_main,
                         strict_int)
from ffaccel.config import AccelConfig, ConfigError, WBITS_RANGE, parse_layers
from ffaccel.errors import FFAccelError
from ffaccel.fsutil import check_writable

PROG = "qat_ab"


def parse_widths(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise FFAccelError(f"--widths {text!r}: expected weight widths like 2,4,8") from None
    if not out or any(not WBITS_RANGE[0] <= w <= WBITS_RANGE[1] for w in out):
        raise FFAccelError(f"--widths {text!r}: each width must be in {WBITS_RANGE[0]}..{WBITS_RANGE[1]}")
    return out


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--layers", default="1x500")
    p.add_argument("--mode", choices=("mp", "op"), default="mp")
    p.add_argument("--widths", default="2,3,4,6,8")
    p.add_argument("--threads", type=strict_int, default=2)
    p.add_argument("--json", type=path_arg, metavar="OUT")
    add_recipe_args(p)
    args = p.parse_args(argv)
    widths = parse_widths(args.widths)
    try:
        layers = parse_layers(args.layers)
    except ConfigError as e:
        raise FFAccelError(str(e)) from None
    recipe = recipe_from_args(args)
    if not recipe.qat_epochs:
        recipe = recipe.replace(qat_epochs=2)
    if args.threads < 1:
        raise FFAccelError(f"--threads={args.threads} out of range (allowed: >= 1)")
    if args.json and (why := check_writable(args.json, folder=False)):
        raise FFAccelError(f"--json {args.json!r} cannot be written: {why}")
    from ffaccel.data import DataError, load_dataset
    try:
        ds = load_dataset(args.dataset)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    import torch
    from ffaccel.model.embed import input_codes
    from ffaccel.model.ff import FFNet, train_ff
    from ffaccel.model.qat import fine_tune
    from ffaccel.model.training import finish
    torch.set_num_threads(args.threads)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=layers, mode=args.mode)
    xtr, ytr = recipe.subset(input_codes(ds.x_train, cfg), ds.y_train)
    t0 = time.perf_counter()
    net = FFNet(cfg, seed=recipe.seed)
    log = train_ff(net, xtr, ytr, recipe, progress=False)
    mask = "auto" if recipe.score_layers == "auto" else ()
    rows = []
    print(f"{args.dataset} {cfg.inputs}-{args.layers} {args.mode.upper()}: {log.epochs} epochs in {log.seconds:.0f} s, "
          f"then {recipe.qat_epochs} QAT epochs per width")
    print("| weight bits | float full depth | plain rounding: integer full / exit | wfrac | "
          "QAT: integer full / exit | wfrac | QAT s |")
    print("| --- " * 7 + "|")
    for w in widths:
        wcfg = cfg.replace(wbits=w)
        plain = copy.deepcopy(net)
        plain.cfg = wcfg
        _, _, frep, qm, irep = finish(plain, wcfg, ds, xtr, ytr, mask)
        tuned = copy.deepcopy(net)
        tuned.cfg = wcfg
        t1 = time.perf_counter()
        fine_tune(tuned, xtr, ytr, recipe, w, progress=False)
        qat_s = time.perf_counter() - t1
        _, _, _, qm2, irep2 = finish(tuned, wcfg, ds, xtr, ytr, mask)
        row = {"wbits": w, "float_full": frep["accuracy_full"],
               "plain_full": irep["accuracy_full"], "plain_exit": irep["accuracy"], "plain_wfrac": list(qm.cfg.wfrac),
               "qat_full": irep2["accuracy_full"], "qat_exit": irep2["accuracy"], "qat_wfrac": list(qm2.cfg.wfrac),
               "qat_seconds": round(qat_s, 1)}
        rows.append(row)
        print(f"| {w} | {row['float_full']:.2%} | {row['plain_full']:.2%} / {row['plain_exit']:.2%} | "
              f"{row['plain_wfrac']} | {row['qat_full']:.2%} / {row['qat_exit']:.2%} | {row['qat_wfrac']} | "
              f"{qat_s:.0f} |", flush=True)
    doc = {"dataset": args.dataset, "layers": list(layers), "mode": args.mode, "recipe": recipe.key(),
           "train_seconds": round(log.seconds, 1), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
