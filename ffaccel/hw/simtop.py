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
from .port import answer_words, word_codes

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
               vcd: str | None = None, units: dict | None = None, physical=None, port_latency: int | None = None,
               port_stall: float = 0.0, seed: int = 0) -> tuple[list[SimResult], list[tuple]]:
    """Simulate the engine on batches of input codes (MP: up to ``batch`` samples;
    OP: up to ``rows`` samples). Returns the results and the activation probe beats
    (layer, copy, tile, [cols values]).

    Physical layers: ``physical(batch_no, layer, copy, u)`` is P: it gets a copy's block
    input as the port sent it (``n_u`` codes) and returns its answer (``n_p`` codes). Its
    first answer word is offered ``port_latency`` cycles (default the config's) after the
    last input word was taken; with ``port_stall`` > 0 P stalls the port's words and
    pauses its answer at random with that probability, and its latency varies up to 4x."""
    cfg = qm.cfg
    dut = EngineWithRoms(qm, units=units)
    sched = dut.engine.sched
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
            done_batches.append(len(batch))

    done_batches: list[int] = []
    sim.add_testbench(bench)
    sim.add_process(probe_mon)
    if any(sched.ports):
        if physical is None:
            raise ValueError("run_engine: the config has physical layers: pass `physical`")
        sim.add_process(_p_model(dut, sched, physical, port_latency, port_stall, seed, done_batches))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert len(results) == expected
    return results, probes


def _p_model(dut, sched, physical, port_latency, port_stall: float, seed: int, done_batches: list):
    """The Amaranth-simulator process of P behind the port (:func:`run_engine`):
    ``done_batches`` grows by one per batch whose results are all out."""
    cfg = sched.cfg
    rng = np.random.default_rng(seed)
    lat = cfg.port_latency if port_latency is None else port_latency
    async def process(ctx):
        while True:
            words, layer, copy = [], None, None
            ctx.set(dut.port_out.ready, int(rng.random() >= port_stall))
            while True:
                _, _, v, r, pl = await ctx.tick().sample(dut.port_out.valid, dut.port_out.ready,
                                                         dut.port_out.payload)
                if v and r:
                    words += word_codes(pl.data, cfg.cols, cfg.abits)
                    layer, copy = int(pl.layer), int(pl.copy)
                    if pl.last:
                        break
                ctx.set(dut.port_out.ready, int(rng.random() >= port_stall))
            ctx.set(dut.port_out.ready, 0)
            port = sched.ports[layer]
            answer = [int(a) for a in physical(len(done_batches), layer, copy, words[:port.n_u])]
            assert len(answer) == port.n_p, (layer, copy, len(answer))
            # P's first answer word: ``lat`` cycles after the last input word was taken
            wait = lat if not port_stall else int(rng.integers(lat, 4 * lat + 1))
            for _ in range(wait - 1):
                await ctx.tick()
            for word in answer_words(sched, layer, answer):
                while port_stall and rng.random() < port_stall:
                    ctx.set(dut.port_in.valid, 0)
                    await ctx.tick()
                ctx.set(dut.port_in.valid, 1)
                ctx.set(dut.port_in.payload, {"data": word})
                await ctx.tick()
            ctx.set(dut.port_in.valid, 0)
    return process
