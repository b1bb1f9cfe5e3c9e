"""``python -m ffaccel.train``: FF training on real data, quantisation, exit calibration.

Writes one checkpoint (atomically) holding the float weights, the config with the
integer formats and exit thresholds chosen on the validation split, and the provenance
of the data and of the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from .cli import (path_arg, check_threads, recall_text, FFAccelError, add_config_args, add_recipe_args, config_from_args, make_parser,
                  recipe_from_args, run_main, strict_int)
from .data import DataError, load_dataset
from .fsutil import OutputError, check_writable
from .model.checkpoint import checkpoint_bytes, save_checkpoint
from .model.physical import prepare as prepare_physical
from .model.training import fit

__all__ = ["build_parser", "main", "fit"]    # fit: re-exported from ffaccel.model.training

PROG = "ffaccel.train"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", type=path_arg, required=True, help="mnist, fashion-mnist, digits, ecg, wfdb:FOLDER[,window=N], or a path (.npz / IDX folder)")
    p.add_argument("--threads", type=strict_int, default=1, help="torch threads (1 is fastest on 2 cores)")
    p.add_argument("--init", type=path_arg, help="start from this checkpoint's weights (same network): continue training")
    p.add_argument("--out", type=path_arg, required=True, help="checkpoint file to write")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_recipe_args(p)
    add_config_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    check_threads(args.threads)
    out = Path(args.out)
    why = check_writable(out, folder=False)
    if why:
        raise FFAccelError(f"--out {str(out)!r} cannot be written: {why}")
    try:
        ds = load_dataset(args.dataset)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    if getattr(args, "inputs", None) is not None and args.inputs != ds.inputs:
        raise FFAccelError(f"--inputs {args.inputs} but dataset {ds.name!r} has {ds.inputs} inputs")
    if getattr(args, "classes", None) is not None and args.classes != ds.classes:
        raise FFAccelError(f"--classes {args.classes} but dataset {ds.name!r} has {ds.classes} classes")
    cfg = prepare_physical(config_from_args(args, inputs=ds.inputs, classes=ds.classes))
    why = check_writable(out, folder=False, need=checkpoint_bytes(cfg))
    if why:
        raise FFAccelError(f"--out {str(out)!r} cannot be written: {why}")

    net, qcfg, meta = fit(ds, cfg, recipe, threads=args.threads, init=args.init, progress=not args.no_progress)
    try:
        save_checkpoint(out, net, qcfg, meta)
    except OutputError as e:
        raise FFAccelError(f"--out {e}") from None
    float_rep, int_rep = meta["float"], meta["integer"]
    summary = {"checkpoint": str(out), "config": qcfg.to_dict(), "recipe": meta["recipe"],
               "train_seconds": meta["train"]["seconds"], "epochs": meta["train"]["epochs"],
               "steps": meta["train"]["steps"], "scored_layers": meta["train"]["scored_layers"],
               "float": float_rep, "integer": int_rep}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"trained {qcfg.summary()} on {ds.name} in {summary['train_seconds']:.1f} s "
              f"({summary['epochs']} epochs, {summary['steps']} steps) -> {out}")
        if qcfg.score_mask:
            tr = meta["train"]
            print(f"  scored layers {summary['scored_layers']} of {qcfg.n_layers} (validation accuracy "
                  f"{tr['val_accuracy_scored'] * 100:.2f}% vs {tr['val_accuracy_all_layers'] * 100:.2f}% "
                  f"with every layer)")
        for name, rep in (("float", float_rep), ("integer", int_rep)):
            print(f"  {name:7s} accuracy {rep['accuracy'] * 100:.2f}% with exit, "
                  f"{rep['accuracy_full'] * 100:.2f}% full depth, "
                  f"MACs/sample {rep['macs_per_sample'] / 1e6:.3f} M ({rep['mac_reduction']:.2f}x fewer)")
            print(f"          {recall_text(rep, ds.provenance.get('class_names'))}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
