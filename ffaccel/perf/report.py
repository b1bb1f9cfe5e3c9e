"""Cycles, utilisation, MACs, memory accesses and bit toggles of the engine for a workload,
without simulating RTL (the library behind ``python -m ffaccel.perf``).

Cycles, MACs and accesses are exact for every sample (closed form from the exit depth).
Toggles are exact for the first M samples; the summary's per-inference toggles extrapolate
them to all samples layer by layer (mean toggles of each layer over the sampled inferences
that ran it, times how many inferences ran it), so the error is the sampling error of
those means (reported as the relative standard error).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import AccelConfig
from ..errors import FFAccelError
from ..model.golden import GoldenModel
from ..schedule import schedule
from ..workload import Workload, dataset_workload, random_workload
from .activity import COMPONENTS, PerfModel, dense_model
from ..model.exits import layer_macs
from .cycles import inference_maps


def load_workload(overrides: Mapping[str, Any], *, checkpoint: str | None = None, dataset: str | None = None,
                  limit: int | None = None, seed: int = 0, samples: int = 8, k: float | None = None) -> Workload:
    """The workload of the shared tool options: a checkpoint's network and formats
    (``overrides``, config keys such as ``ffaccel.cli.config_overrides(args)``, may change
    the array, memory and exit rule; ``k`` recalibrates the exit thresholds) with its data
    set, or a random one of the config ``overrides`` from ``seed``."""
    if checkpoint:
        if not dataset:
            raise FFAccelError("--checkpoint needs --dataset")
        from ..model.checkpoint import checkpoint_config     # torch: only on this path
        _, cfg = checkpoint_config(checkpoint, overrides)
        return dataset_workload(checkpoint, dataset, limit, overrides=cfg, k=k)
    cfg = AccelConfig.from_dict(dict(overrides))
    if dataset:
        raise FFAccelError("--dataset needs --checkpoint")
    return random_workload(cfg, seed, samples)


def analyse(wl: Workload, toggle_samples: int, models: tuple | None = None) -> dict:
    """Per-sample figures and a summary for a workload. ``models``: a prepared
    (GoldenModel, PerfModel) pair of ``wl.qm`` (their set-up is per model, not per sample)."""
    cfg, qm, x = wl.cfg, wl.qm, wl.x
    gm, pm = models if models is not None else (GoldenModel(qm), PerfModel(qm))
    t0 = time.perf_counter()
    # physical layers: P's answers recorded once, so every run below sees the same ones
    resp = gm.run(x).responses if any(cfg.physical_at) else None
    res = gm.run(x, early_exit=True, responses=resp)
    t_gold = time.perf_counter() - t0
    n = len(x)
    mp = cfg.mode == "mp"
    units = [(lo, lo + size) for lo, size in schedule(cfg).batches(n)]
    samples, inferences = [], []
    t1 = time.perf_counter()
    toggled = 0
    # without toggles an inference's counters depend only on its exit depths: compute each
    # distinct case once (a 10k-sample run has a handful of them); under zero skipping they
    # depend on the data too: the non-zero maps of every inference, from the golden
    # activations (a chunk of inferences at a time)
    counts_of: dict = {}
    macs_by_depth = np.cumsum(layer_macs(cfg.fan_in, cfg.layers, cfg.classes, cfg.mode, cfg.share_layer1))
    maps_of = inference_maps(gm, x, res.exit_layer, units) if cfg.zero_skip else None
    for lo, hi in units:
        want_t = toggled < toggle_samples
        if want_t:
            r = None if resp is None else [None if a is None else a[lo:hi] for a in resp]
            pr = gm.run(x[lo:hi], probe=True, epoch=lo // schedule(cfg).batch_size,   # (BSFF's random bits)
                        responses=r)
            acts = [a[:, :, :] for a in pr.activations]
            maps = maps_of[lo] if maps_of else None          # (zero skipping: already made)
            if mp:
                c = pm.mp_batch(x[lo:hi], acts, res.exit_layer[lo:hi], maps=maps, responses=r)
            else:
                c = pm.op_batch(x[lo:hi], [a[:, 0, :] for a in acts], res.exit_layer[lo:hi], maps=maps, responses=r)
        elif cfg.zero_skip:
            c = (pm.mp_batch(x[lo:hi], [], res.exit_layer[lo:hi], toggles=False, maps=maps_of[lo]) if mp else
                 pm.op_batch(x[lo:hi], [], res.exit_layer[lo:hi], toggles=False, maps=maps_of[lo]))
        else:
            key = tuple(res.exit_layer[lo:hi].tolist())
            if key not in counts_of:
                counts_of[key] = pm.shape_counters(res.exit_layer[lo:hi])
            c = counts_of[key]
        toggled += (hi - lo) if want_t else 0
        inferences.append((c, want_t, lo, hi))
        for i in range(lo, hi):
            row = {"index": i, "label": int(res.label[i]), "exit_layer": int(res.exit_layer[i]),
                   "cycles": c.cycles, "macs": int(macs_by_depth[res.exit_layer[i] - 1]) if mp else c.macs // (hi - lo)}
            if mp and hi - lo == 1:     # (an MP batch's counters are the batch's)
                row.update({"pe_ops": c.pe_ops, "weight_reads": c.weight_reads, "act_reads": c.act_reads,
                            "act_writes": c.act_writes})
                if want_t:
                    row["toggles"] = dict(c.toggles)
            samples.append(row)
    t_act = time.perf_counter() - t1
    summary = summarise(cfg, res, inferences, n)
    if cfg.zero_skip:
        summary["zero_skip"] = skip_summary(qm, inferences, [res.exit_layer[lo:hi] for lo, hi in units], maps_of)
    return {"samples": samples, "summary": summary,
            "timing": {"golden_s": round(t_gold, 3), "activity_s": round(t_act, 3),
                       "toggled_samples": toggled}}


def skip_summary(qm, inferences, exits, maps_of) -> list[dict]:
    """Per layer, what zero skipping saved over the inferences that ran it: weight reads
    and the layer's cycles, against the same inferences streaming every input."""
    from .cycles import lengths_of
    cfg = qm.cfg
    full = dense_model(qm)
    sch = schedule(cfg)
    refs: dict = {}
    tot = np.zeros((cfg.n_layers, 5))          # inferences, reads, reads streaming all, cycles, cycles all
    for (c, _, lo, hi), ex in zip(inferences, exits):
        key = tuple(ex.tolist())
        if key not in refs:
            refs[key] = full.shape_counters(ex)
        ref, deepest = refs[key], int(ex.max())
        cyc = sch.inference_cycles(deepest, hi - lo, lengths_of(cfg, maps_of[lo]), ex)["layers"]
        cyc_all = sch.inference_cycles(deepest, hi - lo, sch.every_input, ex)["layers"]
        for layer in range(deepest):
            tot[layer] += (1, c.layer_counts[layer]["weight_reads"], ref.layer_counts[layer]["weight_reads"],
                           cyc[layer]["cycles"], cyc_all[layer]["cycles"])
    return [{"layer": layer + 1, "inferences": int(t[0]),
             "weight_reads_per_inference": t[1] / t[0], "weight_reads_skipped": 1 - t[1] / t[2],
             "cycles_per_inference": t[3] / t[0], "cycles_streaming_every_input": t[4] / t[0],
             "cycle_reduction": t[4] / t[3]}
            for layer, t in enumerate(tot) if t[0]]


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
    sch = schedule(cfg)
    # full depth: to the decision layer (under zero skipping: streaming every input, the
    # most it can take)
    full = sch.inference_cycles(cfg.decision_layer, sch.batch_size, sch.every_input)
    compute = sum(l["phases"].get("stream", 0) + l["phases"].get("head_stream", 0) for l in full["layers"])
    return {
        "inferences": len(inferences), "samples": n,
        "cycles_per_inference": float(cyc.mean()),
        "latency_us": float(cyc.mean() / cfg.clock_mhz),
        "cycles_per_sample": float(tot_cycles / n),
        "macs_per_sample": float(macs / n),
        # what the PEs did (a multiply-add each; BSFF: an add): streamed inputs x enabled PEs
        "pe_ops_per_sample": float(pe_ops / n),
        # (zero skipping: the skipped products are 0, not useful work; what the PEs do is)
        "utilisation_useful": float((pe_ops if cfg.zero_skip else macs) / (pes * tot_cycles)),
        "utilisation_pe_busy": float(pe_ops / (pes * tot_cycles)),
        "weight_reads_per_inference": per_unit("weight_reads"),
        "weight_reads_per_sample": float(sum(c.weight_reads for c, *_ in inferences) / n),
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
