"""Cycle counts of the engine's controller, phase by phase (docs/architecture.md §4).

Derived from the controller's state sequence, not fitted: START (1) and NORM (one cycle
per copy) set up the pass; STREAM issues each tile in ``P`` cycles; FLUSH waits for the
drain and the 4-stage post-processing of the last tile; EXIT decides (MP: 1 cycle; OP: one
cycle per row, then 1). ``res_cycles`` of the RTL counts from START to the final exit
decision inclusive; tests check these formulas against it on random configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import AccelConfig
from ..hw.memmap import ceil_div, memory_map

POST_LATENCY = 6        # last drained row -> pipeline empty: go + 4 stages + the FLUSH test


@dataclass(frozen=True)
class Pass:
    """One streaming pass (a layer, or an OP head) over ``tiles`` tiles."""
    name: str
    tiles: int
    k: int              # inputs streamed per tile through the array
    periods: tuple      # tile period of each copy group
    stream: int         # cycles of STREAM (all groups and tiles)
    flush: int          # cycles of FLUSH after the last tile
    macs_issued: int    # PE-operations the array performs (rows enabled x cols x K per tile)


def _pass(name: str, tiles: int, k: int, groups: list[int], cols: int, label_phase: int = 0,
          enabled_rows: list[int] | None = None) -> Pass:
    if label_phase:
        periods = tuple(label_phase + max(k, n) for n in groups)
        span = k + label_phase
    else:
        periods = tuple(max(k, n) for n in groups)
        span = k
    stream = tiles * sum(periods)
    flush = span + groups[-1] + POST_LATENCY - periods[-1]
    en = enabled_rows if enabled_rows is not None else groups
    return Pass(name, tiles, k, periods, stream, flush, tiles * k * cols * sum(en))


def layer_phases(cfg: AccelConfig, layer: int, batch: int | None = None) -> list[tuple[str, int]]:
    """(phase, cycles) of one layer (0-based) as the controller runs it.

    MP: NORM, STREAM, FLUSH, EXIT. OP (``batch`` samples): STREAM, FLUSH, NORM, head STREAM,
    head FLUSH, EXIT (per row), EXIT2 — the first layer's NORM is part of the set-up.
    """
    R, C, NC = cfg.rows, cfg.cols, cfg.classes
    mm = memory_map(cfg)
    tiles = mm.tiles[layer]
    if cfg.mode == "mp":
        if cfg.label_share and layer == 0:
            p = _pass("layer", tiles, cfg.inputs - NC, [NC], C, label_phase=NC, enabled_rows=[1])
        else:
            g = ceil_div(NC, R)
            groups = [R] * (g - 1) + [NC - (g - 1) * R]
            p = _pass("layer", tiles, cfg.fan_in[layer], groups, C)
        return [("norm", NC), ("stream", p.stream), ("flush", p.flush), ("exit", 1)]
    b = batch if batch is not None else R
    p = _pass("layer", tiles, cfg.fan_in[layer], [b], C)
    h = _pass("head", mm.head_tiles, cfg.layers[layer], [b], C)
    return [("stream", p.stream), ("flush", p.flush), ("norm", R), ("head_stream", h.stream),
            ("head_flush", h.flush), ("exit", R), ("exit2", 1)]


def inference_cycles(cfg: AccelConfig, exit_layer: int, batch: int | None = None) -> dict:
    """Cycles of one inference (MP sample, or OP batch whose deepest exit is ``exit_layer``),
    from START to the final exit decision: ``{"total", "setup", "layers": [...]}``."""
    if not 1 <= exit_layer <= cfg.n_layers:
        raise ValueError(f"exit_layer={exit_layer} out of range 1..{cfg.n_layers}")
    setup = 1 if cfg.mode == "mp" else 1 + cfg.rows
    layers = []
    for layer in range(exit_layer):
        ph = layer_phases(cfg, layer, batch)
        layers.append({"layer": layer + 1, "phases": dict(ph), "cycles": sum(c for _, c in ph)})
    return {"total": setup + sum(l["cycles"] for l in layers), "setup": setup, "layers": layers}
