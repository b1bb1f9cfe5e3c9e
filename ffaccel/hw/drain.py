"""Drain: reads a finished tile out of the PE shadow registers, one row per cycle (the
array shifts them up a row per cycle), and forms each row's post-processing input (drain
stage A)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import REPLICA, MemRead, const_mul, drained_rows, pass_field, row_layout, tag_layout
from .issue import p1_layout


class Drain(wiring.Component):
    """A tile ends on its last input (``p1.last``, or the last label word when shared);
    ``Latencies.read_reg + operand + product`` cycles later, when its last accumulate happens, the
    tile's bias word is read, and the next cycle (``go``) row 0 is drained,
    then one row per cycle: the copy group's rows (MP), the label copies of the shared
    layer 1 (MP sharing: row 0 plus ``label_value`` times the copy's label weight), or the
    batch rows (OP). Every row is read at the array's row 0 (``sums``): after each drained
    row but the last, ``shift`` moves the shadow registers up a row (never in the shared
    layer, whose copies all come from row 0), raised ``Latencies.shift`` cycles before.
    Stage A (two registers, ``Latencies.select``) forms the row's sums, bias word and the normalisation factors ``(m, s)`` of its copy
    (looked up through ``norm_sel``/``norm_m``/``norm_s``).
    OP rows whose sample already exited are drained (fixed timing) but not ``live``.
    Subclasses may override :meth:`label_value` (mutation tests only).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"Drain: sched={sched!r} must be a Schedule")
        if (sched.latency.select, sched.latency.shift) != (2, 1):
            raise ValueError(f"Drain: the schedule asks for {sched.latency.select} stage A registers and a shift "
                             f"command {sched.latency.shift} cycles ahead (this unit has 2 and 1)")
        self.sched = sched
        cfg, mm = sched.cfg, sched.memory
        R, C = cfg.rows, cfg.cols
        members = {
            "p1": In(p1_layout(sched)),
            "sums": In(signed(cfg.accbits)).array(C),
            "shift": Out(1),
            "bmem": Out(MemRead(mm.baddr_bits, mm.bias_word_bits)),
            "nrows": In(range(sched.batch_size + 1)), "exited": In(sched.batch_size),
            "norm_sel": Out(sched.copy_index),
            "norm_m": In(unsigned(cfg.rsqrt_mant_bits)), "norm_s": In(unsigned(cfg.rsqrt_shift_bits)),
            "row": Out(row_layout(sched)),
            "busy": Out(1),
        }
        if sched.share:
            members["wlab"] = In(signed(cfg.wbits)).array(cfg.classes, C)
        super().__init__(members)

    def label_value(self) -> int:
        """The label pixel's value (overridden by mutation tests only)."""
        return self.sched.cfg.label_value

    def elaborate(self, platform):
        m = Module()
        s, cfg, mm, p1 = self.sched, self.sched.cfg, self.sched.memory, self.p1
        R, NC = cfg.rows, cfg.classes
        # the tile's end as the issue stage sees it (its last input's data in), then as the
        # array does: through the operand and product registers
        done, dtag, pipe = (p1.valid & p1.last & ~p1.tag.shared) | p1.lab_last, p1.tag, []
        for i in range(s.latency.read_reg + s.latency.operand + s.latency.product):
            d, t = Signal(name=f"done{i}"), Signal(tag_layout(s), name=f"done_tag{i}")
            m.d.sync += [d.eq(done), t.eq(dtag)]
            done, dtag = d, t
            pipe.append(d)
        # the tile's last sums reach the shadow registers: read its bias word, drain next
        go = Signal()
        m.d.sync += go.eq(done)
        bbase = pass_field(s, "bbase", unsigned(mm.baddr_bits), dtag.layer, dtag.head)
        with m.If(done & pass_field(s, "biased", 1, dtag.layer, dtag.head)):
            m.d.comb += [self.bmem.en.eq(1), self.bmem.addr.eq(bbase + dtag.tile)]
        tag = Signal(tag_layout(s))
        m.d.sync += tag.eq(dtag)
        # the tile's bias word (0 for a pass without biases: LLS heads)
        bias_in = Mux(pass_field(s, "biased", 1, tag.layer, tag.head), self.bmem.data, 0)
        n_go = drained_rows(s, m, tag.shared, tag.grp, self.nrows)
        # drain counter: row 0 in the ``go`` cycle, rows 1..n-1 after it
        top = max(R, s.banks) + 1
        act, j, n = Signal(), Signal(range(top)), Signal(range(top))
        info = Signal(tag_layout(s))
        bias = Signal(unsigned(cfg.bias_word_bits))
        with m.If(go):
            m.d.sync += [act.eq(n_go > 1), j.eq(1), n.eq(n_go), bias.eq(bias_in), info.eq(tag)]
        with m.Elif(act):
            m.d.sync += j.eq(j + 1)
            with m.If(j == n - 1):
                m.d.sync += act.eq(0)
        cur_valid, cur, cur_bias = Signal(), Signal(tag_layout(s)), Signal.like(bias)
        with m.If(go):
            m.d.comb += [cur_valid.eq(1), cur.eq(tag), cur_bias.eq(bias_in)]
        with m.Else():
            m.d.comb += [cur_valid.eq(act & (j < n)), cur.eq(info), cur_bias.eq(bias)]
        # the drained row's copy, sample and label copy (``cp``, ``smp``, ``cls``) as
        # registers set the cycle before: the group's first when a tile is done, then the
        # next copy each cycle (no group product or add before the norm-factor select)
        cp, smp, cls = (Signal(s.copy_index, name="cp_q"), Signal(range(s.batch_size + 1), name="smp_q"),
                        Signal(range(NC), name="cls_q"))
        nxt_cp, nxt_smp, nxt_cls = self._next_copy(m, done, dtag, cp, smp, cls)
        m.d.sync += [cp.eq(nxt_cp), smp.eq(nxt_smp), cls.eq(nxt_cls)]
        # shift the shadow registers after every drained row but the last (j < n - 1), in
        # the cycles [go, go + n - 1): the PEs register the command (``Latencies.shift``),
        # so it is raised the cycle before, from the state the next cycle will have. The
        # shared layer 1 drains every label copy of a sample from row 0, then shifts the
        # next sample's row up (after the sample's last label copy)
        n_done = drained_rows(s, m, dtag.shared, dtag.grp, self.nrows)
        last_cls = nxt_cls == NC - 1
        with m.If(done):                                # go next: as its first row
            m.d.comb += self.shift.eq((n_done > 1) & (~dtag.shared | last_cls))
        with m.Elif(go):                                # row 1 next (j = 1, n = n_go)
            m.d.comb += self.shift.eq((n_go > 2) & (~tag.shared | last_cls))
        with m.Elif(act):                               # row j + 1 next
            m.d.comb += self.shift.eq((j + 2 < n) & (~info.shared | last_cls))
        # fpga_regs: each lane's label-weight select (the label copy) as a register of its
        # own, set the cycle before as the others: the drain's control no longer reaches
        # across the die into every lane's select
        jsel = None
        if cfg.fpga_regs and s.share:
            jsel = [Signal.like(cls, name=f"jsel{c}", attrs=REPLICA) for c in range(cfg.cols)]
            m.d.sync += [x.eq(nxt_cls) for x in jsel]
        a1 = self._stage_a(m, cur_valid, cur, cur_bias, cp, smp, jsel or [cls] * cfg.cols)
        m.d.comb += self.busy.eq(go | act | a1.valid | self.row.valid | Cat(*pipe).any())
        return m

    def _next_copy(self, m: Module, done, dtag, cp, smp, cls):
        """The copy index, sample and label copy of the next cycle's row: a done tile's
        group's first copy (MP: copy ``grp * rows``, 0 in the shared layer; OP: row 0),
        else one copy on (MP: the label copies of a sample, then the next sample's; OP:
        the next row, a sample each)."""
        s, cfg = self.sched, self.sched.cfg
        NC, R = cfg.classes, cfg.rows
        if cfg.mode == "mp":
            first = [g * R for g in range(s.copy_groups)]
            cp0 = Mux(dtag.shared, 0, Array(Const(v, s.copy_index) for v in first)[dtag.grp])
            smp0 = Mux(dtag.shared, 0, Array(Const(s.sample_of(v), range(s.batch_size + 1)) for v in first)[dtag.grp])
            cls0 = Mux(dtag.shared, 0, Array(Const(s.label_of(v), range(NC)) for v in first)[dtag.grp])
            wrap = cls == NC - 1
            return (Mux(done, cp0, cp + 1), Mux(done, smp0, Mux(wrap, smp + 1, smp)),
                    Mux(done, cls0, Mux(wrap, 0, cls + 1)))
        return Mux(done, 0, cp + 1), Mux(done, 0, smp + 1), 0

    def _stage_a(self, m: Module, valid, cur, bias, cp, smp, sel):
        """Stage A1 registers row 0's sums, the row's metadata and its copy's norm factors
        (and with sharing the row's label weights, selected per lane by ``sel``: the label
        copy, each lane's own register with ``fpga_regs``); stage A2 adds the label term
        ``label_value * wlab[label copy]`` (shared layer) and registers ``row``. A row is
        ``live`` when its sample is still in the batch (loaded, not exited). (One stage
        did both: the select, a multiplier and the add in one cycle were an ECP5 critical
        path, docs/results.md; the constant product is shifted adds, not a multiplier
        block.)"""
        s, cfg, row = self.sched, self.sched.cfg, self.row
        C = cfg.cols
        m.d.comb += self.norm_sel.eq(cp)
        B = s.batch_size
        live = (smp < self.nrows) & ~Array(self.exited[b] for b in range(B))[smp]
        a1 = Signal(row_layout(s))
        m.d.sync += [a1.valid.eq(valid), a1.live.eq(live), a1.cp.eq(cp), a1.tile.eq(cur.tile),
                     a1.layer.eq(cur.layer), a1.head.eq(cur.head), a1.bias.eq(bias),
                     a1.m.eq(self.norm_m), a1.s.eq(self.norm_s)]
        m.d.sync += [a1.acc[c].eq(self.sums[c]) for c in range(C)]
        m.d.sync += row.eq(a1)
        if s.share:
            # one copy of the flag per lane (``REPLICA``): it steers every sum bit of A2
            shared = [Signal(name=f"shared{c}", attrs=REPLICA) for c in range(C)]
            wsel = [Signal(signed(cfg.wbits), name=f"wsel{c}") for c in range(C)]
            m.d.sync += [shared[c].eq(cur.shared) for c in range(C)]
            m.d.sync += [wsel[c].eq(Array(self.wlab[i][c] for i in range(cfg.classes))[sel[c]]) for c in range(C)]
            for c in range(C):
                with m.If(shared[c]):
                    m.d.sync += row.acc[c].eq(a1.acc[c] + const_mul(wsel[c], self.label_value()))
        return a1
