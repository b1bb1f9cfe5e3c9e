"""``python -m ffaccel.energy``: picojoules per inference, where they go, what early exit saves.

    python -m ffaccel.energy <config flags> [--samples N --seed S | --checkpoint CKPT --dataset D --limit N]
                             [--tech 45nm] [--coeffs FILE] [--toggle-samples M] [--json] [--plots DIR]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cli import FFAccelError, add_config_args, make_parser, run_main
from ..model.golden import GoldenModel
from ..perf.__main__ import load_workload
from .coeffs import load_coeffs
from .model import ENERGY_COMPONENTS, EnergyModel, profile

PROG = "ffaccel.energy"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint")
    p.add_argument("--dataset")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--coeffs", help="TOML/JSON file overriding coefficients (see --show-coeffs)")
    p.add_argument("--show-coeffs", action="store_true", help="print the coefficient table and exit")
    p.add_argument("--toggle-samples", type=int, default=16, help="inferences whose toggles are computed")
    p.add_argument("--ks", default=None, help="with a checkpoint: k values for the energy-accuracy plot")
    p.add_argument("--plots", help="folder for PNG plots")
    p.add_argument("--json", action="store_true")
    return p


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
    if exit_layers is None:
        exit_layers = GoldenModel(wl.qm).run(wl.x, early_exit=True).exit_layer
    n = len(exit_layers)
    if cfg.mode == "mp":
        units = [(int(e), 1) for e in exit_layers]
    else:   # a batch runs to its deepest exit; its energy is shared by its samples
        units = [(int(exit_layers[i:i + cfg.rows].max()), len(exit_layers[i:i + cfg.rows]))
                 for i in range(0, n, cfg.rows)]
    comp = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
    for e, _ in units:
        for k in ENERGY_COMPONENTS:
            comp[k] += depth[e - 1][k] / n
    total = sum(comp.values())
    full = sum(depth[-1].values()) / (1 if cfg.mode == "mp" else cfg.rows)
    hist = np.bincount(exit_layers, minlength=cfg.n_layers + 1)[1:]
    per_layer = em.per_layer(prof)
    ran = [(exit_layers > l).mean() for l in range(cfg.n_layers)]
    cyc = np.mean([sum(prof.cycles[:e]) + prof.setup_cycles for e, _ in units])
    t_s = cyc / (cfg.clock_mhz * 1e6)
    lb = float(np.mean([em.lower_bound_pj(int(e)) for e in exit_layers]))
    return {
        "total_pj": total,
        "full_depth_pj": full,
        "components": comp,
        "per_layer": [{"layer": l + 1, "pj_when_run": sum(per_layer[l].values()),
                       "fraction_run": float(ran[l]), "components": per_layer[l]} for l in range(cfg.n_layers)],
        "energy_by_exit_layer_pj": {str(e + 1): sum(d.values()) / (1 if cfg.mode == "mp" else cfg.rows)
                                    for e, d in enumerate(depth)},
        "exit_histogram": {str(i + 1): int(h) for i, h in enumerate(hist)},
        "cycles_per_inference": float(cyc),
        "edp_pj_s": total * t_s,
        "lower_bound_pj": lb,
        "ratio_to_lower_bound": total / lb if lb else None,
        "weight_mem": cfg.weight_mem, "e_weight_word_pj": em.e_weight, "area_cells_model": em.cells,
        "toggle_samples": prof.sampled, "tech": coeffs.tech,
        "_depth": depth,
    }


def k_sweep(checkpoint: str, dataset: str, limit, cfg, rep: dict, ks) -> list:
    """Energy and accuracy across the exit knob k (needs labels): the integer model's
    validation and test scores are computed once; each k only re-derives its thresholds."""
    from ..data import load_dataset
    from ..eval import report_for_k, score_splits
    from ..model.checkpoint import load_checkpoint
    net, _, _ = load_checkpoint(checkpoint)
    ds = load_dataset(dataset)
    sva, ste, _ = score_splits(net, cfg, ds, integer=True, limit=limit)
    depth = rep["_depth"]
    per = cfg.rows if cfg.mode == "op" else 1
    out = []
    for k in ks:
        r = report_for_k(sva, ste, cfg, ds, k=k, policy=cfg.exit_policy, integer=True)
        hist = {int(e): n for e, n in r["exit_histogram"].items()}
        e = sum(n * sum(depth[d - 1].values()) / per for d, n in hist.items()) / max(1, sum(hist.values()))
        out.append({"k": k, "accuracy": r["accuracy"], "total_pj": e, "mean_exit_layer": r["mean_exit_layer"],
                    "exit_histogram": r["exit_histogram"]})
    return out


def plots(rep: dict, folder: Path, sweep: list | None) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = []
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
    files.append(str(folder / "energy_by_exit_depth.png"))
    fig.savefig(files[-1], dpi=110, metadata={"Software": None})
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    h = rep["exit_histogram"]
    ax.bar([int(k) for k in h], list(h.values()))
    ax.set_xlabel("exit layer")
    ax.set_ylabel("samples")
    ax.set_title("Exit-depth histogram")
    fig.tight_layout()
    files.append(str(folder / "exit_histogram.png"))
    fig.savefig(files[-1], dpi=110, metadata={"Software": None})
    plt.close(fig)
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
        files.append(str(folder / "energy_vs_accuracy.png"))
        fig.savefig(files[-1], dpi=110, metadata={"Software": None})
        plt.close(fig)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..cli import config_from_args
    cfg = config_from_args(args)
    coeffs = load_coeffs(args.coeffs, cfg.tech)
    if args.show_coeffs:
        for row in coeffs.table():
            print(f"{row['name']:22s} {row['value']:>12.5g} {row['unit']:36s} {row['source']}")
        return 0
    if args.toggle_samples < 1:
        raise FFAccelError(f"--toggle-samples={args.toggle_samples} out of range (allowed: >= 1)")
    t0 = time.perf_counter()
    wl = load_workload(args)
    rep = report(wl, coeffs, args.toggle_samples)
    sweep = None
    if args.ks:
        if not args.checkpoint:
            raise FFAccelError("--ks needs --checkpoint and --dataset (accuracy needs labels)")
        try:
            ks = [float(v) for v in args.ks.split(",")]
        except ValueError:
            raise FFAccelError(f"--ks {args.ks!r} is not a comma-separated list of numbers") from None
        sweep = k_sweep(args.checkpoint, args.dataset, args.limit, wl.cfg, rep, ks)
        rep["k_sweep"] = sweep
    if args.plots:
        rep["plots"] = plots(rep, Path(args.plots), sweep)
    rep.pop("_depth")
    rep["seconds"] = round(time.perf_counter() - t0, 2)
    rep["config"] = wl.cfg.to_dict(resolved=True)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{wl.cfg.summary()} at {coeffs.tech}, weights in {wl.cfg.weight_mem}")
    print(f"  {rep['total_pj'] / 1e6:.3f} uJ per inference with early exit, {rep['full_depth_pj'] / 1e6:.3f} uJ "
          f"full depth ({rep['full_depth_pj'] / rep['total_pj']:.2f}x); lower bound {rep['lower_bound_pj'] / 1e6:.3f} uJ "
          f"(ratio {rep['ratio_to_lower_bound']:.2f})")
    for k, v in sorted(rep["components"].items(), key=lambda kv: -kv[1]):
        print(f"    {k:16s} {v / 1e6:10.4f} uJ  {v / rep['total_pj'] * 100:5.1f}%")
    print(f"  exit histogram {rep['exit_histogram']}; EDP {rep['edp_pj_s']:.3g} pJ*s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
