"""Accuracy and MACs of a trained network with LightFF early exit (behind
``python -m ffaccel.eval``, the energy k-sweep and the reproduction scripts).

Thresholds T_l = mu_l - k * sigma_l come from the validation split (per class, then
averaged); the decision layer (the last scored one) always decides. ``integer=True`` runs the bit-exact golden
model instead of the float network.
"""

from __future__ import annotations

import time

from .embed import input_codes
from .exits import apply_exit, calibrate, cumulative, exit_report
from .golden import GoldenModel
from .quant import integer_thresholds, quantize


def score_splits(net, cfg, ds, *, integer: bool, limit: int | None = None):
    """Full-depth cumulative scores (B, L, classes) of the validation and test splits,
    from the float network or from the golden model; plus the seconds the test split took."""
    xva = input_codes(ds.x_val, cfg)
    xte = input_codes(ds.x_test, cfg)
    if limit:
        xte = xte[:limit]
    if integer:
        gm = GoldenModel(quantize(net, cfg.replace(thresholds=())))
        sva = gm.run(xva).layer_scores
        t1 = time.perf_counter()
        ste = gm.run(xte).layer_scores
    else:                                # the mask of ``cfg``, whatever the net was built with
        sva = cumulative(net.layer_scores(xva), cfg.scored)
        t1 = time.perf_counter()
        ste = cumulative(net.layer_scores(xte), cfg.scored)
    return sva, ste, time.perf_counter() - t1


def report_for_k(sva, ste, cfg, ds, *, k: float, policy: str, integer: bool, exits: bool = False) -> dict:
    """Calibrate T_l on the validation scores for this k, apply the exit rule on the test
    scores. ``exits``: also return every test sample's exit layer (``exit_layers``)."""
    yva, yte = ds.y_val, ds.y_test[: len(ste)]
    th = calibrate(sva, yva, policy, k, cfg.classes)
    if integer:
        th = list(integer_thresholds(th, cfg)) if th else []
    el, lab = apply_exit(ste, policy, th, cfg.scored)
    rep = exit_report(el, lab, ste[:, -1].argmax(1), yte, cfg)
    rep.update({"model": "integer" if integer else "float", "mode": cfg.mode, "policy": policy,
                "k": k, "thresholds": [t if integer else round(t, 6) for t in th], "dataset": ds.name})
    if exits:
        rep["exit_layers"] = el
    return rep


def evaluate(net, cfg, ds, *, k: float, policy: str, integer: bool, limit: int | None) -> dict:
    """Report dict for a loaded checkpoint on a dataset (shared with scripts)."""
    cfg = cfg.replace(exit_k=k, exit_policy=policy, thresholds=())
    sva, ste, dt = score_splits(net, cfg, ds, integer=integer, limit=limit)
    rep = report_for_k(sva, ste, cfg, ds, k=k, policy=policy, integer=integer)
    rep.update({"test_seconds": round(dt, 3), "samples_per_s": round(len(ste) / dt, 1) if dt else None})
    return rep
