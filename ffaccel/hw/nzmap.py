"""Non-zero map of the activation banks (zero skipping): per bank set and sample of an MP
batch, one bit per input index, set when the input is non-zero in some bank of the set
that holds that sample (OP: one map per set, over every row)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule, label_slot_nonzero
from .actbanks import write_layout
from .interfaces import _idx


class NonzeroMap(wiring.Component):
    """Two sets (as the activation banks) of ``maps`` maps of ``bank_depth`` words of
    ``cols`` bits: bit ``c`` of word ``w`` of map ``b`` of set ``s`` says that input
    ``w * cols + c`` is non-zero in some bank of set ``s`` that holds sample ``b`` (MP:
    the sample's image in bank ``b`` of set 0, its label copies in banks ``b * classes ..
    b * classes + classes - 1``), written since the set was cleared. OP has one map per set
    (its passes stream every row of the batch at once); MP one per sample of the batch
    (a copy group streams the map of its own samples: an exited sample's, or another
    group's, non-zero inputs are not streamed).

    Writes mirror the banks' write ports: a ``drain`` word (a drained row) or a ``load``
    lane (a pixel) ORs its non-zero lanes into its word. A loaded pixel at a label slot
    (index below ``classes``) sets its bit to ``label_bit`` instead of its value's: in MP
    some label copy holds the label value there, in OP every row holds the neutral value
    (``label_bit`` is whether that is non-zero). ``clear[s]`` empties set ``s`` (the
    controller clears a set before a pass or a load writes it; it never clears and writes
    a set in one cycle). Read: ``mask`` is the OR of word ``raddr`` of the maps ``rsel``
    selects in set ``rset``, in the same cycle (registers, no read latency), so the
    controller can pick the next input to stream in the cycle it needs it.
    """

    def __init__(self, sched: Schedule):
        if not isinstance(sched, Schedule):
            raise TypeError(f"NonzeroMap: sched={sched!r} must be a Schedule")
        self.sched = sched
        cfg = sched.cfg
        self.label_bit = int(label_slot_nonzero(cfg))
        self.maps = sched.batch_size if cfg.mode == "mp" else 1
        super().__init__({
            "load": In(write_layout(sched)), "drain": In(write_layout(sched)),
            "clear": In(2),
            "rset": In(1), "rsel": In(self.maps), "raddr": In(_idx(sched.bank_depth)),
            "mask": Out(unsigned(cfg.cols)),
        })

    def nonzero(self, value):
        """Whether a written activation counts as non-zero (mutation tests override it)."""
        return value != 0

    def clears(self, clear):
        """The clear command as the map obeys it (mutation tests override it)."""
        return clear

    def elaborate(self, platform):
        m = Module()
        s, cfg = self.sched, self.sched.cfg
        C, A, NC = cfg.cols, cfg.abits, cfg.classes
        B = self.maps
        words = [[Array(Signal(unsigned(C), name=f"nz{st}_{b}_{w}") for w in range(s.bank_depth)) for b in range(B)]
                 for st in range(2)]
        for st in range(2):
            with m.If(self.clears(self.clear[st])):
                m.d.sync += [w.eq(0) for b in range(B) for w in words[st][b]]
        # the label slots' bits, per word (inputs below `classes`)
        label_lanes = Array(Const(sum(1 << c for c in range(C) if w * C + c < NC) if self.label_bit else 0, C)
                            for w in range(s.bank_depth))
        slot_lanes = Array(Const(sum(1 << c for c in range(C) if w * C + c < NC), C) for w in range(s.bank_depth))
        for port, is_load in ((self.drain, False), (self.load, True)):
            nz = Cat(*[self.nonzero(port.data[c * A:(c + 1) * A]) for c in range(C)]) & port.lanes
            if is_load:
                slots = slot_lanes[port.addr] & port.lanes
                nz = (nz & ~slots) | (label_lanes[port.addr] & port.lanes)
            # the written bank's sample: a loaded image's bank is its sample, a drained
            # copy's bank is sample * classes + label
            if B == 1:
                sample = 0
            elif is_load:
                sample = port.bank
            else:
                sample = Array(Const(s.sample_of(b), range(B)) for b in range(s.banks))[port.bank]
            for st in range(2):
                for b in range(B):
                    with m.If((port.set == st) & (port.lanes != 0) & (sample == b)):
                        m.d.sync += words[st][b][port.addr].eq(words[st][b][port.addr] | nz)
        m.d.comb += self.mask.eq(self._or_selected(words))
        return m

    def _or_selected(self, words):
        """The OR over the maps ``rsel`` selects of word ``raddr`` of set ``rset``."""
        out = 0
        for b in range(self.maps):
            word = Array(words[st][b] for st in range(2))[self.rset][self.raddr]
            out = out | Mux(self.rsel[b], word, 0)
        return out
