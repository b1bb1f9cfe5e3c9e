"""``python -m ffaccel.perf``: cycles, utilisation, MACs, memory accesses and bit toggles of
the engine for a workload, without simulating RTL.

    python -m ffaccel.perf <config flags> [--samples N --seed S | --checkpoint CKPT --dataset D --limit N]
                           [--toggle-samples M] [--json]

Cycles, MACs and accesses are exact for every sample (closed form from the exit depth).
Toggles are exact for the first M samples; the summary's per-inference toggles extrapolate
them to all samples layer by layer (mean toggles of each layer over the sampled inferences
that ran it, times how many inferences ran it), so the error is the sampling error of
those means (reported as the relative standard error).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

import numpy as np

from ..cli import FFAccelError, add_config_args, config_from_args, make_parser, run_main
from ..model.golden import GoldenModel
from ..workload import Workload, dataset_workload, random_workload
from .activity import COMPONENTS, PerfModel
from .cycles import inference_cycles

PROG = "ffaccel.perf"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--samples", type=int, default=8, help="random samples (without --checkpoint)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="trained checkpoint (with --dataset)")
    p.add_argument("--dataset", help="data set of the test samples (with --checkpoint)")
    p.add_argument("--limit", type=int, default=None, help="first N test samples")
    p.add_argument("--toggle-samples", type=int, default=64, help="inferences whose toggles are computed exactly")
    p.add_argument("--json", action="store_true")
    return p


def load_workload(args) -> Workload:
    """The workload of the shared flags: a checkpoint's network and formats (flags may change
    the array, memory and exit rule) with its data set, or a random one from ``--seed``."""
    if args.checkpoint:
        if not args.dataset:
            raise FFAccelError("--checkpoint needs --dataset")
        from ..model.checkpoint import checkpoint_config
        _, cfg = checkpoint_config(args.checkpoint, args)
        return dataset_workload(args.checkpoint, args.dataset, args.limit, overrides=cfg,
                                k=cfg.exit_k if getattr(args, "exit_k", None) is not None else None)
    cfg = config_from_args(args)
    if args.dataset:
        raise FFAccelError("--dataset needs --checkpoint")
    return random_workload(cfg, args.seed, args.samples)


def analyse(wl: Workload, toggle_samples: int, models: tuple | None = None) -> dict:
    """Per-sample figures and a summary for a workload. ``models``: a prepared
    (GoldenModel, PerfModel) pair of ``wl.qm`` (their set-up is per model, not per sample)."""
    cfg, qm, x = wl.cfg, wl.qm, wl.x
    gm, pm = models if models is not None else (GoldenModel(qm), PerfModel(qm))
    t0 = time.perf_counter()
    res = gm.run(x, early_exit=True)
    t_gold = time.perf_counter() - t0
    n = len(x)
    mp = cfg.mode == "mp"
    units = [(i, i + 1) for i in range(n)] if mp else [(i, min(n, i + cfg.rows)) for i in range(0, n, cfg.rows)]
    samples, inferences = [], []
    t1 = time.perf_counter()
    toggled = 0
    # without toggles an inference's counters depend only on its exit depths: compute each
    # distinct case once (a 10k-sample run has a handful of them)
    counts_of: dict = {}
    for lo, hi in units:
        want_t = toggled < toggle_samples
        if want_t:
            pr = gm.run(x[lo:hi], probe=True)
            acts = [a[:, :, :] for a in pr.activations]
            if mp:
                c = pm.mp_sample(x[lo], [a[0] for a in acts], int(res.exit_layer[lo]))
            else:
                c = pm.op_batch(x[lo:hi], [a[:, 0, :] for a in acts], res.exit_layer[lo:hi])
        else:
            key = tuple(res.exit_layer[lo:hi].tolist())
            if key not in counts_of:
                counts_of[key] = (pm.mp_sample(x[lo], [], key[0], toggles=False) if mp else
                                  pm.op_batch(x[lo:hi], [], res.exit_layer[lo:hi], toggles=False))
            c = counts_of[key]
        toggled += (hi - lo) if want_t else 0
        inferences.append((c, want_t, lo, hi))
        for i in range(lo, hi):
            row = {"index": i, "label": int(res.label[i]), "exit_layer": int(res.exit_layer[i]),
                   "cycles": c.cycles, "macs": c.macs // (hi - lo) if not mp else c.macs}
            if mp:
                row.update({"pe_ops": c.pe_ops, "weight_reads": c.weight_reads, "act_reads": c.act_reads,
                            "act_writes": c.act_writes})
                if want_t:
                    row["toggles"] = dict(c.toggles)
            samples.append(row)
    t_act = time.perf_counter() - t1
    return {"samples": samples, "summary": summarise(cfg, res, inferences, n),
            "timing": {"golden_s": round(t_gold, 3), "activity_s": round(t_act, 3),
                       "toggled_samples": toggled}}


def summarise(cfg, res, inferences, n: int) -> dict:
    pes = cfg.rows * cfg.cols
    cyc = np.array([c.cycles for c, *_ in inferences], dtype=np.float64)
    per_unit = lambda k: float(np.mean([getattr(c, k) for c, *_ in inferences]))  # noqa: E731
    tot_cycles = cyc.sum()
    macs = sum(c.macs for c, *_ in inferences)
    pe_ops = sum(c.pe_ops for c, *_ in inferences)
    hist = np.bincount(res.exit_layer, minlength=cfg.n_layers + 1)[1:]
    # toggles: per-layer means over the sampled inferences, weighted by how many ran the layer
    tog = {k: 0.0 for k in COMPONENTS}
    rse = {}
    sampled = [c for c, t, *_ in inferences if t]
    if sampled:
        units_total = len(inferences)
        for layer in range(cfg.n_layers):
            ran = [c.layer_toggles[layer] for c in sampled if len(c.layer_toggles) > layer]
            n_ran = sum(1 for c, *_ in inferences if _depth(c) > layer)
            if not ran or not n_ran:
                continue
            for k in COMPONENTS:
                v = np.array([r[k] for r in ran], dtype=np.float64)
                tog[k] += v.mean() * n_ran / units_total
        load = np.array([sum(c.toggles.values()) - sum(sum(lt.values()) for lt in c.layer_toggles)
                         for c in sampled], dtype=np.float64)
        tog["act_write"] += float(load.mean())
        tots = np.array([sum(c.toggles.values()) for c in sampled], dtype=np.float64)
        if len(tots) > 1 and tots.mean() > 0:
            rse["total"] = float(tots.std(ddof=1) / np.sqrt(len(tots)) / tots.mean())
    full = inference_cycles(cfg, cfg.n_layers, batch=cfg.rows if cfg.mode == "op" else None)
    compute = sum(l["phases"].get("stream", 0) + l["phases"].get("head_stream", 0) for l in full["layers"])
    return {
        "inferences": len(inferences), "samples": n,
        "cycles_per_inference": float(cyc.mean()),
        "latency_us": float(cyc.mean() / cfg.clock_mhz),
        "cycles_per_sample": float(tot_cycles / n),
        "macs_per_sample": float(macs / n),
        "utilisation_useful": float(macs / (pes * tot_cycles)),
        "utilisation_pe_busy": float(pe_ops / (pes * tot_cycles)),
        "weight_reads_per_inference": per_unit("weight_reads"),
        "bias_reads_per_inference": per_unit("bias_reads"),
        "act_reads_per_inference": per_unit("act_reads"),
        "act_writes_per_inference": per_unit("act_writes"),
        "exit_histogram": {str(i + 1): int(h) for i, h in enumerate(hist)},
        "toggles_per_inference": {k: round(v, 1) for k, v in tog.items()},
        "toggles_rel_std_error": rse,
        "full_depth": {"cycles": full["total"],
                       "layers": [{"layer": l["layer"], "cycles": l["cycles"], "phases": l["phases"]}
                                  for l in full["layers"]],
                       "stream_fraction": compute / full["total"]},
    }


def _depth(c) -> int:
    return len(c.layer_toggles) if c.layer_toggles else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.toggle_samples < 0:
        raise FFAccelError(f"--toggle-samples={args.toggle_samples} out of range (allowed: >= 0)")
    t0 = time.perf_counter()
    wl = load_workload(args)
    rep = analyse(wl, args.toggle_samples)
    rep["timing"]["total_s"] = round(time.perf_counter() - t0, 3)
    out = {"config": wl.cfg.to_dict(resolved=True), "workload": wl.source, **rep}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = rep["summary"]
    print(f"{wl.cfg.summary()}  {s['samples']} samples, {s['inferences']} inferences")
    print(f"  cycles/inference {s['cycles_per_inference']:.0f} ({s['latency_us']:.1f} us at "
          f"{wl.cfg.clock_mhz:g} MHz); full depth {s['full_depth']['cycles']}")
    print(f"  MACs/sample {s['macs_per_sample'] / 1e6:.3f} M; utilisation useful {s['utilisation_useful'] * 100:.1f}%, "
          f"PE busy {s['utilisation_pe_busy'] * 100:.1f}%")
    print(f"  per inference: weight reads {s['weight_reads_per_inference']:.0f}, activation reads "
          f"{s['act_reads_per_inference']:.0f}, writes {s['act_writes_per_inference']:.0f}")
    print("  toggles/inference: " + ", ".join(f"{k} {v:.3g}" for k, v in s["toggles_per_inference"].items()))
    print(f"  exit histogram {s['exit_histogram']}; wall {rep['timing']['total_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
