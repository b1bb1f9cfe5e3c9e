"""The external-layer port: a copy's block input streams out to a physical layer P, P's
answer streams back into the activation banks (docs/architecture.md, "External-layer port")."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule
from .actbanks import write_layout
from .interfaces import _idx, lut_mul


def port_out_layout(sched: Schedule) -> data.StructLayout:
    """A word to P: ``cols`` codes of a copy's block input (lanes past its width 0), the
    copy (MP label copy of the batch, OP row), the layer P is in front of, and ``last``
    on the copy's last word."""
    cfg = sched.cfg
    return data.StructLayout({"data": unsigned(cfg.act_word_bits), "copy": range(sched.banks),
                              "layer": _idx(cfg.n_layers), "last": 1})


def port_in_layout(sched: Schedule) -> data.StructLayout:
    """A word of P's answer: ``cols`` codes (lanes past P's width are written as 0)."""
    return data.StructLayout({"data": unsigned(sched.cfg.act_word_bits)})


def port_goodness_layout(sched: Schedule) -> data.StructLayout:
    """The squares of a word the port moved, for copy ``cp``'s input goodness: ``first``
    replaces the goodness (a copy's first counted word), else it adds."""
    return data.StructLayout({"valid": 1, "first": 1, "cp": range(sched.banks),
                              "sum": unsigned(sched.cfg.goodness_reg_bits)})


def word_codes(word: int, cols: int, abits: int) -> list[int]:
    """The ``cols`` unsigned codes of an activation word (lane 0 in the low bits): what a
    port word, a bank word or a probe beat carries."""
    m = (1 << abits) - 1
    return [(word >> (c * abits)) & m for c in range(cols)]


def answer_words(sched: Schedule, layer: int, codes) -> list[int]:
    """P's answer ``codes`` (``n_p`` of them) as the ``in_words`` port words of the block
    in front of ``layer``, lanes past ``n_p`` 0 (a bench's P sends these)."""
    cfg, port = sched.cfg, sched.ports[layer]
    C, A = cfg.cols, cfg.abits
    padded = [int(v) for v in codes] + [0] * (port.in_words * C - port.n_p)
    return [sum(v << (c * A) for c, v in enumerate(padded[w * C:(w + 1) * C])) for w in range(port.in_words)]


class ExternalPort(wiring.Component):
    """One copy at a time (``start`` with ``cp``, the controller's current ``layer``):

    - SEND: the copy's block input, ``PortPlan.out_words`` words read from its bank of the
      input set (layer 1: the sample's bank, with the label or neutral pixels made here),
      one word per cycle on ``out`` while P takes them (a read ahead of the beat register,
      re-read when P stalls);
    - RECV: ``PortPlan.in_words`` words of P's answer from ``inp`` (always ready), each
      written into the copy's bank from word ``PortPlan.pbase``;
    - the squares of the words that form the layer's input (the block input with
      ``concat``, and the answer) go to the accumulators (``g``): the copy's input
      goodness, complete when ``done`` pulses, two cycles after the answer's last word.

    ``Latencies.port`` - 1 of the copy's fixed cycles are here (the first read, its beat
    register); the controller's start is the last.

    Subclasses may override :meth:`answer_addr` and :meth:`outgoing` (mutation tests only).
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"ExternalPort: sched={sched!r} must be a Schedule")
        if not any(sched.ports):
            raise ValueError("ExternalPort: the config has no physical layer")
        if sched.latency.port != 3:
            raise ValueError(f"ExternalPort: the schedule asks for {sched.latency.port} fixed cycles per copy "
                             "(this port and the controller's start take 3)")
        self.sched = sched
        cfg = sched.cfg
        super().__init__({
            "start": In(1), "cp": In(range(sched.banks)), "layer": In(_idx(cfg.n_layers)),
            "done": Out(1), "busy": Out(1),
            "raddr": Out(_idx(sched.bank_depth)),
            "ren": Out(1).array(2, sched.banks),
            "rdata": In(unsigned(cfg.act_word_bits)).array(2, sched.banks),
            "write": Out(write_layout(sched)),
            "g": Out(port_goodness_layout(sched)),
            "out": Out(stream.Signature(port_out_layout(sched))),
            "inp": In(stream.Signature(port_in_layout(sched))),
        })

    def _field(self, name: str, shape, fn=None):
        """A per-layer constant of the ports (0 for a layer without one), by ``layer``."""
        fn = fn or (lambda p: getattr(p, name))
        return Array(Const(int(fn(p)) if p is not None else 0, shape) for p in self.sched.ports)[self.layer]

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        C, A, NB = cfg.cols, cfg.abits, s.banks
        depth = range(s.bank_depth + 1)
        out_words, in_words = self._field("out_words", depth), self._field("in_words", depth)
        pbase, src = self._field("pbase", depth), self._field("src", 1)
        concat, embedded = self._field("concat", 1), self._field("embedded", 1)
        n_u = self._field("n_u", range(s.max_stream + 1))
        n_p = self._field("n_p", range(s.max_stream + 1))

        cp = Signal(range(NB))
        phase = Signal(range(4))                 # 0 idle, 1 send, 2 receive, 3 the goodness's tail
        m.d.comb += self.busy.eq((phase != 0) | self.start)
        # ---- SEND: ri the word read last cycle (rv: a read was made), pay the beat on offer
        ri, rv = Signal(depth), Signal()
        pay, pv, pidx = Signal(unsigned(cfg.act_word_bits)), Signal(), Signal(depth)
        bank = Signal(range(NB))                 # the bank read: the copy's, layer 1 MP the sample's
        m.d.comb += bank.eq(self._bank(cp, embedded))
        word = Signal(unsigned(cfg.act_word_bits))
        m.d.comb += word.eq(Array(Mux(src, self.rdata[1][b], self.rdata[0][b]) for b in range(NB))[bank])
        take = Signal()
        m.d.comb += take.eq((phase == 1) & rv & (~pv | self.out.ready))

        def read(idx, cond):
            m.d.comb += self.raddr.eq(idx)
            with m.If(cond):
                for st in range(2):
                    for b in range(NB):
                        m.d.comb += self.ren[st][b].eq((src == st) & (bank == b))
            m.d.sync += [ri.eq(idx), rv.eq(cond)]

        with m.If((phase == 0) & self.start):
            m.d.sync += [cp.eq(self.cp), phase.eq(1), pv.eq(0)]
            m.d.comb += bank.eq(self._bank(self.cp, embedded))
            read(0, 1)
        with m.If(phase == 1):
            nxt = Mux(take, ri + 1, ri)
            read(nxt, nxt < out_words)
            with m.If(take):
                m.d.sync += [pay.eq(self.outgoing(word, ri, cp, embedded, n_u)), pidx.eq(ri), pv.eq(1)]
            with m.Elif(self.out.ready):
                m.d.sync += pv.eq(0)
            with m.If(pv & self.out.ready & (pidx == out_words - 1)):
                m.d.sync += [phase.eq(2), pv.eq(0), rv.eq(0)]
        m.d.comb += [self.out.valid.eq((phase == 1) & pv), self.out.payload.data.eq(pay),
                     self.out.payload.copy.eq(cp), self.out.payload.layer.eq(self.layer),
                     self.out.payload.last.eq(pidx == out_words - 1)]
        # ---- RECV: every answer word written at once, lanes past P's width as 0
        widx = Signal(depth)
        keep = Signal(C)
        lanes = Cat(*[(widx * C + c < n_p) for c in range(C)])
        m.d.comb += keep.eq(lanes)
        answer = Cat(*[Mux(keep[c], self.inp.payload.data[c * A:(c + 1) * A], 0) for c in range(C)])
        m.d.comb += self.inp.ready.eq(phase == 2)
        got = self.inp.valid & (phase == 2)
        with m.If(got):
            m.d.comb += [self.write.lanes.eq((1 << C) - 1), self.write.set.eq(src), self.write.bank.eq(cp),
                         self.write.addr.eq(self.answer_addr(pbase, widx)), self.write.data.eq(answer)]
            m.d.sync += widx.eq(widx + 1)
            with m.If(widx == in_words - 1):
                m.d.sync += [phase.eq(3), widx.eq(0)]
        # ---- the input goodness: squares registered, their sum registered
        sent = (phase == 1) & pv & self.out.ready
        sq_word = Mux(sent, pay, answer)
        sq_valid = (sent & concat) | got
        sq_first = Mux(sent, pidx == 0, (widx == 0) & ~concat)
        sq = [Signal(unsigned(2 * A), name=f"psq{c}") for c in range(C)]
        v1, f1 = Signal(), Signal()
        m.d.sync += [sq[c].eq(lut_mul(sq_word[c * A:(c + 1) * A], sq_word[c * A:(c + 1) * A])) for c in range(C)]
        m.d.sync += [v1.eq(sq_valid), f1.eq(sq_first)]
        m.d.sync += [self.g.valid.eq(v1), self.g.first.eq(f1), self.g.cp.eq(cp), self.g.sum.eq(sum(sq))]
        # ---- the tail: the last answer word's goodness goes out (2 cycles), then done
        tail = Signal(range(3))
        with m.If(phase == 3):
            m.d.sync += tail.eq(tail + 1)
            with m.If(tail == 1):
                m.d.comb += self.done.eq(1)
                m.d.sync += [phase.eq(0), tail.eq(0)]
        return m

    def answer_addr(self, pbase, widx):
        """The bank word of answer word ``widx`` (overridden by mutation tests only)."""
        return pbase + widx

    def _bank(self, cp, embedded):
        """The bank holding copy ``cp``'s block input: its own; MP layer 1 its sample's."""
        s = self.sched
        if s.cfg.mode != "mp":
            return cp
        return Mux(embedded, Array(Const(s.sample_of(c), range(s.banks)) for c in range(s.banks))[cp], cp)

    def outgoing(self, word, idx, cp, embedded, n_u):
        """A word of the block input as P receives it: lanes past ``n_u`` are 0; layer 1's
        first ``classes`` positions carry the copy's label (MP: ``label_value`` at its
        label, 0 elsewhere) or the neutral pixel (OP)."""
        s, cfg = self.sched, self.sched.cfg
        A, C, NC = cfg.abits, cfg.cols, cfg.classes
        if cfg.mode == "mp":
            label = Array(Const(s.label_of(c), range(NC)) for c in range(s.banks))[cp]
        lanes = []
        for c in range(C):
            q = idx * C + c
            v = word[c * A:(c + 1) * A]
            emb = (Mux(q == label, cfg.label_value, 0) if cfg.mode == "mp" else cfg.neutral_value)
            v = Mux(embedded & (q < NC), emb, v)
            lanes.append(Mux(q < n_u, v, 0))
        return Cat(*lanes)
