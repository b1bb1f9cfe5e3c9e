"""The training run behind ``python -m ffaccel.train`` and the checkpoint cache: FF training,
quantisation to integer formats, exit calibration on the validation split, provenance."""

from __future__ import annotations

import time

import torch

from .checkpoint import check_compatible, load_checkpoint
from .embed import input_codes
from .augment import shifter
from .exits import apply_exit, calibrate, cumulative, exit_report, select_scored
from .ff import FFNet, train_ff, train_heads, train_lls
from .qat import fine_tune
from .golden import GoldenModel
from .quant import CALIBRATION_SAMPLES, calibrate_integer, choose_formats, quantize
from .recipe import TrainRecipe


def fit(ds, cfg, recipe: TrainRecipe, *, threads: int = 1, init: str | None = None, progress: bool = True):
    """Train as ``recipe`` says, choose the scored layers, quantise and calibrate; returns
    (net, quantised config, provenance meta).

    ``threads``: torch threads (a run option: results do not depend on it); ``init``: a
    checkpoint of the same network to start from (continue training).
    """
    if not isinstance(recipe, TrainRecipe):
        raise TypeError(f"fit: recipe must be a TrainRecipe, not {type(recipe).__name__}")
    shifter(recipe, ds.image_shape)      # a shift asked of data that are not images: refused now
    torch.set_num_threads(threads)
    from .physical import prepare
    cfg = prepare(cfg)                   # physical layers: files pinned by hash, widths checked
    xtr, ytr = recipe.subset(input_codes(ds.x_train, cfg), ds.y_train)

    net = FFNet(cfg, seed=recipe.seed)
    if init:
        init_net, init_cfg, _ = load_checkpoint(init)
        check_compatible(init_cfg, cfg, init)
        net.load_state_dict(init_net.state_dict())
        if cfg.exit_head != "learned":
            net.set_lls_heads()          # the basis of this config, whatever the checkpoint held
    if cfg.exit_head != "learned":
        # zero-parameter LLS heads: the layers learn for the fixed basis (LLS's local loss)
        log = train_lls(net, xtr, ytr, recipe, progress=progress, image_shape=ds.image_shape)
    else:
        log = train_ff(net, xtr, ytr, recipe, progress=progress, image_shape=ds.image_shape)
    qat_s = 0.0
    if recipe.qat_epochs:
        qat_s = fine_tune(net, xtr, ytr, recipe, cfg.wbits, progress=progress, image_shape=ds.image_shape).seconds
    head_s = 0.0
    if cfg.mode == "op" and cfg.exit_head == "learned":
        head_s = train_heads(net, xtr, ytr, recipe, progress=progress, image_shape=ds.image_shape)

    mask = "auto" if recipe.score_layers == "auto" else ()
    cfg, val_acc, float_rep, qm, int_rep = finish(net, cfg, ds, xtr, ytr, mask)
    steps = recipe.steps_per_epoch(len(xtr))
    meta = {
        "dataset": ds.provenance,
        "recipe": recipe.to_dict(),
        "train": {"algorithm": TrainRecipe.algorithm(cfg.exit_head), "threads": threads, "init": init,
                  "train_samples": int(len(xtr)), "epochs": log.epochs, "steps": log.epochs * steps,
                  "seconds": round(log.seconds + qat_s + head_s, 1),
                  **({"qat_wbits": cfg.wbits, "qat_seconds": round(qat_s, 1)} if recipe.qat_epochs else {}),
                  "seconds_per_epoch": round(log.train_seconds_per_epoch, 2),
                  "loss": [round(v, 6) for v in log.loss], "torch": torch.__version__,
                  "scored_layers": [i + 1 for i, v in enumerate(cfg.scored) if v],
                  "val_accuracy_all_layers": val_acc["all"], "val_accuracy_scored": val_acc["scored"]},
        "float": float_rep,
        "integer": int_rep,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return net, qm.cfg, meta


def finish(net: FFNet, cfg, ds, xtr, ytr, mask):
    """What follows the training of ``net`` (shared with imported networks): the scored
    layers (``mask``: ``"auto"`` = chosen on the validation split, else the mask itself),
    the float report with float thresholds, the integer formats (chosen on ``xtr``) and the
    calibrated integer model with its report. Returns (cfg with the mask, validation
    accuracy with all / the scored layers, float report, QuantModel, integer report)."""
    xva, xte = input_codes(ds.x_val, cfg), input_codes(ds.x_test, cfg)
    own_val = net.layer_scores(xva)
    mask = select_scored(own_val, ds.y_val) if mask == "auto" else tuple(mask)
    cfg = cfg.replace(score_mask=mask)
    net.cfg = cfg
    val_acc = {"all": _acc(cumulative(own_val, (True,) * cfg.n_layers)[:, -1], ds.y_val),
               "scored": _acc(cumulative(own_val, cfg.scored)[:, -1], ds.y_val)}

    # float accuracy with the float thresholds
    fs_val, fs_te = cumulative(own_val, cfg.scored), net.scores(xte)
    fth = calibrate(fs_val, ds.y_val, cfg.exit_policy, cfg.exit_k, cfg.classes)
    el, lab = apply_exit(fs_te, cfg.exit_policy, fth, cfg.scored)
    float_rep = exit_report(el, lab, fs_te[:, -1].argmax(1), ds.y_test, cfg)

    # integer formats + thresholds
    ncal = min(len(xtr), CALIBRATION_SAMPLES)
    qcfg = choose_formats(net, xtr[:ncal], ytr[:ncal])
    qm = calibrate_integer(quantize(net, qcfg), xva, ds.y_val)
    res = GoldenModel(qm).run(xte)
    int_rep = exit_report(res.exit_layer, res.label, res.label_full, ds.y_test, qm.cfg)
    return cfg, val_acc, float_rep, qm, int_rep


def _acc(scores, y) -> float:
    return float((scores.argmax(1) == y).mean())
