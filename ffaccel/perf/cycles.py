"""Cycle counts of the engine: the schedule's passes summed (docs/architecture.md,
"Schedule"). Kept as a module so callers can say ``perf.cycles.inference_cycles``; the
rules live in :mod:`ffaccel.schedule` alone."""

from __future__ import annotations

from ..config import AccelConfig
from ..schedule import schedule


def layer_phases(cfg: AccelConfig, layer: int, batch: int | None = None) -> list[tuple[str, int]]:
    """(phase, cycles) of one layer (0-based): :meth:`ffaccel.schedule.Schedule.layer_phases`."""
    return schedule(cfg).layer_phases(layer, batch)


def inference_cycles(cfg: AccelConfig, exit_layer: int, batch: int | None = None) -> dict:
    """Cycles of one inference: :meth:`ffaccel.schedule.Schedule.inference_cycles`."""
    return schedule(cfg).inference_cycles(exit_layer, batch)
