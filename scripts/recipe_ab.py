"""A/B of the FF training recipe on a reduced MNIST problem (minutes, not hours).

    python scripts/recipe_ab.py --variant rms --layers 4x500 --limit 20000 --epochs 6 --min-steps 0 --batch 100 --lr 0.003 --theta 16

Prints validation accuracy of the cumulative goodness after each layer and of each
layer's goodness alone. ``--variant plain`` is the session-1 recipe: weights
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and plain Adam on the unit-length form.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from ffaccel.cli import add_recipe_args, recipe_from_args, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.model.embed import input_codes
from ffaccel.model.ff import FFNet, train_ff

PROG = "recipe_ab"


def accuracies(net: FFNet, cfg: AccelConfig, x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    per = net.mp_goodness(input_codes(x, cfg))
    s = np.cumsum(per, axis=1)
    cum = [round(float((s[:, i].argmax(1) == y).mean()) * 100, 2) for i in range(s.shape[1])]
    alone = [round(float((per[:, i].argmax(1) == y).mean()) * 100, 2) for i in range(s.shape[1])]
    return cum, alone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("rms", "plain"), default="rms")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--layers", default="4x500")
    add_recipe_args(p)
    args = p.parse_args(argv)
    recipe = recipe_from_args(args)
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=parse_layers(args.layers))
    net = FFNet(cfg, seed=recipe.seed)
    if args.variant == "plain":
        with torch.no_grad():
            for lin in net.layers:
                b = 1.0 / np.sqrt(lin.in_features)
                lin.weight.uniform_(-b, b)
                lin.bias.uniform_(-b, b)
    t = time.perf_counter()
    n = recipe.limit or len(ds.x_train)
    log = train_ff(net, input_codes(ds.x_train[:n], cfg), ds.y_train[:n], recipe, progress=False,
                   fan_in_lr=args.variant == "rms")
    cum, alone = accuracies(net, cfg, ds.x_val, ds.y_val)
    print(json.dumps({"variant": args.variant, "dataset": args.dataset, "layers": args.layers,
                      "recipe": recipe.to_dict(), "val_cumulative": cum, "val_alone": alone,
                      "seconds": round(time.perf_counter() - t, 1), "loss": [round(v, 4) for v in log.loss]}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
