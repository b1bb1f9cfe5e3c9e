"""Interfaces of the engine and of its units: signatures and payload layouts, and the
small pieces of RTL that several units share (per-pass constants, drained rows).

Data widths come from the config, index ranges from the schedule's counts
(:mod:`ffaccel.schedule`); the layouts below state them once for every unit.

- ``pixels``: ``stream.Signature(pixel_layout)``, one input code per beat (``last`` on the
  final pixel of an OP batch).
- ``result``: ``stream.Signature(result_layout)``, one result per sample.
- ``probe``: :class:`Monitor` of ``probe_layout``: one word of ``cols`` activations per
  beat, no back-pressure (an observer cannot stall the engine).
- ``wmem`` / ``bmem``: :class:`MemRead`, synchronous read (data one cycle after the address).
- ``regs``: :class:`RegPort`, writes to the run-time registers of the register map.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..schedule import Schedule


#: attributes of a register that is one of several identical copies (the PE's tile
#: controls, one per PE): synthesis would merge the copies back into one register with
#: a fan-out of thousands, so the FPGA flow marks these ``keep`` (ffaccel.fpga.flow)
REPLICA = {"ffaccel_replica": 1}


def _check_width(owner: str, name: str, value, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise TypeError(f"{owner}: {name}={value!r} must be an integer >= {lo}")


class MemRead(wiring.Signature):
    """Read port of a synchronous memory, from the reader's side: ``en`` and ``addr`` in
    cycle t, ``data`` in t+1 (held while ``en`` is low)."""

    def __init__(self, addr_bits: int, data_bits: int):
        _check_width("MemRead", "addr_bits", addr_bits)
        _check_width("MemRead", "data_bits", data_bits)
        self.addr_bits, self.data_bits = addr_bits, data_bits
        super().__init__({"en": Out(1), "addr": Out(unsigned(addr_bits)), "data": In(unsigned(data_bits))})

    def __eq__(self, other):
        return type(other) is MemRead and (other.addr_bits, other.data_bits) == (self.addr_bits, self.data_bits)

    def __repr__(self):
        return f"MemRead({self.addr_bits}, {self.data_bits})"


class RegPort(wiring.Signature):
    """Register write port, from the writer's side: ``data`` is written to register
    ``addr`` in the cycle ``we`` is high. ``data`` is signed and wide enough for every
    register's full range (see :class:`ffaccel.schedule.RegisterMap`)."""

    def __init__(self, addr_bits: int, data_bits: int):
        _check_width("RegPort", "addr_bits", addr_bits)
        _check_width("RegPort", "data_bits", data_bits, 2)
        self.addr_bits, self.data_bits = addr_bits, data_bits
        super().__init__({"we": Out(1), "addr": Out(unsigned(addr_bits)), "data": Out(signed(data_bits))})

    def __eq__(self, other):
        return type(other) is RegPort and (other.addr_bits, other.data_bits) == (self.addr_bits, self.data_bits)

    def __repr__(self):
        return f"RegPort({self.addr_bits}, {self.data_bits})"


class Monitor(wiring.Signature):
    """``valid`` + ``payload`` without ``ready``: a trace output nobody may stall."""

    def __init__(self, layout):
        self.layout = layout
        super().__init__({"valid": Out(1), "payload": Out(layout)})

    def __eq__(self, other):
        return type(other) is Monitor and other.layout == self.layout

    def __repr__(self):
        return f"Monitor({self.layout!r})"


def _idx(n: int):
    """Shape of an index over n items (at least one bit)."""
    return range(max(n, 2))


def pixel_layout(s: Schedule) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(s.cfg.abits), "last": 1})


def result_layout(s: Schedule) -> data.StructLayout:
    cfg = s.cfg
    return data.StructLayout({
        "label": range(cfg.classes), "exit_layer": range(cfg.n_layers + 1), "row": _idx(s.tags),
        "scores": data.ArrayLayout(signed(cfg.score_bits), cfg.classes),
        "cycles": unsigned(32), "macs": unsigned(48)})


def probe_layout(s: Schedule) -> data.StructLayout:
    cfg = s.cfg
    return data.StructLayout({
        "layer": _idx(cfg.n_layers), "copy": _idx(max(cfg.rows, s.banks)),
        "tile": _idx(max(s.memory.tiles)), "data": unsigned(cfg.act_word_bits)})


def tag_layout(s: Schedule) -> data.StructLayout:
    """What travels with a streamed input from the issue stage to the drain."""
    return data.StructLayout({
        "grp": _idx(s.copy_groups), "src": 1, "tile": _idx(s.max_tiles), "layer": _idx(s.cfg.n_layers),
        "head": 1, "shared": 1})


def issue_layout(s: Schedule) -> data.StructLayout:
    """The controller's command to the issue stage for one cycle. Zero skipping adds
    ``zero`` (an empty entry: no weight read, operand 0) and ``fresh`` (the first entry
    of its activation word: read the word)."""
    fields = {"valid": 1, "first": 1, "last": 1, "lab": 1, "lab_last": 1,
              "k": range(s.max_stream + 1), "tag": tag_layout(s)}
    if s.cfg.zero_skip:
        fields.update({"zero": 1, "fresh": 1})
    return data.StructLayout(fields)


def row_layout(s: Schedule) -> data.StructLayout:
    """One drained row after drain stage A, the input of the post-processing."""
    cfg = s.cfg
    return data.StructLayout({
        "valid": 1, "live": 1, "cp": s.copy_index,
        "tile": _idx(s.max_tiles), "layer": _idx(cfg.n_layers), "head": 1,
        "bias": unsigned(cfg.bias_word_bits), "m": unsigned(cfg.rsqrt_mant_bits),
        "s": unsigned(cfg.rsqrt_shift_bits),
        "acc": data.ArrayLayout(signed(cfg.drain_bits), cfg.cols)})


def engine_signature(s: Schedule) -> wiring.Signature:
    from amaranth.lib import stream
    mm = s.memory
    members = {
        "pixels": In(stream.Signature(pixel_layout(s))),
        "result": Out(stream.Signature(result_layout(s))),
        "wmem": Out(MemRead(mm.waddr_bits, mm.weight_word_bits)),
        "bmem": Out(MemRead(mm.baddr_bits, mm.bias_word_bits)),
        "regs": In(RegPort(s.regs.addr_bits, s.regs.data_bits)),
        "probe": Out(Monitor(probe_layout(s))),
        "busy": Out(1),
    }
    if any(s.ports):
        # the external-layer port (physical layers): words to P, P's answer back
        from .port import port_in_layout, port_out_layout
        members["port_out"] = Out(stream.Signature(port_out_layout(s)))
        members["port_in"] = In(stream.Signature(port_in_layout(s)))
    return wiring.Signature(members)


def pass_field(sched: Schedule, field, shape, layer, head):
    """A field of the current pass of the schedule, muxed by ``layer`` (and ``head`` in OP):
    how the RTL reads per-pass constants (tile counts, bases, streamed inputs ...).
    ``field``: a ``PassPlan`` attribute name, or a function of the pass."""
    from amaranth.hdl import Array, Const, Mux
    value = field if callable(field) else (lambda p: getattr(p, field))
    lt = Array(Const(int(value(p)), shape) for p in sched.layer_passes)[layer]
    if not sched.head_passes:
        return lt
    ht = Array(Const(int(value(p)), shape) for p in sched.head_passes)[layer]
    return Mux(head, ht, lt)


def drained_rows(sched: Schedule, m, shared, grp, nrows):
    """Rows drained per tile of the current pass (the schedule's ``PassPlan.drained``):
    MP the copy group's rows (all label copies of the batch in the shared layer 1), OP the
    batch."""
    from amaranth.hdl import Array, Const, Mux, Signal
    cfg = sched.cfg
    n = Signal(range(max(cfg.rows, sched.banks) + 1))
    if cfg.mode == "mp":
        rows_g = Array(Const(v, range(cfg.rows + 1)) for v in sched.group_rows)[grp]
        all_copies = sched.layer_passes[0].groups[0] if sched.share else cfg.rows
        m.d.comb += n.eq(Mux(shared, all_copies, rows_g))
    else:
        m.d.comb += n.eq(nrows)
    return n


def const_mul(x, k: int):
    """``x * k`` for a constant ``k >= 0`` as shifted adds and subtracts of ``x`` (its
    canonical signed digits: ``255 = 256 - 1`` is one subtract). Synthesis maps a ``*``
    by a constant to a multiplier block, whose delay was an ECP5 critical path; a few
    adders are shorter and free the block."""
    from amaranth.hdl import Const
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"const_mul: k={k!r} must be an integer >= 0")
    terms, i = [], 0
    while k:
        if k & 1:
            d = 2 - (k & 3)                      # +1, or -1 when the next bit is set too
            terms.append((d, i))
            k -= d
        k >>= 1
        i += 1
    if not terms:
        return Const(0)
    expr = None
    for d, i in terms:
        t = x << i
        expr = (t if d > 0 else -t) if expr is None else (expr + t if d > 0 else expr - t)
    return expr


def lut_mul(a, b):
    """``a * b`` of two unsigned values as a balanced tree of shifted partial products (one
    per bit of ``b``), which synthesis builds in LUTs and carry chains: for small products
    (the 8-bit goodness squares) where a multiplier block's routing delay to and from the
    fabric was the ECP5 critical path."""
    from amaranth.hdl import Mux
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]
