"""The FF layer engine: the units of ``ffaccel.hw`` wired together.

Timing contract (docs/architecture.md, "Units"; the cycle model is
:meth:`ffaccel.schedule.Schedule.inference_cycles`): reads issued in cycle t return data in
t+1, when the issue stage selects the operands; they are registered at the array edge, the
PEs multiply in t+2 and accumulate in t+3; a tile's sums are in the PE shadow registers
the cycle after its last accumulate; the drain then reads one row per cycle through stage
A and the post-processing stages, and stage E adds the goodness.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import flipped

from ..config import AccelConfig
from ..schedule import Schedule, schedule
from .accum import Accumulators
from .actbanks import ActBanks
from .array import MacArray
from .basis import LLSBasis
from .controller import Controller
from .drain import Drain
from .exitcmp import ExitCmp
from .interfaces import engine_signature
from .issue import Issue
from .nzmap import NonzeroMap
from .pe import PE
from .port import ExternalPort
from .postproc import PostProc
from .rng import RandomSource
from .regfile import RegFile

#: The replaceable units and their production classes. A verification bench may pass
#: substitutes (``Engine(cfg, units={"postproc": FaultyPostProc})``): mutation tests.
UNITS = {"controller": Controller, "regfile": RegFile, "actbanks": ActBanks, "issue": Issue,
         "drain": Drain, "postproc": PostProc, "rng": RandomSource, "accum": Accumulators, "exitcmp": ExitCmp, "basis": LLSBasis,
         "nzmap": NonzeroMap, "port": ExternalPort}


class Engine(wiring.Component):
    """The FF engine of ``cfg``: ``pixels`` in, ``result`` out, weights and biases through
    ``wmem`` / ``bmem``, run-time registers through ``regs``, activations on ``probe``."""

    def __init__(self, cfg: AccelConfig, units: dict | None = None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Engine: cfg={cfg!r} must be an AccelConfig")
        units = dict(units or {})
        unknown = sorted(set(units) - set(UNITS))
        if unknown:
            raise ValueError(f"Engine: units={unknown[0]!r} is not a unit (allowed: {', '.join(UNITS)})")
        for name, cls in units.items():
            if not (isinstance(cls, type) and issubclass(cls, UNITS[name])):
                raise TypeError(f"Engine: units[{name!r}]={cls!r} must be a subclass of {UNITS[name].__name__}")
        self.cfg = cfg
        self.sched: Schedule = schedule(cfg)
        lat = self.sched.latency
        pipe = PE.pipeline(cfg.fpga_regs)
        if (lat.product, lat.shift) != (pipe, PE.SHIFT):
            raise ValueError(f"Engine: the schedule asks for {lat.product} product register stages and a shift "
                             f"{lat.shift} cycles after the command (the PE has {pipe} and {PE.SHIFT})")
        self.units = {**UNITS, **units}
        super().__init__(engine_signature(self.sched))

    def elaborate(self, platform):
        m = Module()
        s, cfg, u = self.sched, self.cfg, self.units
        ctrl = m.submodules.controller = u["controller"](s)
        regs = m.submodules.regfile = u["regfile"](s)
        banks = m.submodules.actbanks = u["actbanks"](s)
        iss = m.submodules.issue = u["issue"](s)
        arr = m.submodules.array = MacArray(cfg.rows, cfg.cols, cfg.abits, cfg.wbits, cfg.accbits, s.live_rows,
                                            cfg.fpga_regs, multiplier_free=cfg.bsff)
        drain = m.submodules.drain = u["drain"](s)
        post = m.submodules.postproc = u["postproc"](s)
        if cfg.bsff:
            # BSFF: the random words of each drained row, ready when it reaches stage C3
            rng = m.submodules.rng = u["rng"](s)
            m.d.comb += [rng.start.eq(ctrl.start), rng.row.eq(drain.row), post.u.eq(rng.u)]
        acc = m.submodules.accum = u["accum"](s)
        cmp_ = m.submodules.exitcmp = u["exitcmp"](cfg.classes, cfg.score_bits, cfg.exit_policy, s.tags)
        # the unit instances of this elaboration (tests read their signals' widths)
        self.elaborated = {"controller": ctrl, "regfile": regs, "actbanks": banks, "issue": iss, "array": arr,
                           "drain": drain, "postproc": post, "accum": acc, "exitcmp": cmp_}
        # the engine's interfaces
        wiring.connect(m, flipped(self.pixels), ctrl.pixels)
        wiring.connect(m, ctrl.result, flipped(self.result))
        wiring.connect(m, iss.wmem, flipped(self.wmem))
        wiring.connect(m, drain.bmem, flipped(self.bmem))
        wiring.connect(m, flipped(self.regs), regs.port)
        wiring.connect(m, post.probe, flipped(self.probe))
        m.d.comb += self.busy.eq(ctrl.busy)
        # controller -> datapath
        m.d.comb += [iss.cmd.eq(ctrl.issue), iss.nrows.eq(ctrl.nrows), iss.exited.eq(ctrl.exited),
                     iss.clear.eq(ctrl.start), drain.nrows.eq(ctrl.nrows), drain.exited.eq(ctrl.exited),
                     acc.load.eq(ctrl.load), acc.start.eq(ctrl.start),
                     acc.norm.eq(ctrl.norm), acc.score_row.eq(ctrl.score_row), ctrl.macs.eq(iss.macs),
                     ctrl.pipe_busy.eq(iss.p1.valid | iss.p1.lab | drain.busy | post.busy)]
        # issue -> banks, array, drain
        m.d.comb += [arr.valid.eq(iss.valid), arr.first.eq(iss.first),
                     arr.last.eq(iss.last), arr.row_en.eq(iss.row_en), drain.p1.eq(iss.p1)]
        self._bank_ports(m, banks, iss, ctrl, acc)
        m.d.comb += [arr.x[r].eq(iss.x[r]) for r in range(cfg.rows)]
        m.d.comb += [arr.w[c].eq(iss.w[c]) for c in range(cfg.cols)]
        m.d.comb += [drain.sums[c].eq(arr.result[0][c]) for c in range(cfg.cols)] + [arr.shift.eq(drain.shift)]
        if s.share:
            m.d.comb += [drain.wlab[j][c].eq(iss.wlab[j][c]) for j in range(cfg.classes) for c in range(cfg.cols)]
        if cfg.zero_skip:       # the non-zero map: written beside the banks, read by the controller
            nz = m.submodules.nzmap = u["nzmap"](s)
            self.elaborated["nzmap"] = nz
            m.d.comb += [nz.load.eq(ctrl.load_bank), nz.drain.eq(post.write), nz.clear.eq(ctrl.nz_clear),
                         nz.rset.eq(ctrl.nz_rset), nz.rsel.eq(ctrl.nz_rsel), nz.raddr.eq(ctrl.nz_raddr),
                         ctrl.nz_mask.eq(nz.mask)]
        if cfg.exit_head != "learned":
            basis = m.submodules.basis = u["basis"](s)
            self.elaborated["basis"] = basis
            m.d.comb += [basis.cmd.eq(ctrl.issue)] + [iss.gen_w[c].eq(basis.w[c]) for c in range(cfg.cols)]
        # drain -> post-processing -> banks, accumulators; register file lookups
        m.d.comb += [acc.sel.eq(drain.norm_sel), drain.norm_m.eq(acc.m), drain.norm_s.eq(acc.s),
                     post.row.eq(drain.row), regs.sel_layer.eq(drain.row.layer), regs.sel_head.eq(drain.row.head),
                     post.shift_base.eq(regs.shift_base), banks.drain.eq(post.write),
                     acc.goodness.eq(post.goodness), acc.logit.eq(post.logit)]
        # exit decision
        m.d.comb += [regs.thr_layer.eq(ctrl.layer), cmp_.threshold.eq(regs.threshold),
                     cmp_.last.eq(ctrl.last_layer), ctrl.cmp_fire.eq(cmp_.fire), ctrl.cmp_label.eq(cmp_.label),
                     cmp_.valid.eq(ctrl.cmp_valid), cmp_.tag.eq(ctrl.cmp_tag),
                     ctrl.cmp_o_valid.eq(cmp_.o_valid), ctrl.cmp_o_tag.eq(cmp_.o_tag),
                     ctrl.exit_enable.eq(regs.exit_enable), ctrl.score_mask.eq(regs.score_mask),
                     acc.score_mask.eq(regs.score_mask)]
        m.d.comb += [cmp_.scores[c].eq(acc.scores[c]) for c in range(cfg.classes)]
        m.d.comb += [ctrl.scores[c].eq(cmp_.o_scores[c]) for c in range(cfg.classes)]
        return m

    def _bank_ports(self, m: Module, banks, iss, ctrl, acc) -> None:
        """The activation banks' read port (the issue stage) and load write port (the
        controller); with physical layers the external-layer port shares both (it runs
        in PORT only, when neither is used)."""
        s, u = self.sched, self.units
        for st in range(2):
            for b in range(s.banks):
                m.d.comb += iss.rdata[st][b].eq(banks.rdata[st][b])
        if not any(s.ports):
            m.d.comb += [banks.raddr.eq(iss.raddr), banks.load.eq(ctrl.load_bank)]
            m.d.comb += [banks.ren[st][b].eq(iss.ren[st][b]) for st in range(2) for b in range(s.banks)]
            return
        port = m.submodules.port = u["port"](s)
        self.elaborated["port"] = port
        wiring.connect(m, port.out, flipped(self.port_out))
        wiring.connect(m, flipped(self.port_in), port.inp)
        m.d.comb += [port.start.eq(ctrl.port_start), port.cp.eq(ctrl.port_cp), port.layer.eq(ctrl.layer),
                     ctrl.port_done.eq(port.done), acc.port_g.eq(port.g),
                     banks.raddr.eq(Mux(port.busy, port.raddr, iss.raddr)),
                     banks.load.eq(Mux(port.busy, port.write.as_value(), ctrl.load_bank.as_value()))]
        for st in range(2):
            for b in range(s.banks):
                m.d.comb += [banks.ren[st][b].eq(iss.ren[st][b] | port.ren[st][b]),
                             port.rdata[st][b].eq(banks.rdata[st][b])]
