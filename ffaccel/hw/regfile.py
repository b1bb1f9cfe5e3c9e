"""Run-time register file: exit thresholds, shift bases, exit enable, score mask."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import RegPort, _idx


class RegFile(wiring.Component):
    """The registers of ``schedule.regs``, written through ``port`` (one write per cycle,
    effective the next cycle), reset to their map values. The port's data lane holds every
    register's full range; a value outside a register's range is truncated to its width
    (the host writes values from the register map's ranges). Unused addresses are ignored.

    Read side (combinational): ``threshold`` of layer ``thr_layer``; ``shift_base`` of
    layer ``sel_layer`` (the head's base when ``sel_head``); ``exit_enable``;
    ``score_mask`` (bit l: layer l's score is summed).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"RegFile: sched={sched!r} must be a Schedule")
        self.sched = sched
        cfg, regs = sched.cfg, sched.regs
        super().__init__({
            "port": In(RegPort(regs.addr_bits, regs.data_bits)),
            "thr_layer": In(_idx(cfg.n_layers)), "threshold": Out(signed(cfg.score_bits)),
            "sel_layer": In(_idx(cfg.n_layers)), "sel_head": In(1),
            "shift_base": Out(unsigned(self._bits("shift"))),
            "exit_enable": Out(1), "score_mask": Out(cfg.n_layers),
        })

    def _bits(self, group: str) -> int:
        return self.sched.regs.group(group)[0].bits

    def elaborate(self, platform):
        m = Module()
        rmap = self.sched.regs

        def bank(group, shape):
            regs = rmap.group(group)
            sigs = [Signal(shape, name=r.name, init=r.reset) for r in regs]
            return regs, sigs

        cfg = self.sched.cfg
        thr_regs, thr = bank("threshold", signed(cfg.score_bits))
        sh_regs, shb = bank("shift", unsigned(self._bits("shift")))
        hs_regs, hshb = bank("head_shift", unsigned(self._bits("shift")))       # OP only
        (en_reg,), (en,) = bank("exit_enable", 1)
        (mask_reg,), (mask,) = bank("score_mask", cfg.n_layers)
        with m.If(self.port.we):
            for regs, sigs in ((thr_regs, thr), (sh_regs, shb), (hs_regs, hshb), ((en_reg,), (en,)),
                               ((mask_reg,), (mask,))):
                for r, sig in zip(regs, sigs):
                    with m.If(self.port.addr == r.addr):
                        m.d.sync += sig.eq(self.port.data)
        # a one-layer net has no threshold register: its only layer always decides
        m.d.comb += self.threshold.eq(Array(thr)[self.thr_layer] if thr else 0)
        base = Array(shb)[self.sel_layer]
        if hshb:
            base = Mux(self.sel_head, Array(hshb)[self.sel_layer], base)
        m.d.comb += [self.shift_base.eq(base), self.exit_enable.eq(en), self.score_mask.eq(mask)]
        return m
