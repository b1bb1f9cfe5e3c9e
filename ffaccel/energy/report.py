"""Energy report of a workload: picojoules per inference, where they go, what early exit
saves, across the exit knob k, and its plots (the library behind ``python -m ffaccel.energy``)."""

from __future__ import annotations

import io

import dataclasses
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_dir

from ..model.golden import GoldenModel
from ..schedule import live_samples, schedule
from .model import ENERGY_COMPONENTS, EnergyModel, profile


def report(wl, coeffs, toggle_samples: int, exit_layers: np.ndarray | None = None, prof=None) -> dict:
    """Energy report of a workload; ``prof`` reuses a profile computed for the same model,
    array and data (exit thresholds, memory level and node do not change it)."""
    cfg = wl.cfg
    if prof is None:
        prof = profile(wl, toggle_samples)
    else:
        prof = dataclasses.replace(prof, cfg=cfg)
    em = EnergyModel(cfg, coeffs)
    depth = em.by_depth(prof)
    layers, setup = em.per_layer(prof), em.setup(prof)
    if exit_layers is None:
        exit_layers = GoldenModel(wl.qm).run(wl.x, early_exit=True).exit_layer
    sch = schedule(cfg)
    per = sch.batch_size        # samples sharing an inference's energy (MP batch, OP rows)
    units = inference_depths(cfg, exit_layers)
    comp = energy_per_sample(setup, layers, units, len(exit_layers))
    total = sum(comp.values())
    full = sum(depth[cfg.decision_layer - 1].values()) / per     # full depth ends at the decision layer
    hist = np.bincount(exit_layers, minlength=cfg.n_layers + 1)[1:]
    per_layer = em.per_layer(prof)
    skipped = _skipped(wl.qm, prof) if cfg.zero_skip else None
    ran = [(exit_layers > l).mean() for l in range(cfg.n_layers)]
    cyc = np.mean([sum(f * c for f, c in zip(fr, prof.cycles)) + prof.setup_cycles for _, _, fr in units])
    t_s = cyc / (cfg.clock_mhz * 1e6)
    lb = float(np.mean([em.lower_bound_pj(int(e)) for e in exit_layers]))
    bsff = None
    if cfg.bsff:
        # the same inferences with p-bits drawing the biased bits (only the sampler changes)
        pb = EnergyModel(cfg, coeffs, pbits=True)
        pb_comp = energy_per_sample(pb.setup(prof), pb.per_layer(prof), units, len(exit_layers))
        bsff = {"k": cfg.bsff_k, "sampler_pj_per_lane_row": em.sampler, "random_bits_per_lane_row": 32,
                "pbit_total_pj": sum(pb_comp.values()), "pbit_sampler_pj": pb_comp["sampler"]}
    return {
        "total_pj": total,
        "full_depth_pj": full,
        "components": comp,
        "per_layer": [{"layer": l + 1, "pj_when_run": sum(per_layer[l].values()),
                       "fraction_run": float(ran[l]), "components": per_layer[l],
                       **({"weight_reads_skipped": skipped[l]} if skipped else {})} for l in range(cfg.n_layers)],
        "energy_by_exit_layer_pj": {str(e + 1): sum(d.values()) / per for e, d in enumerate(depth)},
        "exit_histogram": {str(i + 1): int(h) for i, h in enumerate(hist)},
        "cycles_per_inference": float(cyc),
        "edp_pj_s": total * t_s,
        "lower_bound_pj": lb,
        "ratio_to_lower_bound": total / lb if lb else None,
        "weight_mem": cfg.weight_mem, "e_weight_word_pj": list(em.e_weight), "weight_memory": em.wmem.as_dict(),
        "sram_bits": em.sram_bits, "area_cells_model": em.cells, "area_mm2": em.area_mm2,
        "heads": em.head_costs(),
        **({"bsff": bsff} if bsff else {}),
        "toggle_samples": prof.sampled, "tech": coeffs.tech,
        "_depth": depth, "_layers": layers, "_setup": setup,
    }


def _skipped(qm, prof) -> list[float]:
    """Zero skipping: per layer, the profiled inferences' weight reads skipped against the
    same layer streaming every input."""
    from ..perf.activity import dense_model
    L = qm.cfg.n_layers
    ref = dense_model(qm).shape_counters(np.full(schedule(qm.cfg).batch_size, L))
    return [1 - prof.counts[l]["weight_reads"] / ref.layer_counts[l]["weight_reads"] for l in range(L)]


def inference_depths(cfg, exit_layers: np.ndarray) -> list[tuple[int, int, tuple]]:
    """(depth, samples, share) of every inference: a batch runs to its deepest exit; the
    share of each visited layer's work it does, against the profiled inference (every
    sample in every layer): an MP batch's later passes stream only the copy groups of the
    samples still in it (``Schedule.live_groups``), 1 elsewhere."""
    sch = schedule(cfg)
    out = []
    for lo, size in sch.batches(len(exit_layers)):
        ex = exit_layers[lo:lo + size]
        depth = int(ex.max())
        share = []
        for layer in range(depth):
            p = sch.layer_passes[layer]
            if cfg.mode == "mp" and not p.shared:
                live = live_samples(ex, layer)
                share.append(len(sch.live_groups(layer, live)) / len(p.groups))
            else:
                share.append(1.0)
        out.append((depth, size, tuple(share)))
    return out


def energy_per_sample(setup: dict, layers: list[dict], units: list[tuple], n: int) -> dict:
    """Component energies per sample of ``n`` samples run as ``units`` (depth, samples,
    share of each visited layer, :func:`inference_depths`): an inference costs the set-up
    plus each visited layer's profiled energy times its share. (The share scales the
    layer's profiled energy, NORM and EXIT included: exact for the weight reads of a copy
    group under a fixed stream length, an approximation otherwise.)"""
    comp = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
    for _, _, share in units:
        for k in ENERGY_COMPONENTS:
            comp[k] += (setup[k] + sum(f * layers[l][k] for l, f in enumerate(share))) / n
    return comp


def k_sweep(checkpoint: str, dataset: str, limit, cfg, rep: dict, ks) -> list:
    """Energy and accuracy across the exit knob k (needs labels): the integer model's
    validation and test scores are computed once; each k only re-derives its thresholds."""
    from ..data import load_dataset
    from ..model.checkpoint import load_checkpoint
    from ..model.evaluation import report_for_k, score_splits
    net, _, _ = load_checkpoint(checkpoint)
    ds = load_dataset(dataset)
    sva, ste, _ = score_splits(net, cfg, ds, integer=True, limit=limit)
    depth = rep["_depth"]
    out = []
    for k in ks:
        r = report_for_k(sva, ste, cfg, ds, k=k, policy=cfg.exit_policy, integer=True, exits=True)
        el = r.pop("exit_layers")
        # the same accounting as report(): an OP batch's energy is its deepest exit's
        e = sum(energy_per_sample(rep["_setup"], rep["_layers"], inference_depths(cfg, el), len(el)).values())
        out.append({"k": k, "accuracy": r["accuracy"], "total_pj": e, "mean_exit_layer": r["mean_exit_layer"],
                    "exit_histogram": r["exit_histogram"]})
    return out


#: The files of ``--plots DIR``: the folder is energy's output set (replaced as a whole,
#: like gen's), so it may hold these names only.
PLOT_NAMES = frozenset({"energy_by_exit_depth.png", "exit_histogram.png", "energy_vs_accuracy.png"})
#: Bytes the plots take at most (three PNGs at 110 dpi are about 100 kB): checked up front.
PLOTS_BYTES = 1 << 20


def write_plots(rep: dict, folder: Path, sweep: list | None) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # every plot is rendered in memory first, then the set is swapped in as a whole: a
    # failure or an interrupt leaves the folder as it was
    out: dict[str, bytes] = {}

    def save(fig, name):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        out[name] = buf.getvalue()

    depth = rep["_depth"]
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(depth))
    for k in ENERGY_COMPONENTS:
        v = np.array([d[k] for d in depth]) / 1e6
        ax.bar(np.arange(1, len(depth) + 1), v, bottom=bottom, label=k)
        bottom += v
    ax.set_xlabel("exit layer")
    ax.set_ylabel("energy per inference (uJ)")
    ax.set_title("Energy by component vs exit depth")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save(fig, "energy_by_exit_depth.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    h = rep["exit_histogram"]
    ax.bar([int(k) for k in h], list(h.values()))
    ax.set_xlabel("exit layer")
    ax.set_ylabel("samples")
    ax.set_title("Exit-depth histogram")
    fig.tight_layout()
    save(fig, "exit_histogram.png")
    if sweep:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot([s["total_pj"] / 1e6 for s in sweep], [s["accuracy"] * 100 for s in sweep], "o-")
        for s in sweep:
            ax.annotate(f"k={s['k']:g}", (s["total_pj"] / 1e6, s["accuracy"] * 100), fontsize=7)
        ax.set_xlabel("energy per inference (uJ)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Energy vs accuracy across the exit knob k")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save(fig, "energy_vs_accuracy.png")
    assert set(out) <= PLOT_NAMES
    atomic_write_dir(folder, out, set(PLOT_NAMES))
    return [str(folder / name) for name in out]
