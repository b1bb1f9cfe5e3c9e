"""RSqrt unit (Amaranth simulator) against intops.rsqrt, the golden model's function: one
value per cycle in, each answer ``RSqrt.LATENCY`` cycles later."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.hw.rsqrt import RSqrt
from ffaccel.model.intops import rsqrt


@pytest.mark.parametrize("gbits,frac,index_bits", [(27, 12, 6), (12, 8, 3), (9, 6, 2), (33, 16, 8)])
def test_rsqrt_unit_is_bit_exact(gbits, frac, index_bits):
    dut = RSqrt(gbits, frac, index_bits)
    rng = np.random.default_rng(gbits)
    g = np.unique(np.concatenate([
        np.arange(0, min(1 << gbits, 600)),
        [(1 << e) + d for e in range(gbits) for d in (-1, 0, 1) if 0 <= (1 << e) + d < (1 << gbits)],
        rng.integers(0, 1 << gbits, size=300)]))
    want_m, want_s = rsqrt(g, frac, index_bits)
    got = []

    async def bench(ctx):
        for i, v in enumerate(g.tolist() + [0] * RSqrt.LATENCY):
            ctx.set(dut.g, v)
            if i >= RSqrt.LATENCY:
                got.append((ctx.get(dut.m), ctx.get(dut.s)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(zip(want_m.tolist(), want_s.tolist()))


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_rsqrt_unit_validates():
    with pytest.raises(ValueError, match="gbits"):
        RSqrt(0, 12, 6)
    with pytest.raises(ValueError, match="index_bits"):
        RSqrt(20, 12, 11)
