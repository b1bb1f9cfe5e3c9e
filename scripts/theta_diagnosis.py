#!/usr/bin/env python3
"""Why the default goodness threshold collapses on small data: the mean goodness of
positives and negatives per layer at initialisation and after training, for several
thresholds, with the validation accuracy of the cumulative score (docs/results.md,
"Training defaults across shapes and data").

    python scripts/theta_diagnosis.py [--dataset digits] [--layers 2x128] [--thetas 16,1] [recipe flags]

(``--min-steps 0`` shows the collapse: 10 epochs of digits are 110 steps.)
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from ffaccel.cli import FFAccelError, add_recipe_args, make_parser, recipe_from_args, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.model.embed import embed_labels, input_codes
from ffaccel.model.ff import FFNet, train_ff

PROG = "theta_diagnosis.py"


def goodness(net, cfg, x, y) -> list[tuple[float, float]]:
    """(positive, negative) mean of mean(h^2) per layer; negative = the next label."""
    pos = torch.as_tensor(embed_labels(x, y, cfg), dtype=torch.float32)
    neg = torch.as_tensor(embed_labels(x, (y + 1) % cfg.classes, cfg), dtype=torch.float32)
    with torch.no_grad():
        hp, hn = net.forward_all(pos), net.forward_all(neg)
    return [(round(float(a.pow(2).mean(1).mean()), 2), round(float(b.pow(2).mean(1).mean()), 2))
            for a, b in zip(hp, hn)]


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--layers", default="2x128")
    p.add_argument("--thetas", default="16,1", help="thresholds to compare (replace the recipe's theta)")
    add_recipe_args(p)
    args = p.parse_args(argv)
    recipe = recipe_from_args(args)
    thetas = [float(t) for t in args.thetas.split(",") if t.strip()]
    if not thetas or any(not np.isfinite(t) or t <= 0 for t in thetas):
        raise FFAccelError(f"--thetas {args.thetas!r}: positive numbers, comma-separated")
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=parse_layers(args.layers))
    x, y = input_codes(ds.x_train, cfg), ds.y_train
    steps = recipe.effective_epochs(len(x)) * recipe.steps_per_epoch(len(x))
    for theta in thetas:
        net = FFNet(cfg, seed=recipe.seed)
        g0 = goodness(net, cfg, x[:500], y[:500])
        train_ff(net, x, y, recipe.replace(theta=theta), progress=False)
        sc = net.scores(input_codes(ds.x_val, cfg))
        acc = [round(float((sc[:, l].argmax(1) == ds.y_val).mean()), 3) for l in range(cfg.n_layers)]
        print(f"theta {theta:g} ({steps} steps): goodness (pos, neg) per layer at init {g0}, after "
              f"{goodness(net, cfg, x[:500], y[:500])}; validation accuracy, cumulative by layer {acc}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
