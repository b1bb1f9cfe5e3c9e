"""One design measured end to end: its network trained with a recipe (cached), quantised
and calibrated, the generated RTL checked against the golden model on the first test
images, then integer accuracy, energy, latency and area on the test set. The study
scripts (``scripts/low_energy_mnist.py``, ``scripts/bsff_vs_relu.py``) report designs
through it, so every figure of a design comes from one place."""

from __future__ import annotations

import time

import numpy as np

from .config import NETWORK_FIELDS, AccelConfig
from .model.recipe import TrainRecipe

#: The engine fields a design sets on top of its checkpoint's network and formats.
HARDWARE_FIELDS = ("rows", "cols", "zero_skip", "batch", "weight_mem", "sram_bank_kib", "onchip_kib", "bsff_seed")


def measure_design(cfg: AccelConfig, recipe: TrainRecipe, ds, *, k: float, limit: int | None = None,
                   verify_samples: int = 4, sim: str = "verilator", toggle_samples: int = 16,
                   threads: int = 2, progress: bool = True) -> dict:
    """Every figure of the design ``cfg`` (its network, weight width and engine) trained with
    ``recipe`` on ``ds`` and run with the exit knob ``k``. ``rtl.mismatches`` > 0 means the
    RTL disagreed with the golden model."""
    from .energy.model import area_cells
    from .energy.coeffs import load_coeffs
    from .energy.report import report
    from .model.cache import cached_fit
    from .model.golden import GoldenModel
    from .perf.report import analyse, load_workload
    from .sim.runner import verify

    t0 = time.perf_counter()
    train_cfg = AccelConfig(**{f: getattr(cfg, f) for f in NETWORK_FIELDS}, wbits=cfg.wbits, abits=cfg.abits)
    _, _, meta, ckpt = cached_fit(ds, train_cfg, recipe, progress=progress, threads=threads)
    t_train = time.perf_counter() - t0
    wl = load_workload({f: getattr(cfg, f) for f in HARDWARE_FIELDS}, checkpoint=ckpt, dataset=ds.name,
                       limit=limit, k=k)
    qm = wl.qm

    # the RTL against the golden model on the first test images, with random stalls
    t1 = time.perf_counter()
    nv = min(verify_samples, len(wl.x))
    out = verify(qm, np.asarray(wl.x[:nv], dtype=np.int64), sim=sim, in_stall=0.25, out_stall=0.25, seed=1)
    rtl = {"sim": sim, "samples": nv, "mismatches": out["report"].mismatches,
           "cycles": [s.cycles for s in out["report"].samples], "seconds": round(time.perf_counter() - t1, 1)}

    perf = analyse(wl, 0)
    s = perf["summary"]
    labels = np.array([r["label"] for r in perf["samples"]])
    full = GoldenModel(qm).run(np.asarray(wl.x, dtype=np.int64)).label_full      # every layer, same engine
    energy = report(wl, load_coeffs(tech=qm.cfg.tech), toggle_samples)
    return {
        "dataset": ds.name, "checkpoint": ckpt, "neuron": qm.cfg.neuron, "bsff_k": qm.cfg.bsff_k,
        "layers": list(cfg.layers), "wbits": cfg.wbits, "abits": qm.cfg.abits, "k": k, "batch": cfg.batch,
        "array": f"{cfg.rows}x{cfg.cols}", "sram_bank_kib": cfg.sram_bank_kib,
        "recipe": recipe.key(), "train_seconds": meta["train"]["seconds"],
        "samples": s["samples"],
        "accuracy": float((labels == np.asarray(wl.y)).mean()),
        "float_accuracy_full": meta["float"]["accuracy_full"],
        "accuracy_full": float((full == np.asarray(wl.y)).mean()),
        "energy_uj": energy["total_pj"] / 1e6,
        "energy_components_uj": {c: v / 1e6 for c, v in energy["components"].items()},
        **({"energy_pbit_uj": energy["bsff"]["pbit_total_pj"] / 1e6} if "bsff" in energy else {}),
        "latency_us": s["latency_us"], "cycles_per_inference": s["cycles_per_inference"],
        "cycles_per_sample": s["cycles_per_sample"], "macs_per_sample": s["macs_per_sample"],
        "pe_ops_per_sample": s["pe_ops_per_sample"],
        "weight_reads_per_sample": s["weight_reads_per_sample"],
        # per layer, the weight reads zero skipping saved (the inputs that were 0)
        "weight_reads_skipped": [l.get("weight_reads_skipped") for l in energy["per_layer"]],
        "mean_exit_layer": float(np.mean([r["exit_layer"] for r in perf["samples"]])),
        "area_cells": float(area_cells(qm.cfg)), "area_mm2": energy["area_mm2"],
        "weight_memory": energy["weight_memory"],
        "rtl": rtl,
        "seconds": round(time.perf_counter() - t0, 1), "train_or_load_seconds": round(t_train, 1),
    }
