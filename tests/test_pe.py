"""PE and MAC array (Amaranth simulator): output-stationary accumulate through the product
register, tile handover, row gating, extreme operands, the shadow registers' shift."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.hw.array import MacArray
from ffaccel.hw.pe import PE


def test_multiplier_free_pe_refuses_wide_inputs_and_blocks():
    with pytest.raises(ValueError, match="abits <= 3"):
        PE(4, 4, 12, multiplier_free=True)
    with pytest.raises(ValueError, match="no multiplier block"):
        PE(1, 4, 12, True, "MULT18X18D", multiplier_free=True)


def test_multiplier_free_pe_elaborates_no_multiply():
    """The BSFF PE's netlist has no multiply operator (the ReLU PE's has one)."""
    from amaranth.back import rtlil
    assert "$mul" not in rtlil.convert(PE(1, 8, 16, multiplier_free=True))
    assert "$mul" not in rtlil.convert(PE(2, 8, 16, True, multiplier_free=True))
    assert "$mul" in rtlil.convert(PE(2, 8, 16))


@pytest.mark.parametrize("copies", [False, True])
@pytest.mark.parametrize("abits,wbits,free", [(8, 8, False), (1, 2, False), (5, 3, False),
                                              (1, 6, True), (2, 4, True), (3, 8, True)])
def test_pe_accumulates_tiles_and_holds_when_disabled(abits, wbits, free, copies):
    """``free``: the multiplier-free PE of BSFF (weights selected and added by input bit)."""
    accbits = abits + wbits + 6
    dut = PE(abits, wbits, accbits, copies, multiplier_free=free)
    rng = np.random.default_rng(abits)
    amax, wlo, whi = (1 << abits) - 1, -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    results = []
    ref = {"acc": 0, "result": 0}          # the documented semantics, step by step

    def ref_step(x, w, en, first, last):
        if en:
            s = (0 if first else ref["acc"]) + x * w
            ref["acc"] = s
            if last:
                ref["result"] = s

    async def bench(ctx):
        for tile in range(6):
            k = int(rng.integers(1, 20))
            x = rng.integers(0, amax + 1, size=k)
            w = rng.integers(wlo, whi + 1, size=k)
            if tile == 1:
                x[:], w[:] = amax, wlo                   # extreme products
            en = rng.integers(0, 2, size=k) if tile == 2 else np.ones(k, dtype=int)
            for i in range(k):
                ctx.set(dut.x, int(x[i])); ctx.set(dut.w, int(w[i])); ctx.set(dut.en, int(en[i]))
                ctx.set(dut.valid, 1); ctx.set(dut.first, i == 0); ctx.set(dut.last, i == k - 1)
                ref_step(int(x[i]), int(w[i]), int(en[i]), i == 0, i == k - 1)
                await ctx.tick()
                # a bubble between operands must not change anything
                ctx.set(dut.valid, 0)
                await ctx.tick()
            for _ in range(PE.pipeline(copies) - 1):    # the operand copies' cycle
                await ctx.tick()
            results.append((ctx.get(dut.result), ctx.get(dut.acc), ref["result"], ref["acc"]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # tile 2 gates random elements: a gated first element leaves the old sum to build on,
    # a gated last element leaves the shadow register as it was
    for got_result, got_acc, want_result, want_acc in results:
        assert (got_result, got_acc) == (want_result, want_acc)
    assert results[0][2] != 0


@pytest.mark.parametrize("copies", [False, True])
def test_array_multicasts_operands(copies):
    rows, cols, k = 3, 4, 7
    dut = MacArray(rows, cols, 6, 5, 20, operand_copies=copies)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 64, size=(k, rows))
    w = rng.integers(-16, 16, size=(k, cols))
    en = np.array([1, 0, 1])
    out = {}

    async def bench(ctx):
        ctx.set(dut.row_en, int(sum(int(e) << r for r, e in enumerate(en))))
        for i in range(k):
            for r in range(rows):
                ctx.set(dut.x[r], int(x[i, r]))
            for c in range(cols):
                ctx.set(dut.w[c], int(w[i, c]))
            ctx.set(dut.valid, 1); ctx.set(dut.first, i == 0); ctx.set(dut.last, i == k - 1)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        for _ in range(PE.pipeline(copies)):           # the last product register
            await ctx.tick()
        await ctx.tick()                               # its accumulate
        out["r"] = [[ctx.get(dut.result[r][c]) for c in range(cols)] for r in range(rows)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = x.T @ w
    for r in range(rows):
        if en[r]:
            assert out["r"][r] == want[r].tolist()
        else:
            assert out["r"][r] == [0] * cols      # gated row never updated


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_units_validate_their_parameters():
    with pytest.raises(ValueError, match="accbits"):
        PE(8, 8, 10)
    with pytest.raises(ValueError, match="operand_copies"):
        PE(8, 8, 20, operand_copies=1)
    with pytest.raises(ValueError, match="rows"):
        MacArray(0, 4, 8, 8, 28)


def test_array_shifts_shadow_registers_up_and_last_wins():
    """``shift``: the cycle after it is raised (the PEs register it, ``PE.SHIFT``), row r
    takes row r+1's shadow register, the bottom row holds, whatever the row enables; a
    tile's ``last`` in the cycle the shift acts loads the sums instead."""
    rows, cols = 4, 2
    dut = MacArray(rows, cols, 4, 4, 12)
    seen = []

    def grab(ctx):
        seen.append([[ctx.get(dut.result[r][c]) for c in range(cols)] for r in range(rows)])

    async def bench(ctx):
        ctx.set(dut.row_en, 0b1011)                    # row 2 gated: it still shifts
        for r in range(rows):
            ctx.set(dut.x[r], r + 1)
        for c in range(cols):
            ctx.set(dut.w[c], c + 2)
        ctx.set(dut.valid, 1); ctx.set(dut.first, 1); ctx.set(dut.last, 1)
        await ctx.tick()                               # products registered
        ctx.set(dut.valid, 0); ctx.set(dut.first, 0); ctx.set(dut.last, 0)
        await ctx.tick()                               # accumulated, shadow loaded
        grab(ctx)
        ctx.set(dut.shift, 1)
        await ctx.tick()                               # the command registered: no move yet
        grab(ctx)
        await ctx.tick()                               # first move
        grab(ctx)
        ctx.set(dut.shift, 0)
        await ctx.tick()                               # second move (the last command)
        grab(ctx)
        await ctx.tick()                               # no command: holds
        grab(ctx)
        # a tile ends in the cycle a shift acts: the loaded sums win
        ctx.set(dut.x[0], 7); ctx.set(dut.valid, 1); ctx.set(dut.first, 1); ctx.set(dut.last, 1)
        ctx.set(dut.shift, 1)
        await ctx.tick()
        ctx.set(dut.valid, 0); ctx.set(dut.shift, 0)
        await ctx.tick()
        grab(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    loaded = [[(r + 1) * (c + 2) if r != 2 else 0 for c in range(cols)] for r in range(rows)]
    once = [loaded[1], loaded[2], loaded[3], loaded[3]]
    twice = [loaded[2], loaded[3], loaded[3], loaded[3]]
    assert seen[:5] == [loaded, loaded, once, twice, twice]
    # enabled rows load the new tile's sums, the gated row 2 shifts
    assert seen[5] == [[7 * (c + 2) for c in range(cols)], loaded[1], twice[3], loaded[3]]


def test_array_rows_beyond_live_rows_have_no_pes():
    """``live_rows``: the rows below it have no PEs (their results stay 0 whatever their
    operands), and the last live row shifts in 0 from below."""
    rows, cols = 4, 2
    dut = MacArray(rows, cols, 4, 4, 12, live_rows=2)
    seen = []

    async def bench(ctx):
        ctx.set(dut.row_en, 0b1111)
        for r in range(rows):
            ctx.set(dut.x[r], r + 1)
        for c in range(cols):
            ctx.set(dut.w[c], c + 2)
        ctx.set(dut.valid, 1); ctx.set(dut.first, 1); ctx.set(dut.last, 1)
        await ctx.tick()
        ctx.set(dut.valid, 0); ctx.set(dut.first, 0); ctx.set(dut.last, 0)
        await ctx.tick()
        seen.append([[ctx.get(dut.result[r][c]) for c in range(cols)] for r in range(rows)])
        ctx.set(dut.shift, 1)
        await ctx.tick()
        ctx.set(dut.shift, 0)
        await ctx.tick()
        seen.append([[ctx.get(dut.result[r][c]) for c in range(cols)] for r in range(rows)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    row = [[(r + 1) * (c + 2) for c in range(cols)] for r in range(2)]
    assert seen == [[row[0], row[1], [0, 0], [0, 0]], [row[1], [0, 0], [0, 0], [0, 0]]]
    with pytest.raises(ValueError, match="live_rows"):
        MacArray(4, 2, 4, 4, 12, live_rows=5)
