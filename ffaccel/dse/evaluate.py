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

from ..config import NETWORK_FIELDS, WIDTH_FIELDS, AccelConfig
from ..errors import FFAccelError
from ..data import load_dataset
from ..energy.coeffs import load_coeffs
from ..energy.model import area_cells, profile
from ..energy.report import report
from ..model.cache import cached_fit
from ..model.checkpoint import check_compatible, load_checkpoint
from ..model.exits import apply_exit, balanced_accuracy, calibrate
from ..model.embed import input_codes
from ..model.golden import GoldenModel, QuantModel
from ..model.quant import CALIBRATION_SAMPLES, choose_formats, integer_thresholds, quantize
from ..perf.cycles import inference_maps, lengths_of
from ..schedule import schedule
from ..workload import Workload
from .space import Space


_PROFILES: dict = {}


@lru_cache(maxsize=4)
def _dataset(name: str):
    return load_dataset(name)


@lru_cache(maxsize=8)
def _network(space: Space, layers: tuple, mode: str, exit_head: str, wbits: int, recipe):
    """(net, dataset) for a network shape: the workload's checkpoint, or trained once and
    cached (with quantisation-aware fine-tuning in the recipe: once per weight width)."""
    w = space.workload
    ds = _dataset(w["dataset"])
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=layers, mode=mode, exit_head=exit_head,
                      wbits=wbits)
    if w.get("checkpoint"):
        net, ck_cfg, _ = load_checkpoint(w["checkpoint"])
        check_compatible(ck_cfg, cfg, w["checkpoint"])
        return net, ds
    net, _, _, _ = cached_fit(ds, cfg, recipe)
    return net, ds


def check_workload(space: Space) -> None:
    """Before a store is made or a design runs: the data set loads, and a given checkpoint
    loads and fits the network of every design (one line, :class:`FFAccelError`)."""
    from ..data import DataError
    w = space.workload
    try:
        ds = _dataset(w["dataset"])
    except DataError as e:
        raise FFAccelError(f"--space: {e}") from None
    if not w.get("checkpoint"):
        return
    _, ck_cfg, _ = load_checkpoint(w["checkpoint"])
    for point in space.grid():
        cfg = space.config(point).replace(inputs=ds.inputs, classes=ds.classes)
        check_compatible(ck_cfg, cfg, w["checkpoint"])


@lru_cache(maxsize=16)
def _quantised(space: Space, cfg_formats: AccelConfig, recipe):
    """Integer model and its full-depth validation / test scores for one network (trained
    with ``recipe``) and set of number formats: every exit knob k and array shape of the
    same formats reuses them."""
    w = space.workload
    qat = recipe.qat_epochs and not space.workload.get("checkpoint")
    net, ds = _network(space, cfg_formats.layers, cfg_formats.mode, cfg_formats.exit_head,
                       cfg_formats.wbits if qat else 8, recipe)
    cfg_formats = cfg_formats.replace(score_mask=net.cfg.score_mask)      # the layers training chose
    xtr = input_codes(ds.x_train[:CALIBRATION_SAMPLES], cfg_formats)
    qcfg = choose_formats(net, xtr, ds.y_train[:CALIBRATION_SAMPLES], cfg=cfg_formats)
    qm = quantize(net, qcfg)
    gm = GoldenModel(qm)
    nv = min(w["val_limit"], len(ds.x_val))
    n = min(w["limit"], len(ds.x_test))
    sva = gm.run(input_codes(ds.x_val[:nv], qcfg)).layer_scores
    xte = input_codes(ds.x_test[:n], qcfg)
    ste = gm.run(xte).layer_scores
    return qm, sva, ds.y_val[:nv], xte, ste, ds.y_test[:n]


def evaluate(space: Space, point: dict) -> dict:
    t0 = time.perf_counter()
    w = space.workload
    ds = _dataset(w["dataset"])
    cfg = space.config(point).replace(inputs=ds.inputs, classes=ds.classes)
    # the trained network and the widths it is quantised to (NETWORK_FIELDS + WIDTH_FIELDS)
    formats = AccelConfig(exit_policy=cfg.exit_policy,
                          **{k: getattr(cfg, k) for k in NETWORK_FIELDS + WIDTH_FIELDS})
    qm0, sva, yva, x, ste, y = _quantised(space, formats, space.recipe_for(point))
    th = calibrate(sva, yva, cfg.exit_policy, cfg.exit_k, cfg.classes)
    qcfg = cfg.replace(afrac=qm0.cfg.afrac, wfrac=qm0.cfg.wfrac, hfrac=qm0.cfg.hfrac,
                       score_mask=qm0.cfg.score_mask, thresholds=integer_thresholds(th, qm0.cfg) if th else ())
    qm = QuantModel(qcfg, qm0.weights, qm0.biases, qm0.heads, qm0.head_biases)
    exit_layer, label = apply_exit(ste, cfg.exit_policy, qcfg.thresholds, qcfg.scored)
    n = len(x)
    wl = Workload(qm, x, y, {"dataset": ds.name, "limit": n})
    # the activity profile depends on the model, the array and the data, not on k or memory
    pkey = (id(qm0), qcfg.rows, qcfg.cols, qcfg.share_layer1, qcfg.zero_skip, qcfg.fpga_regs, qcfg.batch)
    if pkey not in _PROFILES:
        _PROFILES[pkey] = profile(wl, w["toggle_samples"])
    rep = report(wl, load_coeffs(tech=qcfg.tech), w["toggle_samples"], exit_layers=exit_layer,
                 prof=_PROFILES[pkey])
    # an inference (an MP or OP batch) runs to its deepest exit
    sch = schedule(qcfg)
    batches = sch.batches(n)
    # (zero skipping: each inference's stream lengths from its data)
    maps = inference_maps(GoldenModel(qm), x, exit_layer, [(lo, lo + size) for lo, size in batches]) \
        if qcfg.zero_skip else None
    cyc = float(np.mean([sch.inference_cycles(int(exit_layer[lo:lo + size].max()), size,
                                              lengths_of(qcfg, maps[lo]) if maps else None,
                                              exit_layer[lo:lo + size])["total"]
                         for lo, size in batches]))
    per_sample = cyc * len(batches) / n
    macs = float(np.mean(_macs_by_depth(qcfg)[exit_layer - 1]))
    pes = qcfg.rows * qcfg.cols
    fpga = _fpga_metrics(space, qcfg)
    return {
        "accuracy": float((label == y).mean()),
        "balanced_accuracy": balanced_accuracy(label, y, qcfg.classes),
        "energy_pj": float(rep["total_pj"]),
        "latency_cycles": cyc,
        # throughput: a batch's samples share its cycles (the latency is the batch's)
        "cycles_per_sample": per_sample,
        # at the FPGA's predicted clock when the space names one, else the nominal clock
        "latency_us": cyc / (fpga["fmax_mhz"] if fpga else qcfg.clock_mhz),
        "area_cells": float(area_cells(qcfg)),
        # logic and the SRAM bits that exist (activation banks, on-chip weight banks)
        "area_mm2": float(rep["area_mm2"]),
        # the network's MACs per PE-cycle (with zero skipping above 1 where it saves work)
        "utilisation": macs / (pes * per_sample),
        "macs_per_sample": macs,
        "mean_exit_layer": float(exit_layer.mean()),
        **fpga,
        "seconds": time.perf_counter() - t0,
    }


def _fpga_metrics(space: Space, cfg) -> dict:
    """The calibrated FPGA model's resources, fmax and fit ({} without an [fpga] section)."""
    if not space.fpga:
        return {}
    from ..fpga.devices import lookup
    from ..fpga.model import estimate
    dev, _, _ = lookup(space.fpga["device"])
    e = estimate(cfg, dev)
    return {"fpga_luts": e["luts"], "fpga_ffs": e["ffs"], "fpga_dsps": e["dsps"], "fpga_brams": e["brams"],
            "fmax_mhz": e["fmax_mhz"], "fpga_fits": int(e["fits"])}


def _macs_by_depth(cfg) -> np.ndarray:
    from ..model.exits import layer_macs
    share = cfg.share_layer1
    return np.cumsum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, share))
