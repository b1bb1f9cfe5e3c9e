"""Cycle-approximate performance model of the FF engine (exact against the RTL)."""

from .cycles import inference_cycles, layer_phases

__all__ = ["inference_cycles", "layer_phases"]
