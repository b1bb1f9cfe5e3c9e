"""PostProc unit, bit-exact against the golden model's post-processing
(``GoldenModel.postprocess`` for layers, the ``rshr`` head increment for OP heads) on
hypothesis-drawn formats and vectors, rows streamed back to back through its stages."""

import numpy as np
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.postproc import PostProc
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.model.intops import rshr, rsqrt
from ffaccel.schedule import schedule


@st.composite
def cases(draw):
    abits = draw(st.integers(2, 8))
    wbits = draw(st.integers(2, 8))
    cols = draw(st.integers(1, 5))
    mode = draw(st.sampled_from(["mp", "op"]))
    rsqrt_frac = draw(st.integers(6, 14))
    wfrac = (draw(st.integers(0, wbits + 2)), draw(st.integers(0, wbits + 2)))
    # (the config refuses rsqrt_frac + wfrac - afrac < 0: a shift must be >= 0)
    afrac = draw(st.integers(0, min(abits, rsqrt_frac + min(wfrac))))
    cfg = AccelConfig(inputs=draw(st.integers(12, 40)), layers=(cols, cols), classes=draw(st.integers(2, 6)),
                      rows=draw(st.integers(1, 4)), cols=cols, abits=abits, wbits=wbits,
                      afrac=afrac, rsqrt_frac=rsqrt_frac, lfrac=draw(st.integers(0, 6)), mode=mode, wfrac=wfrac,
                      fpga_regs=draw(st.booleans()))
    seed = draw(st.integers(0, 2**31 - 1))
    return cfg, seed


def _run(cfg, rows):
    """Stream ``rows`` (dicts: layer, head, acc, g, bias) through a PostProc, one per cycle;
    returns the probe words, goodness sums and logit increments in the order they appear."""
    s = schedule(cfg)
    dut = PostProc(s)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    C, BL = cfg.cols, cfg.bias_lane_bits
    words, sums, incs = [], [], []

    async def bench(ctx):
        for r in rows + [None] * (PostProc.STAGES_FPGA_REGS + 1):
            if r is None:
                ctx.set(dut.row, {"valid": 0})
            else:
                m, sh = rsqrt(np.array([r["g"]]), cfg.rsqrt_frac, cfg.rsqrt_index)
                bias = sum((int(b) & ((1 << BL) - 1)) << (c * BL) for c, b in enumerate(r["bias"]))
                ctx.set(dut.row, {"valid": 1, "live": 1, "cp": 0, "tile": 0, "layer": r["layer"],
                                  "head": r["head"], "bias": bias, "m": int(m[0]), "s": int(sh[0]),
                                  "acc": [int(a) for a in r["acc"]]})
                reg = s.regs.group("head_shift" if r["head"] else "shift")[r["layer"]]
                ctx.set(dut.shift_base, reg.reset)
            await ctx.tick()
            if ctx.get(dut.probe.valid):
                p = ctx.get(dut.probe.payload)
                words.append([(p.data >> (c * cfg.abits)) & cfg.amax for c in range(C)])
            if ctx.get(dut.goodness.valid):
                sums.append(ctx.get(dut.goodness.sum))
            if ctx.get(dut.logit.valid):
                incs.append([ctx.get(dut.logit.inc[c]) for c in range(C)])

    sim.add_testbench(bench)
    sim.run()
    return words, sums, incs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_postproc_equals_golden_postprocess(case):
    cfg, seed = case
    rng = np.random.default_rng(seed)
    qm = QuantModel.random(cfg, rng)
    gold = GoldenModel(qm)
    C = cfg.cols
    amin, amax = -(1 << (cfg.accbits - 1)), (1 << (cfg.accbits - 1)) - 1
    rows, want_h, want_inc = [], [], []
    for i in range(6):
        layer = i % 2
        head = cfg.mode == "op" and i >= 4
        # sums spread over the accumulator range, extremes included; goodness from 0 up
        acc = rng.integers(amin, amax + 1, size=C)
        acc[0] = (amin, amax, 0, 1, -1, amax)[i]
        g = int(rng.integers(0, 1 << min(cfg.goodness_bits, 40)))
        g = (0, 1, g, g, (1 << cfg.goodness_bits) - 1, g)[i]
        if head:
            # a head sees a layer output h: acc = H h and g = h.h are tied (the logit width
            # rests on |H h| <= ||H|| sqrt(g)); lane c carries class c of tile 0
            h = rng.integers(0, cfg.amax + 1, size=cfg.layers[layer])
            h[: i - 4] = cfg.amax
            lanes = min(C, cfg.classes)
            acc = np.zeros(C, np.int64)
            acc[:lanes] = qm.heads[layer][:lanes] @ h
            g = int(h @ h)
            bias = np.zeros(C, np.int64)
            bias[:lanes] = qm.head_biases[layer][:lanes]
            m, s = rsqrt(np.array([g]), cfg.rsqrt_frac, cfg.rsqrt_index)
            want_inc.append(rshr(acc * m[0], cfg.rsqrt_frac + s[0] + cfg.hfrac[layer] - cfg.lfrac) + bias)
        else:
            bias = qm.biases[layer]
            want_h.append(gold.postprocess(acc[None, :], np.array([g]), layer)[0])
        rows.append({"layer": layer, "head": int(head), "acc": acc, "g": g, "bias": bias})
    words, sums, incs = _run(cfg, rows)
    assert words == [h.tolist() for h in want_h]
    assert sums == [int((h * h).sum()) for h in want_h]
    assert incs == [v.tolist() for v in want_inc]


def test_stage_count_is_the_schedules():
    """The cycle model's post-processing latency includes this unit's stages; a schedule
    that asks for another depth is refused rather than silently mistimed."""
    import dataclasses
    import pytest
    s = schedule(AccelConfig(inputs=20, layers=(4,), classes=3, rows=2, cols=4))
    assert s.latency.postproc == PostProc.STAGES
    assert schedule(s.cfg.replace(fpga_regs=True)).latency.postproc == PostProc.STAGES_FPGA_REGS
    bad = dataclasses.replace(s, latency=dataclasses.replace(s.latency, postproc=2))
    with pytest.raises(ValueError, match="stages"):
        PostProc(bad)


def test_shifts_beyond_the_product_width_round_to_zero():
    """Every shift the register can hold (up to 2**shift_bits - 1, far beyond the product's
    width, where the unit short-cuts to 0) against exact integer arithmetic: layer rows
    (clamped) and OP head rows (logit increments, signed: -1 and 0 differ)."""
    cfg = AccelConfig(inputs=12, layers=(3, 3), classes=3, rows=1, cols=3, abits=4, wbits=4, afrac=1,
                      mode="op", lfrac=2)
    s = schedule(cfg)
    dut = PostProc(s)
    rng = np.random.default_rng(1)
    amin, amax = -(1 << (cfg.accbits - 1)), (1 << (cfg.accbits - 1)) - 1
    mmax = (1 << cfg.rsqrt_mant_bits) - 1
    rows = []
    for base in range(0, 1 << len(dut.shift_base)):
        for head in (0, 1):
            acc = [amin, amax, int(rng.integers(amin, 0))]
            rows.append((base, head, acc, int(rng.integers(1, mmax + 1))))
    got = {0: [], 1: []}

    async def bench(ctx):
        for i in range(len(rows) + PostProc.STAGES_FPGA_REGS + 1):
            if i < len(rows):
                base, head, acc, m = rows[i]
                ctx.set(dut.shift_base, base)
                ctx.set(dut.row, {"valid": 1, "live": 1, "cp": 0, "tile": 0, "layer": 0, "head": head, "bias": 0,
                                  "m": m, "s": 0, "acc": acc})
            else:
                ctx.set(dut.row, {"valid": 0})
            await ctx.tick()
            if ctx.get(dut.probe.valid):
                p = ctx.get(dut.probe.payload)
                got[0].append([(p.data >> (c * cfg.abits)) & cfg.amax for c in range(cfg.cols)])
            if ctx.get(dut.logit.valid):
                got[1].append([ctx.get(dut.logit.inc[c]) for c in range(cfg.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = {0: [], 1: []}
    for base, head, acc, m in rows:
        z = [int(rshr(np.array([a * m]), base)[0]) for a in acc]
        want[head].append(z if head else [min(max(v, 0), cfg.amax) for v in z])
    assert got[0] == want[0] and len(got[1]) == len(want[1]) == 1 << len(dut.shift_base)
    # head increments are score_bits wide (real heads fit, see AccelConfig.score_bits): compare
    # those that fit, which include every shift beyond the product's width (all 0)
    lim = 1 << (cfg.score_bits - 1)
    fits = [i for i, w in enumerate(want[1]) if all(-lim <= v < lim for v in w)]
    assert [got[1][i] for i in fits] == [want[1][i] for i in fits]
    assert set(range(cfg.product_bits + 1, 1 << len(dut.shift_base))) <= set(fits)
    assert any(v == -1 for i in fits for v in want[1][i])     # rounding of negative products seen
