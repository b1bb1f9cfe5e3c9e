"""One evaluation: a pure function (design, workload) -> metrics.

The network of a shape is trained once and cached (``ffaccel.model.cache``); a design then
quantises it to its own formats, calibrates its exit thresholds for its ``k`` on the
validation split, and is measured on the first ``limit`` test samples: accuracy with
early exit (bit-exact integer model), cycles (exact, from the exit depths), energy (toggles
of ``toggle_samples`` inferences), area (the calibrated cell model), utilisation.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from ..data import load_dataset
from ..energy.coeffs import load_coeffs
from ..energy.model import area_cells
from ..model.cache import cached_fit
from ..model.embed import input_codes
from ..model.golden import GoldenModel
from ..model.quant import calibrate_integer, choose_formats, quantize
from ..perf.cycles import inference_cycles
from ..workload import Workload
from .space import Space


@lru_cache(maxsize=4)
def _dataset(name: str):
    return load_dataset(name)


def evaluate(space: Space, point: dict) -> dict:
    from ..energy.__main__ import report
    t0 = time.perf_counter()
    w = space.workload
    cfg = space.config(point)
    ds = _dataset(w["dataset"])
    cfg = cfg.replace(inputs=ds.inputs, classes=ds.classes)
    hyper = {"epochs": w["epochs"], "head_epochs": w["epochs"], "seed": w["seed"], "lr": w["lr"],
             "theta": w["theta"], "batch": w["batch"], "hard_negatives": w["hard_negatives"], "limit": None,
             "threads": 1}
    net, _, _, _ = cached_fit(ds, cfg, hyper)
    xtr = input_codes(ds.x_train[:2000], cfg)
    qcfg = choose_formats(net, xtr, ds.y_train[:2000], cfg=cfg.replace(wfrac=(), hfrac=(), thresholds=()))
    qm = calibrate_integer(quantize(net, qcfg), input_codes(ds.x_val, qcfg), ds.y_val)
    n = min(w["limit"], len(ds.x_test))
    x, y = input_codes(ds.x_test[:n], qcfg), ds.y_test[:n]
    res = GoldenModel(qm).run(x, early_exit=True)
    wl = Workload(qm, x, y, {"dataset": ds.name, "limit": n})
    rep = report(wl, load_coeffs(tech=qcfg.tech), w["toggle_samples"], exit_layers=res.exit_layer)
    if qcfg.mode == "mp":
        cyc = float(np.mean([inference_cycles(qcfg, int(e))["total"] for e in res.exit_layer]))
        per_sample = cyc
    else:
        b = qcfg.rows
        batches = [int(res.exit_layer[i:i + b].max()) for i in range(0, n, b)]
        cyc = float(np.mean([inference_cycles(qcfg, e, batch=min(b, n - i * b))["total"]
                             for i, e in enumerate(batches)]))
        per_sample = cyc * len(batches) / n
    macs = float(np.mean(_macs_by_depth(qcfg)[res.exit_layer - 1]))
    pes = qcfg.rows * qcfg.cols
    return {
        "accuracy": float((res.label == y).mean()),
        "energy_pj": float(rep["total_pj"]),
        "latency_cycles": cyc,
        "latency_us": cyc / qcfg.clock_mhz,
        "area_cells": float(area_cells(qcfg)),
        "utilisation": macs / (pes * per_sample),
        "macs_per_sample": macs,
        "mean_exit_layer": float(res.exit_layer.mean()),
        "seconds": time.perf_counter() - t0,
    }


def _macs_by_depth(cfg) -> np.ndarray:
    from ..model.exits import layer_macs
    share = cfg.mode == "mp" and cfg.label_share
    return np.cumsum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, share))
