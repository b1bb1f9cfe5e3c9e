"""``python -m ffaccel.import``: an FF network trained with other public code -> ffaccel checkpoint.

``--format mpezeshki|loewex STATE_DICT --classes N --out CKPT``: the state dict's layers are
converted (ffaccel.model.importers), the conversion is checked against the code base's own
float inference on the same inputs (max abs difference of the goodness scores), and the
network is quantised and calibrated on ``--dataset`` as a trained one would be; the report
gives their float accuracy, ffaccel's float accuracy on their inputs and on ffaccel's
unsigned pixel codes, and the integer (hardware) accuracy.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

import numpy as np
import torch

from .cli import FFAccelError, check_threads, dataset_matching, make_parser, path_arg, run_main, strict_int
from .fsutil import OutputError, check_writable
from .model.checkpoint import checkpoint_bytes, load_torch_file, save_checkpoint
from .model.embed import input_codes
from .model.exits import cumulative
from .model.importers import (FORMATS, OFFSETS, convert, ffaccel_scores_on, parse_state,
                              reference_scores, their_inputs)
from .model.training import finish

PROG = "ffaccel.import"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("state_dict", type=path_arg, metavar="STATE_DICT", help="file saved with torch.save")
    p.add_argument("--format", choices=FORMATS, required=True, help="the code base it was trained with")
    p.add_argument("--classes", type=strict_int, required=True, help="number of classes (label slots)")
    p.add_argument("--out", type=path_arg, required=True, help="ffaccel checkpoint to write")
    p.add_argument("--dataset", type=path_arg, default="mnist",
                   help="data to check, quantise and calibrate on (default: mnist)")
    p.add_argument("--offset", choices=OFFSETS, default="fold",
                   help="their mean/std input offset on ffaccel's unsigned codes: drop it, or fold its "
                        "mean effect into layer 1 (default: fold; docs/results.md)")
    p.add_argument("--compare", type=strict_int, default=1000, help="test samples of the goodness comparison")
    p.add_argument("--threads", type=strict_int, default=1)
    p.add_argument("--json", action="store_true")
    return p


def _load_state(path: str) -> dict:
    obj = load_torch_file(path, "state dict")
    if not isinstance(obj, dict):
        raise FFAccelError(f"state dict {path!r} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_threads(args.threads)
    if args.compare < 1:
        raise FFAccelError(f"--compare={args.compare} out of range (allowed: >= 1)")
    lay = parse_state(_load_state(args.state_dict), args.format)
    why = check_writable(args.out, folder=False)
    if why:
        raise FFAccelError(f"--out {args.out!r}: {why}")
    ds = dataset_matching(args.dataset, lay.inputs, args.classes, "the network (with --classes)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    net, cfg, rec = convert(lay, args.classes, offset="drop")
    if args.offset == "fold":
        net_fold, cfg, rec = convert(lay, args.classes, offset="fold", calib_u8=ds.x_train[:2000])
    why = check_writable(args.out, folder=False, need=checkpoint_bytes(cfg))
    if why:
        raise FFAccelError(f"--out {args.out!r}: {why}")

    # 1. the conversion itself: their float model and ffaccel's float layers on the same inputs
    mask = cfg.scored
    x_their = their_inputs(ds.x_test)
    bmax = float(x_their.max())                  # their batch maximum (the whole test set)
    n = min(args.compare, len(x_their))
    ref_all = reference_scores(lay, x_their, args.classes, bmax)
    ours_all = ffaccel_scores_on(net, lay, x_their, args.classes, bmax)
    ref, ours = ref_all[:n], ours_all[:n]
    diff = np.abs(ours - ref)
    cmp = {"samples": n, "max_abs_diff_per_layer": float(diff.max()),
           "max_abs_diff_score": float(np.abs(cumulative(ours, mask)[:, -1] - cumulative(ref, mask)[:, -1]).max()),
           "score_magnitude": float(np.abs(ref).max())}
    cmp["max_abs_diff_relative"] = cmp["max_abs_diff_per_layer"] / max(cmp["score_magnitude"], 1e-300)
    acc_theirs = float((cumulative(ref_all, mask)[:, -1].argmax(1) == ds.y_test).mean())
    acc_same = float((cumulative(ours_all, mask)[:, -1].argmax(1) == ds.y_test).mean())
    del ref_all, ours_all

    # 2. ffaccel's own coding (unsigned pixel codes), both offset handlings, float; then integer
    drop_acc = float((net.float().scores(input_codes(ds.x_test, cfg))[:, -1].argmax(1) == ds.y_test).mean())
    final = net_fold.float() if args.offset == "fold" else net
    xtr = input_codes(ds.x_train, cfg)
    cfg, _, float_rep, qm, int_rep = finish(final, cfg, ds, xtr, ds.y_train, cfg.score_mask)
    rec.update({"state_dict": str(args.state_dict), "compare": cmp, "accuracy_theirs_float": acc_theirs,
                "accuracy_ffaccel_float_their_inputs": acc_same, "accuracy_ffaccel_float_offset_dropped": drop_acc,
                "seconds": round(time.perf_counter() - t0, 1)})
    meta = {"dataset": ds.provenance, "import": rec, "float": float_rep, "integer": int_rep,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        save_checkpoint(args.out, final, qm.cfg, meta)
    except OutputError as e:
        raise FFAccelError(f"--out {e}") from None
    summary = {"checkpoint": str(args.out), "config": qm.cfg.to_dict(), **rec,
               "float": float_rep, "integer": int_rep}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"imported {args.format} {qm.cfg.summary()} from {args.state_dict} -> {args.out}")
        print(f"  goodness vs their float model ({n} test samples, same inputs): max abs diff "
              f"{cmp['max_abs_diff_per_layer']:.2e} per layer, {cmp['max_abs_diff_score']:.2e} summed "
              f"(scores up to {cmp['score_magnitude']:.3g}: {cmp['max_abs_diff_relative']:.1e} of it)")
        print(f"  accuracy on {ds.name} test: theirs {acc_theirs * 100:.2f}%, ffaccel float on their inputs "
              f"{acc_same * 100:.2f}%; on unsigned pixel codes: offset dropped {drop_acc * 100:.2f}%, "
              f"{args.offset} {float_rep['accuracy_full'] * 100:.2f}% float, "
              f"{int_rep['accuracy_full'] * 100:.2f}% integer (full depth; {int_rep['accuracy'] * 100:.2f}% "
              f"with exit, {int_rep['mac_reduction']:.2f}x fewer MACs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
