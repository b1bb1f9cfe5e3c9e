"""Engine + initialised weight/bias ROMs, and an Amaranth-simulator driver, for unit tests
of small configs (the cocotb benches use the $readmemh wrapper instead)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from ..model.golden import QuantModel
from .engine import Engine, engine_signature
from .images import build_images


class EngineWithRoms(wiring.Component):
    def __init__(self, qm: QuantModel):
        self.qm = qm
        self.cfg = qm.cfg
        sig = {k: v for k, v in engine_signature(qm.cfg).items()
               if not (k.startswith("w_") or k.startswith("b_"))}
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        eng = m.submodules.engine = Engine(self.cfg)
        ww, bw = build_images(self.qm)
        wmem = m.submodules.wrom = Memory(shape=len(eng.w_data), depth=len(ww), init=ww)
        bmem = m.submodules.brom = Memory(shape=len(eng.b_data), depth=len(bw), init=bw)
        wr, br = wmem.read_port(), bmem.read_port()
        m.d.comb += [wr.addr.eq(eng.w_addr), wr.en.eq(eng.w_en), eng.w_data.eq(wr.data),
                     br.addr.eq(eng.b_addr), br.en.eq(eng.b_en), eng.b_data.eq(br.data)]
        for name in self.signature.members:
            ours, theirs = getattr(self, name), getattr(eng, name)
            if self.signature.members[name].flow == wiring.In:
                m.d.comb += (theirs.eq(ours) if not isinstance(ours, list) else [])
            else:
                if isinstance(ours, list):
                    m.d.comb += [o.eq(t) for o, t in zip(ours, theirs)]
                else:
                    m.d.comb += ours.eq(theirs)
        return m


@dataclass
class SimResult:
    label: int
    exit_layer: int
    scores: list[int]
    cycles: int
    macs: int
    row: int


def run_engine(qm: QuantModel, batches: list[np.ndarray], *, max_cycles: int = 2_000_000,
               vcd: str | None = None) -> tuple[list[SimResult], list[tuple]]:
    """Simulate the engine on batches of input codes (MP: each batch one sample (1, D);
    OP: up to ``rows`` samples). Returns the results and the activation probe beats
    (layer, copy, tile, [cols values])."""
    cfg = qm.cfg
    dut = EngineWithRoms(qm)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    results: list[SimResult] = []
    probes: list[tuple] = []
    expected = sum(len(b) for b in batches)

    async def probe_mon(ctx):
        async for _, _, v, lay, cp, t, data in ctx.tick().sample(dut.probe_valid, dut.probe_layer,
                                                                 dut.probe_copy, dut.probe_tile, dut.probe_data):
            if v:
                probes.append((lay, cp, t, [(data >> (c * cfg.abits)) & cfg.amax for c in range(cfg.cols)]))

    async def bench(ctx):
        for batch in batches:
            flat = [(int(x), j == len(batch) - 1 and i == cfg.inputs - 1)
                    for j, s in enumerate(batch) for i, x in enumerate(s)]
            for x, last in flat:
                ctx.set(dut.in_valid, 1)
                ctx.set(dut.in_data, x)
                ctx.set(dut.in_last, last)
                while True:
                    _, _, rdy = await ctx.tick().sample(dut.in_ready)
                    if rdy:
                        break
            ctx.set(dut.in_valid, 0)
            ctx.set(dut.res_ready, 1)
            got = 0
            n = 0
            while got < len(batch):
                _, _, v, lab, ex, row, cyc, mc, *sc = await ctx.tick().sample(
                    dut.res_valid, dut.res_label, dut.res_exit_layer, dut.res_row, dut.res_cycles,
                    dut.res_macs, *dut.res_scores)
                n += 1
                if n > max_cycles:
                    raise TimeoutError("engine did not finish")
                if v:
                    results.append(SimResult(lab, ex, [int(s) for s in sc], cyc, mc, row))
                    got += 1
            ctx.set(dut.res_ready, 0)

    sim.add_testbench(bench)
    sim.add_process(probe_mon)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert len(results) == expected
    return results, probes
