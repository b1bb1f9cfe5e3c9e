"""Goodness accumulators: input goodness while a sample loads, per-copy goodness of the
layer being computed, the normalisation factors (rsqrt) of the next pass's inputs, and
the cumulative scores (MP goodness per label, OP logits per row)."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .interfaces import _idx
from .port import port_goodness_layout
from .postproc import goodness_layout, logit_layout
from .rsqrt import RSqrt


def load_layout(sched: Schedule) -> data.StructLayout:
    cfg = sched.cfg
    return data.StructLayout({"valid": 1, "pixel": unsigned(cfg.abits), "label_px": 1, "last": 1,
                              "row": range(sched.tags + 1)})


def norm_layout(sched: Schedule) -> data.StructLayout:
    """A NORM step of copy ``idx``; with the cosine engine, ``cos`` marks a COS step (it
    also scores layer ``layer``'s cosine goodness)."""
    fields = {"en": 1, "idx": range(max(sched.banks, sched.cfg.rows) + 1)}
    if sched.cfg.cos_engine:
        fields.update({"cos": 1, "layer": _idx(sched.cfg.n_layers)})
    return data.StructLayout(fields)


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
      when ``score_mask`` has the row's layer; the cosine engine ``d[cp] += dot`` instead
      of the score add.
    - cosine engine, a COS step (``norm`` with ``cos``): the NORM step, and with its
      factors ``score[idx] += rshr(d * m * k_l, rsqrt_frac + s + COS_KFRAC - lfrac)``
      (``intops.cos_goodness``; ``d[idx]`` cleared), in the score ``Latencies.cos``
      cycles after the step, when ``score_mask`` has the layer.
    - ``logit`` (OP heads): the increments of lanes ``c`` go to classes ``tile*cols + c``
      of row ``cp``, when ``score_mask`` has the head's layer.
    - ``port_g`` (physical layers, the external-layer port): ``g[cp] = sum`` on a copy's
      first word, ``g[cp] += sum`` after: the input goodness of the layer behind P.
    - ``start``: clears the scores and the input goodness.
    - ``sel`` -> ``m``, ``s``: the normalisation factors of a copy (for the drain).
    - ``score_row`` -> ``scores``: MP the label scores of that sample, OP the logits of
      that row.

    Subclasses may override :meth:`logit_lanes`, :meth:`score_enable` and :meth:`cos_half`
    (mutation tests only).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"Accumulators: sched={sched!r} must be a Schedule")
        if sched.latency.load != 2:
            raise ValueError(f"Accumulators: the schedule asks for load latency {sched.latency.load} (this unit has 2)")
        if sched.latency.norm != 2 + RSqrt.LATENCY:
            raise ValueError(f"Accumulators: the schedule asks for norm latency {sched.latency.norm} "
                             f"(this unit has {2 + RSqrt.LATENCY})")
        if sched.latency.cos != sched.latency.norm + self.COS_STAGES:
            raise ValueError(f"Accumulators: the schedule asks for cosine latency {sched.latency.cos} "
                             f"(this unit has {sched.latency.norm + self.COS_STAGES})")
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
            **({"port_g": In(port_goodness_layout(sched))} if any(sched.ports) else {}),
        })
        gb = cfg.goodness_reg_bits
        self.g = [Signal(unsigned(gb), name=f"g{b}") for b in range(nb)]
        self.g_img = Signal(unsigned(gb))
        # the cosine engine: d = r_l . h per copy
        self.d = [Signal(signed(cfg.cos_dot_bits), name=f"d{b}") for b in range(nb)] if cfg.cos_engine else []

    #: the cosine engine's stages after the rsqrt: d * m, * k_l, the rounding term, the shift
    COS_STAGES = 4

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
                if cfg.cos_engine:
                    m.d.sync += self.d[b].eq(self.d[b] + gd.dot)
        if any(s.ports):
            # the external-layer port: the squares of the words that form a copy's input
            pg = self.port_g
            for b in range(s.banks):
                with m.If(pg.valid & (pg.cp == b)):
                    m.d.sync += self.g[b].eq(Mux(pg.first, 0, self.g[b]) + pg.sum)
        if mp and not cfg.cos_engine:
            with m.If(gd.valid & self.score_enable(gd.layer)):
                for c in range(s.banks):
                    with m.If(gd.cp == c):
                        m.d.sync += score[c].eq(score[c] + gd.sum)
        if not mp:
            self._logit_add(m, logits)
        self._load(m, g)
        self._norm(m, g, rs, m_r, s_r, score)
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

    def _norm(self, m: Module, g, rs, m_r, s_r, score):
        """A NORM step's ``g[idx]`` is registered (and cleared), goes through the rsqrt's
        pipeline, and its factors are written ``Latencies.norm`` - 1 cycles after the step.
        A COS step carries ``d[idx]`` (cleared) beside it to :meth:`_cos`."""
        nb, st, cosine = self.sched.banks, self.norm, self.sched.cfg.cos_engine
        tag = data.StructLayout({"en": 1, "idx": range(nb + 1), "cos": 1, "layer": _idx(self.sched.cfg.n_layers)})
        t = Signal(tag, name="norm_t")
        gsel = Signal.like(self.g[0])
        m.d.sync += [t.en.eq(st.en), t.idx.eq(st.idx), gsel.eq(g[st.idx])]
        with m.If(st.en):
            m.d.sync += g[st.idx].eq(0)
        if cosine:
            dsel = Signal.like(self.d[0], name="dsel")
            m.d.sync += [t.cos.eq(st.en & st.cos), t.layer.eq(st.layer), dsel.eq(Array(self.d)[st.idx])]
            with m.If(st.en):
                m.d.sync += Array(self.d)[st.idx].eq(0)
        m.d.comb += rs.g.eq(gsel)
        for i in range(RSqrt.LATENCY):
            t_d = Signal(tag, name=f"norm_t{i}")
            m.d.sync += t_d.eq(t)
            t = t_d
            if cosine:
                d_d = Signal.like(dsel, name=f"dsel{i}")
                m.d.sync += d_d.eq(dsel)
                dsel = d_d
        with m.If(t.en):
            m.d.sync += [m_r[t.idx].eq(rs.m), s_r[t.idx].eq(rs.s)]
        if cosine:
            self._cos(m, t, dsel, rs, score)

    def _cos(self, m: Module, t, d, rs, score):
        """The cosine engine's stages after the rsqrt (``COS_STAGES``): X1 ``d * m`` and the
        shift ``rsqrt_frac + s + COS_KFRAC - lfrac``, X2 ``* k_l`` (a per-layer constant),
        X3 the rounding term added, X4 the shift; the score add at the end of X4's next
        cycle (a register per copy with its own adder, as stage E's)."""
        from ..config import COS_KFRAC, COS_RBITS
        from ..fixedpoint import cos_scale

        cfg = self.sched.cfg
        ks = [cos_scale(i, n, COS_RBITS, COS_KFRAC) for i, n in enumerate(cfg.layers)]
        p1 = Signal(signed(cfg.cos_dot_bits + cfg.rsqrt_mant_bits), name="cos_p1")
        p2 = Signal(signed(len(p1) + cfg.cos_scale_bits), name="cos_p2")
        base = cfg.rsqrt_frac + COS_KFRAC - cfg.lfrac
        sh = [Signal(range(base + (1 << cfg.rsqrt_shift_bits)), name=f"cos_sh{i}") for i in range(3)]
        t1, t2, t3, t4 = (Signal.like(t, name=f"cos_t{i}") for i in range(1, 5))
        k = Signal(unsigned(cfg.cos_scale_bits), name="cos_k")
        # wide enough for the rounding term of the largest shift too (a shift past the
        # product still rounds as rshr does: to 0 or -1 by the sign, plus the half)
        w = max(len(p2), base + (1 << cfg.rsqrt_shift_bits)) + 1
        rsum, q = Signal(signed(w), name="cos_rsum"), Signal(signed(w), name="cos_q")
        m.d.sync += [t1.eq(t), p1.eq(d * rs.m), sh[0].eq(base + rs.s),
                     k.eq(Array(Const(v, unsigned(cfg.cos_scale_bits)) for v in ks)[t.layer])]
        m.d.sync += [t2.eq(t1), p2.eq(p1 * k), sh[1].eq(sh[0])]
        m.d.sync += [t3.eq(t2), rsum.eq(p2 + self.cos_half(sh[1], w)), sh[2].eq(sh[1])]
        m.d.sync += [t4.eq(t3), q.eq(rsum >> sh[2])]
        with m.If(t4.cos & self.score_enable(t4.layer)):
            for c in range(self.sched.banks):
                with m.If(t4.idx == c):
                    m.d.sync += score[c].eq(score[c] + q)

    def cos_half(self, shift, width: int):
        """2**(shift-1), 0 for shift 0: the cosine's rounding term (overridden by mutation
        tests only)."""
        return (Const(1, unsigned(width)) << shift) >> 1

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
