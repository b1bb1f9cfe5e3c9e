"""Engine + initialised weight/bias ROMs, and an Amaranth-simulator driver, for unit tests
of small configs (the cocotb benches use the $readmemh wrapper instead)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import flipped
from amaranth.sim import Simulator

from ..model.golden import QuantModel
from .engine import Engine
from .images import build_images

from .generate import MEMORY_PORTS


class EngineWithRoms(wiring.Component):
    """The engine with its weight and bias memories filled from ``qm``; every other
    interface of the engine is passed through unchanged."""

    def __init__(self, qm: QuantModel, units: dict | None = None):
        self.qm = qm
        self.cfg = qm.cfg
        self.engine = Engine(qm.cfg, units=units)
        members = {k: v for k, v in self.engine.signature.members.items() if k not in MEMORY_PORTS}
        super().__init__(wiring.Signature(members))

    def elaborate(self, platform):
        m = Module()
        eng = m.submodules.engine = self.engine
        ww, bw = build_images(self.qm)
        for name, words in (("wmem", ww), ("bmem", bw)):
            port = getattr(eng, name)
            mem = m.submodules[name] = Memory(shape=port.signature.data_bits, depth=len(words), init=words)
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data.eq(rp.data)]
        for name, member in self.signature.members.items():
            ours, theirs = getattr(self, name), getattr(eng, name)
            if member.is_port:
                m.d.comb += ours.eq(theirs) if member.flow == wiring.Out else theirs.eq(ours)
            elif member.flow == wiring.Out:
                wiring.connect(m, theirs, flipped(ours))
            else:
                wiring.connect(m, flipped(ours), theirs)
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
               vcd: str | None = None, units: dict | None = None) -> tuple[list[SimResult], list[tuple]]:
    """Simulate the engine on batches of input codes (MP: up to ``batch`` samples;
    OP: up to ``rows`` samples). Returns the results and the activation probe beats
    (layer, copy, tile, [cols values])."""
    cfg = qm.cfg
    dut = EngineWithRoms(qm, units=units)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    results: list[SimResult] = []
    probes: list[tuple] = []
    expected = sum(len(b) for b in batches)

    async def probe_mon(ctx):
        async for _, _, v, p in ctx.tick().sample(dut.probe.valid, dut.probe.payload):
            if v:
                probes.append((p.layer, p.copy, p.tile,
                               [(p.data >> (c * cfg.abits)) & cfg.amax for c in range(cfg.cols)]))

    async def bench(ctx):
        for batch in batches:
            flat = [(int(x), j == len(batch) - 1 and i == cfg.inputs - 1)
                    for j, s in enumerate(batch) for i, x in enumerate(s)]
            for x, last in flat:
                ctx.set(dut.pixels.valid, 1)
                ctx.set(dut.pixels.payload, {"data": x, "last": int(last)})
                while True:
                    _, _, rdy = await ctx.tick().sample(dut.pixels.ready)
                    if rdy:
                        break
            ctx.set(dut.pixels.valid, 0)
            ctx.set(dut.result.ready, 1)
            got = n = 0
            while got < len(batch):
                _, _, v, p = await ctx.tick().sample(dut.result.valid, dut.result.payload)
                n += 1
                if n > max_cycles:
                    raise TimeoutError("engine did not finish")
                if v:
                    results.append(SimResult(p.label, p.exit_layer, [int(s) for s in p.scores], p.cycles,
                                             p.macs, p.row))
                    got += 1
            ctx.set(dut.result.ready, 0)

    sim.add_testbench(bench)
    sim.add_process(probe_mon)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert len(results) == expected
    return results, probes
