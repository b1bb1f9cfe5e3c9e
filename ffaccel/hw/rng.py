"""The random source of binary stochastic units (``AccelConfig.neuron == "bsff"``): one
32-bit word per lane of every drained layer row, a hash of the row's position, bit-exact
with ``ffaccel.fixedpoint.bsff_hash`` (docs/architecture.md, "Binary stochastic FF")."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixedpoint import BSFF_HASH_ROUNDS, BSFF_ROUND_KEYS, MASK32
from ..schedule import Schedule
from .interfaces import const_mul, row_layout

WORD = 32


def _xorshift32(x):
    x1 = x ^ (x << 13)[:WORD]
    x2 = x1 ^ (x1 >> 17)
    return x2 ^ (x2 << 5)[:WORD]


def _round(a, b, key: int):
    """Speck64's round: a = (rotr(a, 8) + b) ^ key; b = rotl(b, 3) ^ a."""
    a2 = (a.rotate_right(8) + b)[:WORD] ^ Const(key, WORD)
    return a2, b.rotate_left(3) ^ a2


class RandomSource(wiring.Component):
    """Counter-based random words for the BSFF sampler.

    - ``epoch``: a 32-bit xorshift32 register, reset to ``bsff_seed``, stepped on ``start``
      (each inference: inference i since reset uses ``xorshift32^(i+1)(seed)``);
    - per lane ``c`` of a ``row`` (valid, layer, copy ``cp``, tile): the hash of
      ``a = epoch ^ (layer << 24) ^ (cp << 8)`` and ``b = tile * cols + c`` (the neuron),
      five rounds, one per register stage, so ``u`` belongs to the row that entered
      :attr:`LATENCY` cycles earlier (one more with ``fpga_regs``: the row is registered
      first, as post-processing's stage B0 does), aligned with post-processing's stage C3.

    A hash of the position rather than a stream: the golden model draws the same bits
    without replaying the engine's order of work, and an early-exit run draws the same
    bits as a full-depth run for the layers both compute.
    """

    LATENCY = BSFF_HASH_ROUNDS

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"RandomSource: sched={sched!r} must be a Schedule")
        cfg = sched.cfg
        if not cfg.bsff:
            raise ValueError("RandomSource: the config has no stochastic units (neuron='relu')")
        if sched.latency.postproc - (1 if cfg.fpga_regs else 0) < self.LATENCY:
            raise ValueError(f"RandomSource: post-processing has {sched.latency.postproc} stages, "
                             f"fewer than the hash's {self.LATENCY}")
        self.sched = sched
        super().__init__({
            "start": In(1),
            "row": In(row_layout(sched)),
            "u": Out(data.ArrayLayout(unsigned(WORD), cfg.cols)),
        })
        self.epoch = Signal(WORD, init=cfg.bsff_seed & MASK32)

    def step(self, epoch):
        """The epoch's next state (xorshift32); subclasses may override it (mutation tests)."""
        return _xorshift32(epoch)

    def elaborate(self, platform):
        m = Module()
        cfg = self.sched.cfg
        with m.If(self.start):
            m.d.sync += self.epoch.eq(self.step(self.epoch))
        row = self.row
        if cfg.fpga_regs:
            r0 = Signal.like(self.row, name="row_q")
            m.d.sync += r0.eq(self.row)
            row = r0
        base = Signal(32)
        m.d.comb += base.eq(const_mul(row.tile, cfg.cols))
        key = (self.epoch ^ (row.layer << 24) ^ (row.cp << 8))[:WORD]
        a = [key] * cfg.cols
        b = [(base + c)[:WORD] for c in range(cfg.cols)]
        for r in range(BSFF_HASH_ROUNDS):
            na = [Signal(WORD, name=f"a{r}_{c}") for c in range(cfg.cols)]
            nb = [Signal(WORD, name=f"b{r}_{c}") for c in range(cfg.cols)]
            for c in range(cfg.cols):
                a2, b2 = _round(a[c], b[c], BSFF_ROUND_KEYS[r])
                m.d.sync += [na[c].eq(a2), nb[c].eq(b2)]
            a, b = na, nb
        m.d.comb += [self.u[c].eq(b[c]) for c in range(cfg.cols)]
        return m
