"""``python -m ffaccel.eval``: accuracy and MACs of a checkpoint with LightFF early exit.

Thresholds T_l = mu_l - k * sigma_l come from the validation split (per class, then
averaged); the last layer always decides. ``--integer`` runs the bit-exact golden model
instead of the float network.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

import torch

from .cli import path_arg, check_threads, dataset_matching, recall_text, FFAccelError, make_parser, run_main, strict_float, strict_int
from .config import EXIT_POLICIES, MODES
from .model.checkpoint import load_checkpoint
from .model.evaluation import evaluate, report_for_k, score_splits

# evaluate, report_for_k, score_splits: re-exported from ffaccel.model.evaluation
__all__ = ["build_parser", "main", "evaluate", "report_for_k", "score_splits"]

PROG = "ffaccel.eval"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=path_arg, required=True, help="checkpoint written by ffaccel.train")
    p.add_argument("--dataset", type=path_arg, required=True, help="mnist, fashion-mnist, digits, ecg, wfdb:FOLDER[,window=N], or a path")
    p.add_argument("--mode", choices=MODES, default=None, help="must match the checkpoint's mode")
    p.add_argument("--k", type=strict_float, default=None, help="exit knob (default: the checkpoint's)")
    p.add_argument("--policy", choices=EXIT_POLICIES, default=None, help="exit rule (default: the checkpoint's)")
    p.add_argument("--integer", action="store_true", help="evaluate the integer golden model")
    p.add_argument("--limit", type=strict_int, default=None, help="first N test samples only")
    p.add_argument("--threads", type=strict_int, default=1)
    p.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise FFAccelError(f"--limit={args.limit} out of range (allowed: >= 1)")
    net, cfg, meta = load_checkpoint(args.checkpoint)
    if args.mode and args.mode != cfg.mode:
        raise FFAccelError(f"--mode {args.mode} but checkpoint {args.checkpoint!r} was trained for {cfg.mode}")
    ds = dataset_matching(args.dataset, cfg.inputs, cfg.classes, "checkpoint")
    check_threads(args.threads)
    torch.set_num_threads(args.threads)
    k = cfg.exit_k if args.k is None else args.k
    policy = args.policy or cfg.exit_policy
    rep = evaluate(net, cfg, ds, k=k, policy=policy, integer=args.integer, limit=args.limit)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{rep['model']} {cfg.summary()} on {ds.name}, {policy} rule, k={k}")
        print(f"  accuracy {rep['accuracy'] * 100:.2f}% with exit, {rep['accuracy_full'] * 100:.2f}% full depth")
        print(f"  MACs/sample {rep['macs_per_sample'] / 1e6:.3f} M vs {rep['macs_full'] / 1e6:.3f} M full "
              f"({rep['mac_reduction']:.2f}x fewer); without layer-1 sharing "
              f"{rep['macs_per_sample_noshare'] / 1e6:.3f} M vs {rep['macs_full_noshare'] / 1e6:.3f} M")
        print(f"  {recall_text(rep, ds.provenance.get('class_names'))}")
        print(f"  exit histogram {rep['exit_histogram']}, mean exit layer {rep['mean_exit_layer']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
