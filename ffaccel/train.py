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

from .cli import FFAccelError, add_config_args, config_from_args, make_parser, run_main
from .data import DataError, load_dataset
from .model.checkpoint import save_checkpoint
from .model.training import fit

__all__ = ["build_parser", "main", "fit"]    # fit: re-exported from ffaccel.model.training

PROG = "ffaccel.train"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="mnist, fashion-mnist, digits, or a path (.npz / IDX folder)")
    p.add_argument("--epochs", type=int, default=10, help="FF epochs")
    p.add_argument("--head-epochs", type=int, default=None, help="OP head epochs (default: epochs)")
    p.add_argument("--seed", type=int, default=0)
    # defaults: the recipe of the MNIST 4x2000 run in docs/results.md (98.32% after 30
    # epochs). lr is the step of the RMS-input form (see ff.layer_optimizers); theta 16 keeps
    # the deep layers discriminative (scripts/recipe_ab.py compares recipes in a minute).
    p.add_argument("--lr", type=float, default=0.003, help="Adam learning rate (of the RMS-input form)")
    p.add_argument("--theta", type=float, default=16.0, help="goodness threshold on mean(h^2)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--hard-negatives", type=float, default=1.0,
                   help="probability of a hard (most plausible wrong) negative label")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on 2 cores)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--init", help="start from this checkpoint's weights (same network): continue training")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_config_args(p)
    return p


def _check_positive(name: str, v: float | int | None, lo: float = 1) -> None:
    if v is not None and not v >= lo:
        raise FFAccelError(f"{name}={v} out of range (allowed: >= {lo})")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_positive("--epochs", args.epochs)
    _check_positive("--head-epochs", args.head_epochs, 0)
    _check_positive("--batch", args.batch)
    _check_positive("--threads", args.threads)
    _check_positive("--limit", args.limit)
    if not 0.0 < args.lr < 10.0:
        raise FFAccelError(f"--lr={args.lr} out of range (allowed: 0 < lr < 10)")
    if not 0.0 <= args.hard_negatives <= 1.0:
        raise FFAccelError(f"--hard-negatives={args.hard_negatives} out of range (allowed: 0..1)")
    out = Path(args.out)
    if out.is_dir():
        raise FFAccelError(f"--out {str(out)!r} is a directory; give a checkpoint file name")
    try:
        ds = load_dataset(args.dataset)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    if getattr(args, "inputs", None) is not None and args.inputs != ds.inputs:
        raise FFAccelError(f"--inputs {args.inputs} but dataset {ds.name!r} has {ds.inputs} inputs")
    if getattr(args, "classes", None) is not None and args.classes != ds.classes:
        raise FFAccelError(f"--classes {args.classes} but dataset {ds.name!r} has {ds.classes} classes")
    cfg = config_from_args(args, inputs=ds.inputs, classes=ds.classes)

    hyper = {"epochs": args.epochs, "head_epochs": args.head_epochs or args.epochs, "seed": args.seed,
             "lr": args.lr, "theta": args.theta, "batch": args.batch,
             "hard_negatives": args.hard_negatives, "limit": args.limit, "threads": args.threads,
             "init": args.init}
    net, qcfg, meta = fit(ds, cfg, hyper, progress=not args.no_progress)
    save_checkpoint(out, net, qcfg, meta)
    float_rep, int_rep = meta["float"], meta["integer"]
    summary = {"checkpoint": str(out), "config": qcfg.to_dict(), "train_seconds": meta["train"]["seconds"],
               "float": float_rep, "integer": int_rep}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"trained {qcfg.summary()} on {ds.name} in {summary['train_seconds']:.1f} s -> {out}")
        for name, rep in (("float", float_rep), ("integer", int_rep)):
            print(f"  {name:7s} accuracy {rep['accuracy'] * 100:.2f}% with exit, "
                  f"{rep['accuracy_full'] * 100:.2f}% full depth, "
                  f"MACs/sample {rep['macs_per_sample'] / 1e6:.3f} M ({rep['mac_reduction']:.2f}x fewer)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
