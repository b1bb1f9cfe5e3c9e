# amaranth: UnusedElaboratable=no
"""Signatures and payload layouts of ffaccel/hw/interfaces.py: width checks with clear
errors, equality by parameters, member directions as documented, layout widths taken
from the config / schedule, and ``pass_field`` (per-pass constants muxed by layer/head)."""

import pytest
from amaranth.hdl import Elaboratable, Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Flow, In, Out
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig
from ffaccel.fixedpoint import clog2
from ffaccel.hw.interfaces import (MemRead, Monitor, RegPort, engine_signature, issue_layout, pass_field,
                                   pixel_layout, probe_layout, result_layout, row_layout, tag_layout)
from ffaccel.schedule import schedule

CONFIGS = {
    "default": AccelConfig(),
    "mp_small": AccelConfig(inputs=9, classes=5, layers=(4, 3), rows=2, cols=3, abits=2, wbits=3, afrac=0),
    "op": AccelConfig(inputs=7, classes=3, layers=(5, 4), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                      mode="op", lfrac=2),
    "one_layer": AccelConfig(inputs=3, classes=2, layers=(1,), rows=1, cols=1, abits=1, afrac=0),
}


def shape(s):
    return Shape.cast(s)


def members(sig):
    return {name: (m.flow, m.shape if m.is_port else m.signature) for name, m in sig.members.items()}


# ------------------------------------------------------------------------ MemRead / RegPort
BAD = [0, -1, -8, True, False, 1.0, 2.5, "8", None]


@pytest.mark.parametrize("bad", BAD)
def test_memread_refuses_bad_widths(bad):
    with pytest.raises(TypeError, match=r"MemRead: addr_bits=.* must be an integer >= 1"):
        MemRead(bad, 8)
    with pytest.raises(TypeError, match=r"MemRead: data_bits=.* must be an integer >= 1"):
        MemRead(4, bad)


@pytest.mark.parametrize("bad", BAD + [1])
def test_regport_refuses_bad_widths(bad):
    if bad != 1:
        with pytest.raises(TypeError, match=r"RegPort: addr_bits=.* must be an integer >= 1"):
            RegPort(bad, 8)
    # the data lane is signed: at least 2 bits
    with pytest.raises(TypeError, match=r"RegPort: data_bits=.* must be an integer >= 2"):
        RegPort(4, bad)


def test_smallest_widths_are_accepted():
    assert MemRead(1, 1).addr_bits == 1 and MemRead(1, 1).data_bits == 1
    assert RegPort(1, 2).addr_bits == 1 and RegPort(1, 2).data_bits == 2


def test_equality_by_parameters():
    assert MemRead(4, 8) == MemRead(4, 8)
    assert MemRead(4, 8) != MemRead(4, 9)
    assert MemRead(4, 8) != MemRead(5, 8)
    assert RegPort(3, 7) == RegPort(3, 7)
    assert RegPort(3, 7) != RegPort(3, 8)
    assert RegPort(3, 7) != RegPort(2, 7)
    # same parameters, different kinds of port
    assert MemRead(4, 8) != RegPort(4, 8)
    assert RegPort(4, 8) != MemRead(4, 8)
    lay = data.StructLayout({"a": 3})
    assert Monitor(lay) == Monitor(data.StructLayout({"a": 3}))
    assert Monitor(lay) != Monitor(data.StructLayout({"a": 4}))
    assert repr(MemRead(4, 8)) == "MemRead(4, 8)" and repr(RegPort(3, 7)) == "RegPort(3, 7)"


@pytest.mark.parametrize("a,d", [(1, 1), (4, 8), (20, 128)])
def test_memread_members_from_the_readers_side(a, d):
    # en and addr leave the reader, data comes back
    assert members(MemRead(a, d)) == {"en": (Flow.Out, 1), "addr": (Flow.Out, unsigned(a)),
                                      "data": (Flow.In, unsigned(d))}
    flipped = MemRead(a, d).flip()
    assert {n: m.flow for n, m in flipped.members.items()} == {"en": Flow.In, "addr": Flow.In, "data": Flow.Out}


@pytest.mark.parametrize("a,d", [(1, 2), (3, 7), (4, 30)])
def test_regport_members_from_the_writers_side(a, d):
    assert members(RegPort(a, d)) == {"we": (Flow.Out, 1), "addr": (Flow.Out, unsigned(a)),
                                      "data": (Flow.Out, signed(d))}


def test_monitor_has_no_ready():
    lay = data.StructLayout({"a": 3, "b": signed(4)})
    assert members(Monitor(lay)) == {"valid": (Flow.Out, 1), "payload": (Flow.Out, lay)}


def test_ports_connect():
    """A reader's MemRead connects to a memory's flipped one; an instance has the widths."""
    class Reader(wiring.Component):
        port: wiring.Out(MemRead(5, 12))

    class Mem(wiring.Component):
        port: wiring.In(MemRead(5, 12))

    m = Module()
    r, mem = Reader(), Mem()
    wiring.connect(m, r.port, mem.port)
    assert len(r.port.addr) == 5 and len(r.port.data) == 12 and len(r.port.en) == 1
    w = RegPort(3, 9).create()
    assert w.data.shape() == signed(9) and w.addr.shape() == unsigned(3)


# ------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layout_widths_come_from_the_config(name):
    cfg = CONFIGS[name]
    s = schedule(cfg)
    idx = lambda n: shape(range(max(n, 2)))     # noqa: E731  an index over n items

    px = pixel_layout(s)
    assert shape(px["data"].shape) == unsigned(cfg.abits) and shape(px["last"].shape) == unsigned(1)

    res = result_layout(s)
    sc = res["scores"].shape
    assert isinstance(sc, data.ArrayLayout)
    assert sc.length == cfg.classes and shape(sc.elem_shape) == signed(cfg.score_bits)
    assert shape(res["label"].shape) == shape(range(cfg.classes))
    assert shape(res["exit_layer"].shape) == shape(range(cfg.n_layers + 1))
    assert shape(res["row"].shape) == idx(cfg.rows)
    assert shape(res["cycles"].shape) == unsigned(32) and shape(res["macs"].shape) == unsigned(48)

    pr = probe_layout(s)
    assert shape(pr["data"].shape) == unsigned(cfg.cols * cfg.abits)
    assert shape(pr["layer"].shape) == idx(cfg.n_layers)
    assert shape(pr["copy"].shape) == idx(max(cfg.rows, cfg.classes))
    assert shape(pr["tile"].shape) == idx(max(-(-n // cfg.cols) for n in cfg.layers))

    max_tiles = max([-(-n // cfg.cols) for n in cfg.layers]
                    + ([-(-cfg.classes // cfg.cols)] if cfg.mode == "op" else []))
    groups = -(-cfg.classes // cfg.rows) if cfg.mode == "mp" else 1
    tag = tag_layout(s)
    assert shape(tag["grp"].shape) == idx(groups)
    assert shape(tag["tile"].shape) == idx(max_tiles)
    assert shape(tag["layer"].shape) == idx(cfg.n_layers)
    for f in ("src", "head", "shared"):
        assert shape(tag[f].shape) == unsigned(1)

    iss = issue_layout(s)
    assert shape(iss["k"].shape) == shape(range(max((cfg.inputs,) + cfg.layers) + 1))
    assert iss["tag"].shape == tag
    for f in ("valid", "first", "last", "lab", "lab_last"):
        assert shape(iss[f].shape) == unsigned(1)

    row = row_layout(s)
    acc = row["acc"].shape
    assert acc.length == cfg.cols and shape(acc.elem_shape) == signed(cfg.accbits + 1)
    # OP: head biases below HEAD_BIAS_LOGITS logits at lfrac share the lane
    lane_bits = cfg.abits + 2 if cfg.mode == "mp" else max(cfg.abits + 2, ((8 << cfg.lfrac) - 1).bit_length() + 1)
    assert shape(row["bias"].shape) == unsigned(cfg.cols * lane_bits)
    assert shape(row["m"].shape) == unsigned(cfg.rsqrt_mant_bits)
    assert shape(row["s"].shape) == unsigned(cfg.rsqrt_shift_bits)
    banks = cfg.classes if cfg.mode == "mp" else cfg.rows
    assert shape(row["cp"].shape) == shape(range(max(banks, cfg.rows) + cfg.rows))
    assert shape(row["tile"].shape) == idx(max_tiles) and shape(row["layer"].shape) == idx(cfg.n_layers)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engine_signature(name):
    cfg = CONFIGS[name]
    s = schedule(cfg)
    mm = s.memory
    got = dict(engine_signature(s).members.items())
    want = {
        "pixels": In(stream.Signature(pixel_layout(s))),
        "result": Out(stream.Signature(result_layout(s))),
        "wmem": Out(MemRead(max(1, clog2(mm.weight_words)), cfg.cols * cfg.wbits)),
        "bmem": Out(MemRead(max(1, clog2(mm.bias_words)), mm.bias_word_bits)),
        "regs": In(RegPort(s.regs.addr_bits, s.regs.data_bits)),
        "probe": Out(Monitor(probe_layout(s))),
        "busy": Out(1),
    }
    assert got == want
    # every register's full range fits the signed register data lane
    lane = s.regs.data_bits
    for r in s.regs.registers:
        hi = (1 << (r.bits - 1)) - 1 if r.signed else (1 << r.bits) - 1
        lo = -(1 << (r.bits - 1)) if r.signed else 0
        assert -(1 << (lane - 1)) <= lo and hi <= (1 << (lane - 1)) - 1, r
        assert r.addr < (1 << s.regs.addr_bits)


def test_indices_hold_their_largest_value():
    """Index fields must hold every value they carry (one-of cases: 1 layer, 1 row, 1 tile)."""
    for cfg in CONFIGS.values():
        s = schedule(cfg)
        tag = tag_layout(s)
        iss = issue_layout(s)
        for lay, f, top in ((tag, "layer", cfg.n_layers - 1), (tag, "tile", s.max_tiles - 1),
                            (tag, "grp", s.copy_groups - 1), (iss, "k", s.max_stream),
                            (result_layout(s), "exit_layer", cfg.n_layers),
                            (result_layout(s), "label", cfg.classes - 1)):
            sh = shape(lay[f].shape)
            assert not sh.signed and top < (1 << sh.width), (cfg.summary(), f)


# ------------------------------------------------------------------------ pass_field
class _PassFields(Elaboratable):
    def __init__(self, sched, fields):
        self.sched, self.fields = sched, fields
        self.layer = Signal(range(max(sched.cfg.n_layers, 2)))
        self.head = Signal()
        self.out = {f: Signal(range(1 << 16), name=f) for f in fields}

    def elaborate(self, platform):
        m = Module()
        for f, sig in self.out.items():
            m.d.comb += sig.eq(pass_field(self.sched, f, unsigned(16), self.layer, self.head))
        return m


@pytest.mark.parametrize("name", ["mp_small", "op", "one_layer"])
def test_pass_field_reads_the_current_pass(name):
    s = schedule(CONFIGS[name])
    fields = ("wbase", "bbase", "tiles", "k", "k_first", "n_in", "src", "shared", "label_words")
    dut = _PassFields(s, fields)
    got = {}

    async def bench(ctx):
        for layer in range(s.cfg.n_layers):
            for head in (0, 1):
                ctx.set(dut.layer, layer)
                ctx.set(dut.head, head)
                got[(layer, head)] = {f: ctx.get(dut.out[f]) for f in fields}

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (layer, head), vals in got.items():
        # MP has no heads: the head bit is ignored
        p = s.head_passes[layer] if head and s.head_passes else s.layer_passes[layer]
        assert vals == {f: int(getattr(p, f)) for f in fields}, (layer, head)
