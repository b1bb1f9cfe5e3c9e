"""Integer facts that both the config (for widths) and the datapath need, with no
dependencies: the reciprocal-square-root table and the ceil helpers. Everything here is
plain Python, so the config can derive exact widths from it."""

from __future__ import annotations

import math
from functools import lru_cache


def clog2(n: int) -> int:
    """ceil(log2(n)) for n >= 1 (0 for n == 1)."""
    return max(0, (n - 1).bit_length())


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@lru_cache(maxsize=None)
def rsqrt_table(frac: int, index_bits: int) -> tuple[int, ...]:
    """Reciprocal-square-root table, 2**index_bits entries of round(2**frac / sqrt(m_mid)).

    Index = (exponent parity, index_bits-1 mantissa bits after the leading one); m_mid is
    the middle of the mantissa interval, m in [1, 4). Computed with integer square roots,
    so the table is the same on every machine.
    """
    t = index_bits - 1
    out = []
    for par in (0, 1):
        for i in range(1 << t):
            # m_mid = (2**(t+1) + 2i + 1) / 2**(t+1) * 2**par ; entry = round(2**frac / sqrt(m_mid))
            den = ((1 << (t + 1)) + 2 * i + 1) << par
            two_x = math.isqrt((1 << (2 * frac + 2 + t + 1)) // den)   # floor(2 * 2**frac/sqrt(m_mid))
            out.append((two_x + 1) // 2)
    return tuple(out)


def rsqrt_widths(gbits: int, frac: int, index_bits: int) -> tuple[int, int]:
    """(mantissa bits, exponent bits) of the rsqrt unit for a ``gbits``-bit unsigned input:
    m is a table entry (its largest entry's bit length), s = floor(log2 g) >> 1."""
    return max(rsqrt_table(frac, index_bits)).bit_length(), max(1, ((gbits - 1) >> 1).bit_length())


# ---------------------------------------------------------------------------- LLS bases
# LLS (Apolinario et al., WACV 2025): class c's basis vector is sin(f_c * j) (or its sign)
# with f = linspace(50, 512, classes) radians per input index j. In hardware the phase
# f_c * j / (2 pi) is a LLS_PHASE_BITS-bit fraction accumulated by adding a per-class
# increment each input, so golden model and RTL share these integers exactly.
LLS_PHASE_BITS = 24
LLS_SIN_TABLE_BITS = 6
LLS_F_LO, LLS_F_HI = 50.0, 512.0


def lls_increments(classes: int) -> tuple[int, ...]:
    """Per-class phase increment: round(frac(f_c / 2 pi) * 2**LLS_PHASE_BITS)."""
    one = 1 << LLS_PHASE_BITS
    out = []
    for c in range(classes):
        f = LLS_F_LO + (LLS_F_HI - LLS_F_LO) * c / max(1, classes - 1)
        out.append(int(round((f / (2 * math.pi)) % 1.0 * one)) % one)
    return tuple(out)


@lru_cache(maxsize=None)
def lls_sin_table(amplitude: int) -> tuple[int, ...]:
    """sin at the middle of each of the 2**LLS_SIN_TABLE_BITS phase intervals, scaled to
    ``amplitude`` and rounded half away from zero (a small ROM in hardware)."""
    n = 1 << LLS_SIN_TABLE_BITS
    out = []
    for i in range(n):
        v = amplitude * math.sin(2 * math.pi * (i + 0.5) / n)
        out.append(int(math.copysign(math.floor(abs(v) + 0.5), v)))
    return tuple(out)
