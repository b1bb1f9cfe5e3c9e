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


@lru_cache(maxsize=None)
def normalised_dot_bound(n: int, vmax: int, frac: int, index_bits: int, up: int) -> int:
    """Largest |round(v . h * m * 2**(up - frac - s))| over integer h != 0 of length ``n`` and
    integer v with |v_j| <= ``vmax``, where (m, s) = rsqrt(h . h) (the table above).

    Cauchy-Schwarz gives |v . h| <= sqrt(n) * vmax * sqrt(g); with g = 4**s * mu, mu below
    the top ``mu_hi`` of its table interval, sqrt(g) * m / 2**(frac + s) < m * sqrt(mu_hi) /
    2**frac. The bound is computed in integers (a squared ceiling, then a ceiling root), so
    it is exact up to rounding upwards."""
    t = index_bits - 1
    table = rsqrt_table(frac, index_bits)
    best = 0
    for par in (0, 1):
        for i in range(1 << t):
            # mu_hi = (2**(t+1) + 2i + 2) / 2**(t+1) * 2**par
            num = n * vmax * vmax * table[(par << t) | i] ** 2 * (((1 << (t + 1)) + 2 * i + 2) << par)
            den = 1 << (2 * frac + t + 1)
            if up >= 0:
                num <<= 2 * up
            else:
                den <<= -2 * up
            q = -(-num // den)
            r = math.isqrt(q)
            best = max(best, r if r * r >= q else r + 1)
    return best


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


# ------------------------------------------------------------------ BSFF random source
# Binary stochastic units draw one 32-bit word per (inference, layer, copy, neuron): a
# counter-based hash of that position, so the golden model reproduces every bit without
# replaying the engine's order of work, and a full-depth run draws the same bits as an
# early-exit run for the layers both compute (docs/architecture.md, "Binary stochastic FF").
#
#   epoch state e_i = xorshift32^(i+1)(seed)        inference i since reset (0-based)
#   a = e_i ^ (layer << 24) ^ (copy << 8);  b = neuron
#   5 rounds: a = (rotr(a, 8) + b) ^ K_r;  b = rotl(b, 3) ^ a     (Speck64's round, keys K_r)
#   u = b;  unit k of the tie fires when byte k of u < p
#
# xorshift32 (Marsaglia 2003, shifts 13, 17, 5) has period 2**32 - 1 over non-zero states.
BSFF_HASH_ROUNDS = 5
#: round keys: the first hexadecimal digits of pi's fraction (nothing up the sleeve)
BSFF_ROUND_KEYS = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822)
MASK32 = 0xFFFFFFFF


def xorshift32(x: int) -> int:
    """One step of Marsaglia's xorshift32 (13, 17, 5)."""
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


_EPOCHS: dict[int, list[int]] = {}


def bsff_epoch_states(seed: int, n: int) -> list[int]:
    """The epoch states of inferences 0..n-1 since reset: ``xorshift32^(i+1)(seed)``."""
    if not 1 <= seed <= MASK32:
        raise ValueError(f"bsff seed {seed} must be 1..2**32-1 (xorshift32 stays at 0 forever)")
    seq = _EPOCHS.setdefault(seed, [])
    x = seq[-1] if seq else seed
    while len(seq) < n:
        x = xorshift32(x)
        seq.append(x)
    return seq[:n]


def bsff_hash(a, b):
    """The 5-round hash of (a, b) (numpy integer arrays, broadcast): the 32-bit word u
    (uint32 arithmetic: additions and shifts wrap at 2**32 as in hardware)."""
    import numpy as np

    a = np.asarray(np.asarray(a, dtype=np.uint64) & np.uint64(MASK32), dtype=np.uint32)
    b = np.asarray(np.asarray(b, dtype=np.uint64) & np.uint64(MASK32), dtype=np.uint32)
    a, b = np.broadcast_arrays(a, b)
    s8, s24, s3, s29 = (np.uint32(v) for v in (8, 24, 3, 29))
    for key in BSFF_ROUND_KEYS[:BSFF_HASH_ROUNDS]:
        a = (((a >> s8) | (a << s24)) + b) ^ np.uint32(key)
        b = ((b << s3) | (b >> s29)) ^ a
    return b


def bsff_key(epoch_state, layer: int, copy):
    """The hash's first word for a layer and copy (``copy`` < 2**16, ``layer`` < 64)."""
    import numpy as np

    return np.asarray(epoch_state, dtype=np.uint64) ^ np.uint64(layer << 24) ^ \
        (np.asarray(copy, dtype=np.uint64) << np.uint64(8))


@lru_cache(maxsize=None)
def bsff_sigmoid_table(afrac: int, zrange_bits: int = 3, pbits: int = 8) -> tuple[int, ...]:
    """Firing probability at ``pbits``: entry ``i`` is ``round_half_up(2**pbits *
    sigmoid(z))`` for ``z = (i - 2**(afrac + zrange_bits)) * 2**-afrac``, i.e. the
    pre-activations in [-2**zrange_bits, 2**zrange_bits) (a ROM in hardware; the golden
    model and the RTL read this same table)."""
    half = 1 << (afrac + zrange_bits)
    one = 1 << pbits
    return tuple(int(math.floor(one / (1.0 + math.exp(-(i - half) / (1 << afrac))) + 0.5))
                 for i in range(2 * half))


# ---------------------------------------------------------------------------- cosine goodness
# PhyLL (Momeni et al., Science 2023) scores a layer by the cosine similarity of its output
# with a fixed random unit vector r_l. Here r_l's entries are signed COS_RBITS-bit codes
# from the same hash as the BSFF random source (so an engine can make them on chip), keyed
# by (COS_KEY, layer, neuron); the code -2**(bits-1) is folded to 0 so the range is symmetric.
COS_KEY = 0x636F7331          # "cos1"


@lru_cache(maxsize=None)
def _cos_ref(layer: int, n: int, bits: int) -> tuple[int, ...]:
    import numpy as np

    u = bsff_hash(np.uint64(COS_KEY ^ (layer << 24)), np.arange(n, dtype=np.uint64))
    v = (u >> np.uint32(32 - bits)).astype(np.int64) - (1 << (bits - 1))
    v[v == -(1 << (bits - 1))] = 0
    return tuple(int(a) for a in v)


def cos_reference(layer: int, n: int, bits: int = 8):
    """Layer ``layer``'s (0-based) fixed reference vector: ``n`` signed codes (int64 array)."""
    import numpy as np

    return np.asarray(_cos_ref(layer, n, bits), dtype=np.int64)


@lru_cache(maxsize=None)
def cos_scale(layer: int, n: int, bits: int = 8, kfrac: int = 24) -> int:
    """round(2**kfrac / ||r_l||), from integer square roots (identical everywhere); 0 for an
    all-zero r_l (then the goodness is 0)."""
    s = sum(v * v for v in _cos_ref(layer, n, bits))
    if s == 0:
        return 0
    two_k = math.isqrt((1 << (2 * kfrac + 2)) // s)          # floor(2 * 2**kfrac / ||r||)
    return (two_k + 1) // 2
