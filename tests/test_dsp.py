"""The registered multiplier (hw/dsp.py): its fabric form in Amaranth's simulator, its
multiplier-block form (MULT18X18D with its own registers) inside the engine simulated on
Icarus and Verilator against the golden model, the block's simulation model caught when
broken, and the unit's checks."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from ffaccel.hw import dsp
from ffaccel.hw.dsp import FPGATarget, RegisteredProduct, mult_block
from ffaccel.hw.generate import engine_verilog
from ffaccel.schedule import schedule

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("FFACCEL_SIM_TEST_BUILD", REPO / "build" / "sim-tests"))
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")


@pytest.mark.parametrize("a,b,p", [(unsigned(8), signed(8), signed(16)), (unsigned(17), unsigned(10), unsigned(27)),
                                   (signed(12), unsigned(10), signed(22)), (signed(5), signed(3), signed(6))])
def test_fabric_product_two_cycles_later(a, b, p):
    """p(t+2) = a(t) * b(t), truncated to p's shape as an Amaranth .eq does."""
    dut = RegisteredProduct(a, b, p)
    assert dut.block is None and RegisteredProduct.LATENCY == 2
    rng = np.random.default_rng(a.width * 100 + b.width)

    def draw(s):
        lo, hi = (-(1 << (s.width - 1)), 1 << (s.width - 1)) if s.signed else (0, 1 << s.width)
        return int(rng.integers(lo, hi))

    seq = [(draw(a), draw(b)) for _ in range(40)]

    def wrap(v):
        v &= (1 << p.width) - 1
        return v - (1 << p.width) if p.signed and v >> (p.width - 1) else v

    async def bench(ctx):
        for t, (x, y) in enumerate(seq):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            await ctx.tick()
            # operands set before edge t are registered at it; their product at edge t+1
            if t >= 1:
                xa, yb = seq[t - 1]
                assert ctx.get(dut.p) == wrap(xa * yb), (t, xa, yb)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_block_only_where_the_operands_fit():
    """MULT18X18D takes 18-bit signed operands: an unsigned one up to 17 bits."""
    assert RegisteredProduct(unsigned(17), signed(18), signed(35), block="MULT18X18D").block == "MULT18X18D"
    assert RegisteredProduct(unsigned(18), signed(8), signed(26), block="MULT18X18D").block is None
    assert RegisteredProduct(signed(19), signed(8), signed(27), block="MULT18X18D").block is None
    assert RegisteredProduct(signed(8), signed(8), signed(16)).block is None


@pytest.mark.parametrize("kw,msg", [(dict(block="DSP48E1"), "must be one of"), (dict(copies=1), "true or false")])
def test_unit_refuses_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        RegisteredProduct(unsigned(8), signed(8), signed(16), **kw)


def test_target_and_lookup():
    with pytest.raises(ValueError, match="must be one of"):
        FPGATarget("SB_MAC16")
    t = FPGATarget("MULT18X18D", soft_pes=[(0, 1)])
    assert mult_block(t) == "MULT18X18D" and mult_block(t, soft=True) is None and mult_block(None) is None


def _case(seed=31):
    from test_verify import case_samples
    return case_samples("mp_fpga_regs_share", seed)


def test_engine_instantiates_a_block_per_product():
    """Every live PE and every post-processing part gets a block, but the PEs the target
    builds in logic; without the option nothing changes."""
    qm, _ = _case()
    cfg = qm.cfg
    sched = schedule(cfg)
    live = sched.live_rows * cfg.cols
    parts = 2 if cfg.drain_bits > 18 else 1
    text, _ = engine_verilog(cfg, target=FPGATarget("MULT18X18D", soft_pes=[(0, 0), (1, 2)]))
    assert len(re.findall(r"^\s*MULT18X18D\b", text, re.M)) == live - 2 + parts * cfg.cols
    plain, _ = engine_verilog(cfg.replace(fpga_regs=False), target=FPGATarget("MULT18X18D"))
    assert "MULT18X18D" not in plain
    assert engine_verilog(cfg.replace(fpga_regs=False))[0] == plain


@needs_icarus
@pytest.mark.rtl
@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_engine_with_blocks_matches_golden(sim):
    """The engine as the FPGA flow elaborates it (blocks with their own registers, two PEs
    in logic), with the block's simulation model: bit-exact, cycles included, under
    random stalls."""
    from ffaccel.sim.runner import verify
    qm, x = _case()
    out = verify(qm, x, sim=sim, build_dir=BUILD, in_stall=0.3, out_stall=0.3, seed=31, tag=f"dsp-{sim}",
                 target=FPGATarget("MULT18X18D", soft_pes=[(0, 0), (1, 2)]))
    assert out["report"].mismatches == 0, out["report"].summary()
    assert any(p.name == "MULT18X18D.v" for p in out["build"].sources)


@needs_icarus
@pytest.mark.rtl
def test_broken_block_model_is_caught(monkeypatch):
    """A block whose output register is skipped (one cycle early) must fail the bench."""
    from ffaccel.sim.runner import verify
    broken = dsp.SIM_MODELS["MULT18X18D"].replace('(REG_OUTPUT_CLK == "NONE") ? prod[35:0] : p_q',
                                                  'prod[35:0]')
    assert broken != dsp.SIM_MODELS["MULT18X18D"]
    monkeypatch.setitem(dsp.SIM_MODELS, "MULT18X18D", broken)
    qm, x = _case()
    out = verify(qm, x, sim="icarus", build_dir=BUILD, seed=31, tag="dsp-broken",
                 target=FPGATarget("MULT18X18D"))
    assert out["report"].mismatches > 0
