"""Activation banks: two sets (ping-pong between a layer's input and output) of one bank
per label copy (MP) or per batch row (OP)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import _idx


def write_layout(sched: Schedule) -> data.StructLayout:
    cfg = sched.cfg
    return data.StructLayout({"lanes": unsigned(cfg.cols), "set": 1, "bank": _idx(sched.banks),
                              "addr": _idx(sched.bank_depth), "data": unsigned(cfg.act_word_bits)})


class ActBanks(wiring.Component):
    """``2 x banks`` memories of ``bank_depth`` words of ``cols`` activations.

    Read: one shared word address ``raddr``; ``ren[s][b]`` enables bank b of set s (a
    disabled read port holds its data: no toggles); ``rdata`` one cycle later.
    Write: ``load`` (input pixels, lane mask ``lanes``) and ``drain`` (a drained row, all
    lanes) never overlap in time; ``load`` wins if they address the same bank.
    ``lanes == 0``: no write. A read of a word written in the same cycle is undefined: the
    engine never does one (a pass reads its source set and writes the other; pixels load
    while no pass runs), and the memories say so to synthesis (``no_rw_check``), which
    otherwise adds a bypass per bit to return the old word (on the 10x16 MNIST engine 2,560
    flip-flops and a 1,197-load enable). The engine tests substitute banks that return
    garbage on such a read and still match the golden model.

    With ``AccelConfig.fpga_regs`` each memory registers its write (address, data, lane
    enables) beside it and applies it a cycle later: the write's nets no longer cross the
    die into the block RAM in the cycle of the write. The engine reads a set no sooner than
    several cycles after its last write (FLUSH waits for post-processing's goodness
    stages, then EXIT and NORM; LOAD is followed by SETTLE and START), so no cycle is
    added.
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"ActBanks: sched={sched!r} must be a Schedule")
        self.sched = sched
        cfg = sched.cfg
        word = unsigned(cfg.act_word_bits)
        super().__init__({
            "raddr": In(_idx(sched.bank_depth)),
            "ren": In(1).array(2, sched.banks),
            "rdata": Out(word).array(2, sched.banks),
            "load": In(write_layout(sched)),
            "drain": In(write_layout(sched)),
        })

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        for st in range(2):
            for b in range(s.banks):
                mem = m.submodules[f"act{st}_{b}"] = Memory(shape=unsigned(cfg.act_word_bits),
                                                            depth=s.bank_depth, init=[],
                                                            attrs={"no_rw_check": 1})
                rp, wp = mem.read_port(), mem.write_port(granularity=cfg.abits)
                m.d.comb += [rp.addr.eq(self.raddr), rp.en.eq(self.ren[st][b]), self.rdata[st][b].eq(rp.data)]
                if not cfg.fpga_regs:
                    for w in (self.drain, self.load):      # later statement wins: load
                        with m.If((w.set == st) & (w.bank == b) & (w.lanes != 0)):
                            m.d.comb += [wp.addr.eq(w.addr), wp.data.eq(w.data), wp.en.eq(w.lanes)]
                    continue
                # fpga_regs: the write registered beside this memory, applied a cycle later
                reg = Signal(write_layout(s), name=f"w{st}_{b}")
                m.d.sync += reg.lanes.eq(0)
                for w in (self.drain, self.load):
                    with m.If((w.set == st) & (w.bank == b) & (w.lanes != 0)):
                        m.d.sync += [reg.addr.eq(w.addr), reg.data.eq(w.data), reg.lanes.eq(w.lanes)]
                m.d.comb += [wp.addr.eq(reg.addr), wp.data.eq(reg.data), wp.en.eq(reg.lanes)]
        return m
