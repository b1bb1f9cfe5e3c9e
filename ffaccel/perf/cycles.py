"""Cycle counts of the engine: the schedule's passes summed (docs/architecture.md,
"Schedule"). Kept as a module so callers can say ``perf.cycles.inference_cycles``; the
rules live in :mod:`ffaccel.schedule` alone. Under zero skipping the stream lengths
depend on the data: :func:`stream_lengths` reads them off the golden activations as the
engine's non-zero map (``hw/nzmap.py``) holds them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import AccelConfig
from ..schedule import label_slot_nonzero, live_samples, schedule, skip_entries


def layer_phases(cfg: AccelConfig, layer: int, batch: int | None = None,
                 kept: tuple[int | None, int | None] | None = None, live=None) -> list[tuple[str, int]]:
    """(phase, cycles) of one layer (0-based): :meth:`ffaccel.schedule.Schedule.layer_phases`."""
    return schedule(cfg).layer_phases(layer, batch, kept, live)


def inference_cycles(cfg: AccelConfig, exit_layer: int, batch: int | None = None,
                     kept: list | None = None, exits=None) -> dict:
    """Cycles of one inference: :meth:`ffaccel.schedule.Schedule.inference_cycles`."""
    return schedule(cfg).inference_cycles(exit_layer, batch, kept, exits)


def input_nonzero(cfg: AccelConfig, xs: np.ndarray) -> np.ndarray:
    """The non-zero map of the loaded inputs ``xs`` (b, inputs) of one inference: a pixel
    that is non-zero in some row; the label slots as the first layer's operands there
    (MP: some copy holds the label value; OP: the neutral value)."""
    nz = (np.asarray(xs) != 0).any(axis=0)
    nz[: cfg.classes] = label_slot_nonzero(cfg)
    return nz


def nonzero_maps(cfg: AccelConfig, xs: np.ndarray, acts: Sequence[np.ndarray],
                 exit_layers: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per visited layer of one inference, the non-zero maps its pass and its OP head pass
    read (``hw/nzmap.py``): boolean over the pass's inputs.

    ``xs`` (b, inputs) the inference's input codes; ``acts[l]`` layer l's activations, MP
    (b, classes, n_l) of the samples' label copies, OP (b, n_l) of the batch rows;
    ``exit_layers`` (b,) each sample's exit layer (1-based). OP: a layer's map is the OR of
    the rows its pass wrote (the samples still in the batch). MP: each copy group the pass
    streams (``Schedule.live_groups``) reads the OR of the maps of its live samples (a
    sample's map: its image, or the OR of its label copies), so a layer's entry is a
    tuple, one map per streamed group (the shared layer 1: one group, every sample)."""
    mp = cfg.mode == "mp"
    exits = np.asarray(exit_layers)
    out = []
    if mp:
        sched = schedule(cfg)
        for layer in range(int(exits.max())):
            live = live_samples(exits, layer)
            if layer == 0:
                own = {b: input_nonzero(cfg, xs[b:b + 1]) for b in live}
            else:
                own = {b: (np.asarray(acts[layer - 1][b]) != 0).any(axis=0) for b in live}
            p = sched.layer_passes[layer]
            maps = []
            for g in sched.live_groups(layer, live):
                samples = live if p.shared else [b for b in sched.group_samples(g) if b in own]
                maps.append(np.logical_or.reduce([own[b] for b in samples]))
            out.append((tuple(maps), None))
        return out
    for layer in range(int(exits.max())):
        if layer == 0:
            nz = input_nonzero(cfg, xs)
        else:
            nz = (np.asarray(acts[layer - 1])[exits > layer - 1] != 0).any(axis=0)
        hnz = (np.asarray(acts[layer])[exits > layer] != 0).any(axis=0)
        out.append((nz, hnz))
    return out


def pass_entries(cfg: AccelConfig, layer: int, head: bool, nonzero: np.ndarray | None) -> np.ndarray:
    """The stream of one tile of a pass (input indices in order, -1 an empty entry): every
    input, or under zero skipping :func:`ffaccel.schedule.skip_entries` of the pass's map."""
    sched = schedule(cfg)
    p = (sched.head_passes if head else sched.layer_passes)[layer]
    if cfg.zero_skip and p.skips:
        if nonzero is None:
            raise ValueError(f"zero skipping: the {p.kind} pass of layer {layer + 1} needs its non-zero map")
        return skip_entries(nonzero, p.k_first, p.k_first + p.k, cfg.cols)
    return np.arange(p.k_first, p.k_first + p.k)


def stream_lengths(cfg: AccelConfig, xs: np.ndarray, acts: Sequence[np.ndarray],
                   exit_layers: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """Per visited layer of one inference, the stream lengths of its pass and its OP head
    pass under zero skipping (None for a pass that streams every input), for
    :meth:`ffaccel.schedule.Schedule.inference_cycles`; arguments as :func:`nonzero_maps`."""
    return lengths_of(cfg, nonzero_maps(cfg, xs, acts, exit_layers))


def lengths_of(cfg: AccelConfig, maps: Sequence[tuple]) -> list[tuple[int | None, int | None]]:
    """:func:`stream_lengths` of the maps of :func:`nonzero_maps`."""
    sched = schedule(cfg)
    out = []
    for layer, (nz, hnz) in enumerate(maps):
        kl = None
        if sched.layer_passes[layer].skips:
            # MP: one length per streamed copy group
            kl = tuple(len(pass_entries(cfg, layer, False, g)) for g in nz) if cfg.mode == "mp" \
                else len(pass_entries(cfg, layer, False, nz))
        kh = None
        if cfg.mode == "op" and sched.head_passes[layer].skips:
            kh = len(pass_entries(cfg, layer, True, hnz))
        out.append((kl, kh))
    return out


def unit_stream_lengths(cfg: AccelConfig, xs: np.ndarray, probed: Sequence[np.ndarray],
                        exit_layers: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """:func:`stream_lengths` of one inference (an MP or OP batch) from the golden
    model's probed activations of its samples (``GoldenResult.activations``, each
    (b, copies, n_l))."""
    mp = cfg.mode == "mp"
    return stream_lengths(cfg, xs, [a if mp else a[:, 0] for a in probed], exit_layers)


def inference_maps(gm, x: np.ndarray, exit_layer: np.ndarray, units: Sequence[tuple[int, int]],
                   chunk: int = 64) -> dict:
    """The non-zero maps (:func:`nonzero_maps`) of every inference ``(lo, hi)`` of
    ``units`` over samples ``x`` (``exit_layer`` their exits), by its first sample, from
    the golden model ``gm``'s activations, ``chunk`` inferences at a time (the activations
    of a whole test set would not fit in memory)."""
    cfg = gm.qm.cfg
    mp = cfg.mode == "mp"
    out = {}
    for i in range(0, len(units), chunk):
        part = units[i:i + chunk]
        a0, a1 = part[0][0], part[-1][1]
        acts = gm.run(x[a0:a1], probe=True, epoch=a0 // schedule(cfg).batch_size).activations   # (BSFF: its bits)
        for lo, hi in part:
            a = [v[lo - a0:hi - a0] if mp else v[lo - a0:hi - a0, 0] for v in acts]
            out[lo] = nonzero_maps(cfg, x[lo:hi], a, exit_layer[lo:hi])
    return out
