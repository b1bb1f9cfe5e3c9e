"""LLS periodic-basis exit heads (Apolinario et al., "Local Learning rule inspired by
neural activity Synchronization", WACV 2025): zero-parameter OP heads whose weights are a
fixed periodic basis, one row per class: ``sin(f_c j)`` or its sign (a square wave), with
``f = linspace(50, 512, classes)``.

The basis is defined in integers (``ffaccel.fixedpoint``): the phase of input ``j`` for
class ``c`` is ``(j * F_c) mod 2**24`` with ``F_c`` the class's phase increment, so the
RTL generates it with one adder per lane (the phase accumulates input by input) and the
golden model computes the same values. Square: +1 in the first half-period, -1 in the
second (LLS's ``sign(sin)`` except that an exact zero phase counts as +1). Sin: a
2**6-entry table at amplitude ``2**(wbits-1) - 1``. Weights are these integers at
``lls_hfrac`` fractional bits; biases are zero.
"""

from __future__ import annotations

import numpy as np

from ..config import AccelConfig
from ..fixedpoint import LLS_PHASE_BITS, LLS_SIN_TABLE_BITS, lls_increments, lls_sin_table


def lls_phases(classes: int, n: int) -> np.ndarray:
    """(classes, n) phases ``(j * F_c) mod 2**LLS_PHASE_BITS``."""
    inc = np.asarray(lls_increments(classes), dtype=np.int64)
    return (np.arange(n, dtype=np.int64)[None, :] * inc[:, None]) % (1 << LLS_PHASE_BITS)


def lls_basis(cfg: AccelConfig, n: int) -> np.ndarray:
    """Integer basis (classes, n) of ``cfg.exit_head`` for a layer of width ``n``."""
    if cfg.exit_head == "learned":
        raise ValueError("lls_basis: the config has learned heads")
    ph = lls_phases(cfg.classes, n)
    if cfg.exit_head == "lls":
        lut = np.asarray(lls_sin_table(cfg.lls_amplitude), dtype=np.int64)
        return lut[ph >> (LLS_PHASE_BITS - LLS_SIN_TABLE_BITS)]
    return np.where(ph < (1 << (LLS_PHASE_BITS - 1)), 1, -1).astype(np.int64)


def lls_heads(cfg: AccelConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(head weights, head biases) of every layer: the basis and zeros."""
    hs = [lls_basis(cfg, n) for n in cfg.layers]
    return hs, [np.zeros(cfg.classes, dtype=np.int64) for _ in cfg.layers]
