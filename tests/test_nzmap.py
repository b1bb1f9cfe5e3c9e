"""NonzeroMap (zero skipping): bank writes OR their non-zero lanes into the word of their
set (and, in an MP batch, of their sample's map), loaded label slots take the first
layer's operand instead of the pixel, clears empty one set, reads are combinational and
OR the maps selected."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig
from ffaccel.hw.nzmap import NonzeroMap
from ffaccel.schedule import schedule


# (mode, label value, the label slots' bit): MP some copy holds the label value; OP every
# row holds the neutral value (label_value + 5) // 10, 0 for a label value of 3
CASES = [("mp", 0, 1), ("mp", 3, 1), ("op", 0, 1), ("op", 3, 0)]


@pytest.mark.parametrize("mode,label_value,label_bit", CASES)
def test_map_follows_writes_and_clears(mode, label_value, label_bit):
    cfg = AccelConfig(inputs=14, layers=(9, 5), classes=3, rows=2, cols=4, abits=4, afrac=1, mode=mode,
                      label_value=label_value, zero_skip=True)
    s = schedule(cfg)
    dut = NonzeroMap(s)
    rng = np.random.default_rng(1)
    C, A, D = cfg.cols, cfg.abits, s.bank_depth
    want = np.zeros((2, D, C), dtype=bool)
    seen = []

    def word(vals):
        return sum(int(v) << (c * A) for c, v in enumerate(vals))

    async def bench(ctx):
        ctx.set(dut.rsel, 1)
        # load a sample's pixels into set 0 (one lane per beat), then drain rows into set 1
        x = rng.integers(0, cfg.amax + 1, size=cfg.inputs)
        x[rng.random(cfg.inputs) < 0.5] = 0
        for k, v in enumerate(x):
            ctx.set(dut.load, {"lanes": 1 << (k % C), "set": 0, "bank": 0, "addr": k // C, "data": word([v] * C)})
            await ctx.tick()
            want[0, k // C, k % C] |= bool(label_bit) if k < cfg.classes else v != 0
        ctx.set(dut.load, {"lanes": 0})
        for bank in range(s.banks):
            for t in range(D):
                h = rng.integers(0, cfg.amax + 1, size=C) * (rng.random(C) < 0.4)
                ctx.set(dut.drain, {"lanes": (1 << C) - 1, "set": 1, "bank": bank, "addr": t, "data": word(h)})
                await ctx.tick()
                want[1, t] |= h != 0
        ctx.set(dut.drain, {"lanes": 0})
        for st in range(2):
            ctx.set(dut.rset, st)
            for t in range(D):
                ctx.set(dut.raddr, t)
                seen.append((st, t, ctx.get(dut.mask)))
        ctx.set(dut.clear, 0b10)                    # set 1 only
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for st in range(2):
            ctx.set(dut.rset, st)
            for t in range(D):
                ctx.set(dut.raddr, t)
                seen.append((st, t, ctx.get(dut.mask)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    bits = lambda row: sum(1 << c for c in range(C) if row[c])    # noqa: E731
    before = [(st, t, bits(want[st, t])) for st in range(2) for t in range(D)]
    after = [(st, t, bits(want[st, t]) if st == 0 else 0) for st in range(2) for t in range(D)]
    assert seen == before + after
    assert any(m for _, _, m in before[D:])          # the drained rows set bits


@pytest.mark.parametrize("mode,label_value,label_bit", CASES)
def test_label_bit_is_the_first_layers_operand(mode, label_value, label_bit):
    cfg = AccelConfig(inputs=14, layers=(9,), classes=3, rows=2, cols=4, abits=4, afrac=1, mode=mode,
                      label_value=label_value, zero_skip=True)
    assert NonzeroMap(schedule(cfg)).label_bit == label_bit


def test_mp_batch_keeps_a_map_per_sample():
    """Sample b's image (bank b of set 0) and label copies (banks b*classes ..) go to map b;
    a read ORs the maps ``rsel`` selects."""
    cfg = AccelConfig(inputs=14, layers=(9, 5), classes=3, rows=3, cols=4, abits=4, afrac=1, batch=3,
                      zero_skip=True)
    s = schedule(cfg)
    dut = NonzeroMap(s)
    rng = np.random.default_rng(2)
    C, A, D, NC, B = cfg.cols, cfg.abits, s.bank_depth, cfg.classes, cfg.batch
    assert dut.maps == B
    want = np.zeros((2, B, D, C), dtype=bool)
    seen = {}

    def word(vals):
        return sum(int(v) << (c * A) for c, v in enumerate(vals))

    async def bench(ctx):
        for b in range(B):                                   # images: bank b of set 0
            x = rng.integers(0, cfg.amax + 1, size=cfg.inputs) * (rng.random(cfg.inputs) < 0.3)
            for k, v in enumerate(x):
                ctx.set(dut.load, {"lanes": 1 << (k % C), "set": 0, "bank": b, "addr": k // C,
                                   "data": word([v] * C)})
                await ctx.tick()
                want[0, b, k // C, k % C] |= True if k < NC else v != 0
        ctx.set(dut.load, {"lanes": 0})
        for bank in range(s.banks):                          # label copies into set 1
            for t in range(D):
                h = rng.integers(0, cfg.amax + 1, size=C) * (rng.random(C) < 0.2)
                ctx.set(dut.drain, {"lanes": (1 << C) - 1, "set": 1, "bank": bank, "addr": t, "data": word(h)})
                await ctx.tick()
                want[1, bank // NC, t] |= h != 0
        ctx.set(dut.drain, {"lanes": 0})
        for st in range(2):
            for sel in range(1 << B):
                ctx.set(dut.rset, st)
                ctx.set(dut.rsel, sel)
                for t in range(D):
                    ctx.set(dut.raddr, t)
                    seen[st, sel, t] = ctx.get(dut.mask)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (st, sel, t), got in seen.items():
        rows = [want[st, b, t] for b in range(B) if sel >> b & 1]
        exp = np.logical_or.reduce(rows) if rows else np.zeros(C, dtype=bool)
        assert got == sum(1 << c for c in range(C) if exp[c]), (st, sel, t)
    # the samples' maps differ (the test could not tell them apart otherwise)
    assert len({tuple(want[1, b].ravel()) for b in range(B)}) == B
