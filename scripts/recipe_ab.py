"""A/B of the FF training recipe on a reduced MNIST problem (minutes, not hours).

    python scripts/recipe_ab.py --variant rms --layers 4x500 --train 20000 --epochs 6 --lr 0.003 --theta 16

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

from ffaccel.cli import FFAccelError, run_main
from ffaccel.config import AccelConfig, parse_layers
from ffaccel.data import load_dataset
from ffaccel.model.embed import input_codes
from ffaccel.model.ff import FFNet, train_ff

PROG = "recipe_ab"


def accuracies(net: FFNet, cfg: AccelConfig, x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    s = net.mp_scores(input_codes(x, cfg))
    per = np.diff(np.concatenate([np.zeros_like(s[:, :1]), s], 1), axis=1)
    cum = [round(float((s[:, i].argmax(1) == y).mean()) * 100, 2) for i in range(s.shape[1])]
    alone = [round(float((per[:, i].argmax(1) == y).mean()) * 100, 2) for i in range(s.shape[1])]
    return cum, alone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("rms", "plain"), default="rms")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--layers", default="4x500")
    p.add_argument("--train", type=int, default=20000, help="first N training samples")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--theta", type=float, default=16.0)
    p.add_argument("--hard-negatives", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.train < 1 or args.epochs < 1 or args.lr <= 0:
        raise FFAccelError("--train, --epochs and --lr must be positive")
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=parse_layers(args.layers))
    net = FFNet(cfg, seed=args.seed)
    if args.variant == "plain":
        with torch.no_grad():
            for lin in net.layers:
                b = 1.0 / np.sqrt(lin.in_features)
                lin.weight.uniform_(-b, b)
                lin.bias.uniform_(-b, b)
    t = time.perf_counter()
    log = train_ff(net, input_codes(ds.x_train[: args.train], cfg), ds.y_train[: args.train],
                   epochs=args.epochs, seed=args.seed, lr=args.lr, theta=args.theta, batch=100,
                   hard_negatives=args.hard_negatives, progress=False, fan_in_lr=args.variant == "rms")
    cum, alone = accuracies(net, cfg, ds.x_val, ds.y_val)
    print(json.dumps({**vars(args), "val_cumulative": cum, "val_alone": alone,
                      "seconds": round(time.perf_counter() - t, 1), "loss": [round(v, 4) for v in log.loss]}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
