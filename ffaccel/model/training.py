"""The training run behind ``python -m ffaccel.train`` and the checkpoint cache: FF training,
quantisation to integer formats, exit calibration on the validation split, provenance."""

from __future__ import annotations

import time

import torch

from .checkpoint import check_compatible, load_checkpoint
from .embed import input_codes
from .exits import apply_exit, calibrate, exit_report
from .ff import FFNet, recipe_of, train_ff, train_heads, train_lls
from .golden import GoldenModel
from .quant import CALIBRATION_SAMPLES, calibrate_integer, choose_formats, quantize


def fit(ds, cfg, hyper: dict, progress: bool = True):
    """Train, quantise and calibrate; returns (net, quantised config, provenance meta).

    ``hyper``: epochs, head_epochs, seed, lr, theta, batch, hard_negatives, limit, threads,
    and optionally init (a checkpoint of the same network to start from).
    """
    torch.set_num_threads(hyper["threads"])
    xtr, ytr = input_codes(ds.x_train, cfg), ds.y_train
    if hyper.get("limit"):
        xtr, ytr = xtr[: hyper["limit"]], ytr[: hyper["limit"]]
    xva, xte = input_codes(ds.x_val, cfg), input_codes(ds.x_test, cfg)

    net = FFNet(cfg, seed=hyper["seed"])
    if hyper.get("init"):
        init_net, init_cfg, _ = load_checkpoint(hyper["init"])
        check_compatible(init_cfg, cfg, hyper["init"])
        net.load_state_dict(init_net.state_dict())
        if cfg.exit_head != "learned":
            net.set_lls_heads()          # the basis of this config, whatever the checkpoint held
    if cfg.exit_head != "learned":
        # zero-parameter LLS heads: the layers learn for the fixed basis (LLS's local loss)
        log = train_lls(net, xtr, ytr, epochs=hyper["epochs"], seed=hyper["seed"], lr=hyper["lr"],
                        batch=hyper["batch"], progress=progress)
    else:
        log = train_ff(net, xtr, ytr, epochs=hyper["epochs"], seed=hyper["seed"], lr=hyper["lr"],
                       theta=hyper["theta"], batch=hyper["batch"], hard_negatives=hyper["hard_negatives"],
                       progress=progress)
    head_s = 0.0
    if cfg.mode == "op" and cfg.exit_head == "learned":
        head_s = train_heads(net, xtr, ytr, epochs=hyper["head_epochs"], seed=hyper["seed"],
                             batch=hyper["batch"], progress=progress)

    # float accuracy with the float thresholds
    fs_val, fs_te = net.scores(xva), net.scores(xte)
    fth = calibrate(fs_val, ds.y_val, cfg.exit_policy, cfg.exit_k, cfg.classes)
    el, lab = apply_exit(fs_te, cfg.exit_policy, fth)
    float_rep = exit_report(el, lab, fs_te[:, -1].argmax(1), ds.y_test, cfg)

    # integer formats + thresholds
    ncal = min(len(xtr), CALIBRATION_SAMPLES)
    qcfg = choose_formats(net, xtr[:ncal], ytr[:ncal])
    qm = calibrate_integer(quantize(net, qcfg), xva, ds.y_val)
    res = GoldenModel(qm).run(xte)
    int_rep = exit_report(res.exit_layer, res.label, res.label_full, ds.y_test, qm.cfg)
    meta = {
        "dataset": ds.provenance,
        "train": {**hyper, "train_samples": int(len(xtr)), "seconds": round(log.seconds + head_s, 1),
                  "seconds_per_epoch": round(log.train_seconds_per_epoch, 2),
                  "loss": [round(v, 6) for v in log.loss], "torch": torch.__version__,
                  "recipe": recipe_of(cfg)},
        "float": float_rep,
        "integer": int_rep,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return net, qm.cfg, meta
