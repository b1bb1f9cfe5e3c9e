"""Goodness accumulators: input goodness while a sample loads, per-copy goodness of the
layer being computed, the normalisation factors (rsqrt) of the next pass's inputs, and
the cumulative scores (MP goodness per label, OP logits per row)."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import _idx
from .postproc import goodness_layout, logit_layout
from .rsqrt import RSqrt


def load_layout(sched: Schedule) -> data.StructLayout:
    cfg = sched.cfg
    return data.StructLayout({"valid": 1, "pixel": unsigned(cfg.abits), "label_px": 1, "last": 1,
                              "row": range(sched.tags + 1)})


def norm_layout(sched: Schedule) -> data.StructLayout:
    return data.StructLayout({"en": 1, "idx": range(max(sched.banks, sched.cfg.rows) + 1)})


class Accumulators(wiring.Component):
    """Stage E and the goodness / score registers.

    - ``load`` (a pixel accepted): adds ``pixel**2`` to the input goodness unless it is a
      label pixel; on the sample's last pixel the goodness of the embedded input (image +
      the label pixel (MP) or the neutral pixels (OP)) goes to every copy (MP) or to row
      ``row`` (OP); all ``Latencies.load`` cycles after the beat (registered, squared).
    - ``norm`` (``en``, ``idx``): ``g[idx] <= 0``, and ``(m, s)[idx] <= rsqrt(g[idx])``
      written ``Latencies.norm`` - 1 cycles later (a register, then the rsqrt's stages):
      the factors are read from ``Latencies.norm`` cycles after the step on.
    - ``goodness`` (from the post-processing): ``g[cp] += sum``; MP also ``score[cp] += sum``
      when ``score_mask`` has the row's layer.
    - ``logit`` (OP heads): the increments of lanes ``c`` go to classes ``tile*cols + c``
      of row ``cp``, when ``score_mask`` has the head's layer.
    - ``start``: clears the scores and the input goodness.
    - ``sel`` -> ``m``, ``s``: the normalisation factors of a copy (for the drain).
    - ``score_row`` -> ``scores``: MP the label scores of that sample, OP the logits of
      that row.

    Subclasses may override :meth:`logit_lanes` and :meth:`score_enable` (mutation tests only).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"Accumulators: sched={sched!r} must be a Schedule")
        if sched.latency.load != 2:
            raise ValueError(f"Accumulators: the schedule asks for load latency {sched.latency.load} (this unit has 2)")
        if sched.latency.norm != 2 + RSqrt.LATENCY:
            raise ValueError(f"Accumulators: the schedule asks for norm latency {sched.latency.norm} "
                             f"(this unit has {2 + RSqrt.LATENCY})")
        self.sched = sched
        cfg = sched.cfg
        nb = sched.banks
        super().__init__({
            "load": In(load_layout(sched)), "start": In(1), "norm": In(norm_layout(sched)),
            "goodness": In(goodness_layout(sched)), "logit": In(logit_layout(sched)),
            "sel": In(sched.copy_index), "score_mask": In(cfg.n_layers),
            "m": Out(unsigned(cfg.rsqrt_mant_bits)), "s": Out(unsigned(cfg.rsqrt_shift_bits)),
            "score_row": In(_idx(sched.tags)),
            "scores": Out(signed(cfg.score_bits)).array(cfg.classes),
        })
        gb = cfg.goodness_reg_bits
        self.g = [Signal(unsigned(gb), name=f"g{b}") for b in range(nb)]
        self.g_img = Signal(unsigned(gb))

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        NC, R, mp = cfg.classes, cfg.rows, cfg.mode == "mp"
        rs = m.submodules.rsqrt = RSqrt(cfg.goodness_reg_bits, cfg.rsqrt_frac, cfg.rsqrt_index)
        g = Array(self.g)
        m_r = Array(Signal(unsigned(cfg.rsqrt_mant_bits), name=f"m{b}") for b in range(s.banks))
        s_r = Array(Signal(unsigned(cfg.rsqrt_shift_bits), name=f"s{b}") for b in range(s.banks))
        m.d.comb += [self.m.eq(m_r[self.sel]), self.s.eq(s_r[self.sel])]
        # MP: a score per label copy of the batch (copy b * classes + c: sample b, label c)
        score = [Signal(signed(cfg.score_bits), name=f"score{c}") for c in range(s.banks)] if mp else []
        logits = Array(Array(Signal(signed(cfg.score_bits), name=f"lg{r}_{c}") for c in range(NC))
                       for r in range(R)) if not mp else None
        # stage E (and the OP logit adds); the controller's operations below win a conflict.
        # Each register has its own adder, enabled by the decoded copy: no read multiplexer
        # in front of a shared adder (that was an ECP5 critical path)
        gd = self.goodness
        for b in range(s.banks):
            with m.If(gd.valid & (gd.cp == b)):
                m.d.sync += self.g[b].eq(self.g[b] + gd.sum)
        if mp:
            with m.If(gd.valid & self.score_enable(gd.layer)):
                for c in range(s.banks):
                    with m.If(gd.cp == c):
                        m.d.sync += score[c].eq(score[c] + gd.sum)
        if not mp:
            self._logit_add(m, logits)
        self._load(m, g)
        self._norm(m, g, rs, m_r, s_r)
        with m.If(self.start):
            m.d.sync += [self.g_img.eq(0)] + [sc.eq(0) for sc in score]
            if not mp:
                m.d.sync += [logits[r][c].eq(0) for r in range(R) for c in range(NC)]
        B = s.batch_size
        for c in range(NC):
            if mp:
                sc = score[c] if B == 1 else Array(score[s.copy_of(b, c)] for b in range(B))[self.score_row]
            else:
                sc = Array(logits[r][c] for r in range(R))[self.score_row]
            m.d.comb += self.scores[c].eq(sc)
        return m

    def _norm(self, m: Module, g, rs, m_r, s_r):
        """A NORM step's ``g[idx]`` is registered (and cleared), goes through the rsqrt's
        pipeline, and its factors are written ``Latencies.norm`` - 1 cycles after the step."""
        nb, st = self.sched.banks, self.norm
        en = Signal()
        idx = Signal(range(nb + 1))
        gsel = Signal.like(self.g[0])
        m.d.sync += [en.eq(st.en), idx.eq(st.idx), gsel.eq(g[st.idx])]
        with m.If(st.en):
            m.d.sync += g[st.idx].eq(0)
        m.d.comb += rs.g.eq(gsel)
        for i in range(RSqrt.LATENCY):
            en_d, idx_d = Signal(name=f"norm_en{i}"), Signal.like(idx, name=f"norm_idx{i}")
            m.d.sync += [en_d.eq(en), idx_d.eq(idx)]
            en, idx = en_d, idx_d
        with m.If(en):
            m.d.sync += [m_r[idx].eq(rs.m), s_r[idx].eq(rs.s)]

    def score_enable(self, layer):
        """Whether the scores take ``layer``'s increment (overridden by mutation tests only)."""
        return self.score_mask.bit_select(layer, 1)

    def logit_lanes(self):
        """The lanes whose increments are added (all; overridden by mutation tests only)."""
        return range(self.sched.cfg.cols)

    def _logit_add(self, m: Module, logits):
        cfg, lg = self.sched.cfg, self.logit
        with m.If(lg.valid & self.score_enable(lg.layer)):
            for r in range(cfg.rows):                       # decoded row: an adder each
                with m.If(lg.cp == r):
                    for c in self.logit_lanes():
                        for cls in range(c, cfg.classes, cfg.cols):
                            with m.If(lg.tile == cls // cfg.cols):
                                m.d.sync += logits[r][cls].eq(logits[r][cls] + lg.inc[c])

    def _load(self, m: Module, g):
        """A loaded pixel's beat is registered (1), its square registered (2), then added:
        the goodness is in ``Latencies.load`` + 1 cycles after the beat. The controller
        waits ``Latencies.load`` cycles (SETTLE) before START clears ``g_img`` and NORM
        reads ``g``."""
        cfg, s = self.sched.cfg, self.sched
        ld1, ld = Signal(load_layout(s)), Signal(load_layout(s))
        sq = Signal(unsigned(2 * cfg.abits))
        m.d.sync += [ld1.eq(self.load), ld.eq(ld1), sq.eq(ld1.pixel * ld1.pixel)]
        with m.If(ld.valid):
            with m.If(~ld.label_px):
                m.d.sync += self.g_img.eq(self.g_img + sq)
            with m.If(ld.last):
                if cfg.mode == "mp":
                    # every label copy of the sample: its image and the label pixel
                    g0 = self.g_img + sq + cfg.label_value ** 2
                    NC = cfg.classes
                    for b in range(self.sched.batch_size):
                        with m.If(ld.row == b):
                            m.d.sync += [self.g[self.sched.copy_of(b, c)].eq(g0) for c in range(NC)]
                    m.d.sync += self.g_img.eq(0)
                else:
                    g0 = self.g_img + sq + cfg.classes * cfg.neutral_value ** 2
                    m.d.sync += [g[ld.row].eq(g0), self.g_img.eq(0)]
