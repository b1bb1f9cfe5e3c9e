# amaranth: UnusedElaboratable=no
"""Drain (Amaranth simulator), fed the issue stage's ``p1`` stream of every pass of the
schedule, with the MAC array's shadow registers, the label-weight registers (MP
sharing), the bias memory and the accumulators' normalisation factors emulated in Python.
Checked against a plain-Python statement of the unit:

- a tile ends on its last streamed input (``p1.valid & p1.last``, not shared) or, with MP
  label sharing, on its last label word (``p1.lab_last``); then the bias word
  ``bbase + tile`` of the pass is read (``bmem``);
- the array's shadow registers are emulated with their shift (row r takes row r+1's, the
  bottom row holds) and the drain sees row 0 only: the registers move in the cycles
  ``go .. go + n - 2`` of a tile that is not the shared layer's, and nowhere else, and the
  PEs register the command, so ``shift`` must be high ``Latencies.shift`` cycles before;
- one cycle later (``go``) row 0 is drained, then one row per cycle; stage A registers
  each: row j of the tile is on ``row`` ``tile_go + select + j`` cycles after the tile's
  end, with ``valid``, ``cp`` (MP: ``grp*rows + j``; shared layer 1: ``j``; OP: ``j``),
  ``tile``, ``layer``, ``head``, the bias word, ``(m, s)`` of copy ``cp``, ``live`` (OP:
  the row's sample is loaded and has not exited; MP sample ``cp // classes``) and ``acc``
  (the array's sums of row j, or with sharing ``sums[b] + label_value * wlab[j % classes]``
  of sample ``b = j // classes``, whose row the shifts after each sample's last label copy
  bring to row 0);
- it drains exactly the copy group's rows (MP, ``schedule.group_rows``), ``batch x
  classes`` rows (MP sharing) or ``nrows`` (OP), and nothing else.
"""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.drain import Drain
from ffaccel.schedule import schedule

CONFIGS = {
    "mp_groups": AccelConfig(inputs=8, classes=5, layers=(7, 4), rows=2, cols=3, abits=3, wbits=4,
                             afrac=1, label_share=False),
    "mp_share_groups": AccelConfig(inputs=9, classes=5, layers=(4, 3), rows=2, cols=3, abits=2, wbits=3,
                                   afrac=0),
    "mp_share": AccelConfig(inputs=7, classes=3, layers=(5, 3), rows=3, cols=2, abits=3, wbits=4, afrac=1),
    "op": AccelConfig(inputs=7, classes=3, layers=(5, 4), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                      mode="op", lfrac=2),
    # MP batches: the shared layer drains 3 samples x 2 label copies from row 0, shifting
    # after each sample; without sharing, copy groups that hold two samples' copies
    "mp_batch_share": AccelConfig(inputs=7, classes=2, layers=(5, 3), rows=3, cols=2, abits=3, wbits=4,
                                  afrac=1, batch=3),
    "mp_batch_groups": AccelConfig(inputs=8, classes=3, layers=(4, 5), rows=2, cols=3, abits=3, wbits=3,
                                   afrac=1, batch=2, label_share=False),
    # OP heads over 2 inputs drain 3 rows: the tile period is set by the drain
    "op_short": AccelConfig(inputs=6, classes=2, layers=(2, 3), rows=3, cols=2, abits=3, wbits=3, afrac=1,
                            mode="op", lfrac=2),
}

IDLE = {"valid": 0, "first": 0, "last": 0, "lab": 0, "lab_last": 0, "lane": 0, "k": 0,
        "tag": {"grp": 0, "src": 0, "tile": 0, "layer": 0, "head": 0, "shared": 0}}


def passes_of(sched):
    if sched.cfg.mode == "op":
        return [p for pair in zip(sched.layer_passes, sched.head_passes) for p in pair]
    return list(sched.layer_passes)


def p1_stream(sched, nrows, pad):
    """The issue stage's p1 over every pass, as the controller paces it (tile periods,
    a flush between passes): a list of (p1 dict or None, tile info)."""
    cfg = sched.cfg
    out = []
    for p in passes_of(sched):
        groups = range(1) if (p.shared or cfg.mode == "op") else range(sched.copy_groups)
        for grp in groups:
            n = p.groups[grp] if p.groups is not None else nrows
            for t in range(p.tiles):
                tag = {"grp": grp, "src": p.src, "tile": t, "layer": p.layer,
                       "head": int(p.kind == "head"), "shared": int(p.shared)}
                info = {"pass": p, "grp": grp, "tile": t, "n": n, "tag": tag}
                cyc = []
                for i in range(p.k):
                    k = p.k_first + i
                    cyc.append({"valid": 1, "first": int(i == 0), "last": int(i == p.k - 1), "lab": 0,
                                "lab_last": 0, "lane": k % cfg.cols, "k": k, "tag": tag})
                for j in range(p.label_words):
                    cyc.append({"valid": 0, "first": 0, "last": 0, "lab": 1, "lab_last": int(j == p.label_words - 1),
                                "lane": j % cfg.cols, "k": j, "tag": tag})
                cyc += [None] * (p.period(n) - len(cyc) + pad())
                out += [(c, info) for c in cyc]
        # FLUSH (and NORM) between passes: the last tile's rows leave before the next pass
        out += [(None, None)] * (max(cfg.rows, sched.banks) + 4)
    return out


def lanes(word, bits, n):
    return [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(n)]


def simulate(sched, seed, nrows=None, exited=0, pad_max=0):
    cfg = sched.cfg
    R, C, NC = cfg.rows, cfg.cols, cfg.classes
    lat = sched.latency
    rng = random.Random(seed)
    nrows = sched.batch_size if nrows is None else nrows
    amax = (1 << (cfg.accbits - 1)) - 1
    ncp = max(sched.banks, R) + R
    M = [rng.randrange(1 << cfg.rsqrt_mant_bits) for _ in range(ncp)]
    S = [rng.randrange(1 << cfg.rsqrt_shift_bits) for _ in range(ncp)]
    bmem = [rng.randrange(1 << cfg.bias_word_bits) for _ in range(sched.memory.bias_words)]
    stream = p1_stream(sched, nrows, lambda: rng.randrange(pad_max + 1))
    dut = Drain(sched)
    bad = []
    stats = {"rows": 0, "tiles": 0}

    def fail(*what):
        if len(bad) < 20:
            bad.append(what)

    def rand_sums():
        return [[rng.randrange(-amax - 1, amax + 1) for _ in range(C)] for _ in range(R)]

    def rand_wlab():
        return [[rng.randrange(cfg.wmin, cfg.wmax + 1) for _ in range(C)] for _ in range(NC)]

    async def bench(ctx):
        ctx.set(dut.nrows, nrows)
        ctx.set(dut.exited, exited)
        sums = rand_sums()                 # the shadow registers (garbage before a tile)
        wlab = rand_wlab()
        bheld = 0
        due = {}                           # cycle -> expected row
        windows = []                       # (first, last) cycles the drain must be busy
        shifts_due = set()                 # cycles the shift command must be high in
        moves = set()                      # cycles the shadow registers move up a row in
        bias_due = {}                      # cycle -> bias word address
        tile_sums, tile_wlab = None, None
        pending_sums, pending_wlab = {}, {}
        end = len(stream) + 2 * max(R, sched.banks) + 6
        for cyc in range(end):
            p1, info = stream[cyc] if cyc < len(stream) else (None, None)
            # the array's shadow registers (loaded tile_go - 1 cycles after p1), issue's wlab
            # registers (two cycles after p1)
            if cyc in pending_sums:
                sums = pending_sums.pop(cyc)
            for j, vals in pending_wlab.pop(cyc, []):
                wlab[j] = vals
            ctx.set(dut.p1, p1 or IDLE)
            for c in range(C):
                ctx.set(dut.sums[c], sums[0][c])
            if sched.share:
                for j in range(NC):
                    for c in range(C):
                        ctx.set(dut.wlab[j][c], wlab[j][c])
            ctx.set(dut.bmem.data, bheld)
            sel = ctx.get(dut.norm_sel)
            ctx.set(dut.norm_m, M[sel] if sel < ncp else 0)
            ctx.set(dut.norm_s, S[sel] if sel < ncp else 0)
            # ---- the bias read, the cycle before the tile's first drained row
            ends = p1 is not None and ((p1["valid"] and p1["last"] and not p1["tag"]["shared"]) or p1["lab_last"])
            en, addr = ctx.get(dut.bmem.en), ctx.get(dut.bmem.addr)
            want = bias_due.pop(cyc, None)
            if want is not None:
                if not en or addr != want:
                    fail("bias read", cyc, en, addr, want)
            elif en:
                fail("bias read outside a tile end", cyc, p1)
            # ---- the row on the output
            want = due.pop(cyc, None)
            row = dut.row
            if want is None:
                if ctx.get(row.valid):
                    fail("unexpected row", cyc)
            else:
                got = {f: ctx.get(getattr(row, f)) for f in ("valid", "live", "cp", "tile", "layer", "head",
                                                              "bias", "m", "s")}
                got["acc"] = [ctx.get(row.acc[c]) for c in range(C)]
                if got != want:
                    fail("row", cyc, got, want)
                stats["rows"] += 1
            shift = ctx.get(dut.shift)
            if shift != (cyc in shifts_due):
                fail("shift", cyc, shift)
            shifts_due.discard(cyc)
            if shift:
                moves.add(cyc + lat.shift)
            if cyc in moves:               # the array's shadow registers move up a row
                moves.discard(cyc)
                sums = [list(sums[r + 1]) for r in range(R - 1)] + [list(sums[R - 1])]
            busy = ctx.get(dut.busy)
            if any(a <= cyc <= b for a, b in windows):
                if not busy:
                    fail("not busy while draining", cyc)
            elif busy and not any(a - 1 <= cyc <= b for a, b in windows):
                fail("busy when idle", cyc)
            # ---- the expectations this cycle creates
            if p1 is not None and p1["valid"] and p1["last"]:
                tile_sums = rand_sums()
                pending_sums[cyc + lat.tile_go] = tile_sums
            if p1 is not None and p1["lab"]:
                vals = [rng.randrange(cfg.wmin, cfg.wmax + 1) for _ in range(C)]
                # the issue stage registers the read data (p2), then captures the word:
                # the drain sees it two cycles after p1
                pending_wlab.setdefault(cyc + 2, []).append((p1["k"], vals))
                tile_wlab = (tile_wlab or {}) if p1["k"] else {}
                tile_wlab[p1["k"]] = vals
            if ends:
                p, n, tag = info["pass"], info["n"], info["tag"]
                stats["tiles"] += 1
                go = cyc + lat.tile_go
                bias_due[go - 1] = p.bbase + tag["tile"]
                first = go + lat.select
                windows.append((cyc + 1, first + n - 1))
                if not tag["shared"]:
                    shifts_due.update(range(go - lat.shift, go + n - 1 - lat.shift))
                else:                      # after each sample's last label copy but the last
                    shifts_due.update(go - lat.shift + j for j in range(n - 1) if j % NC == NC - 1)
                for j in range(n):
                    if cfg.mode == "mp":
                        cp = j if tag["shared"] else tag["grp"] * R + j
                        smp = cp // NC
                    else:
                        cp = smp = j
                    live = int(smp < nrows and not exited >> smp & 1)
                    if tag["shared"]:      # sample j // classes's row, label copy j % classes
                        acc = [tile_sums[j // NC][c] + cfg.label_value * tile_wlab[j % NC][c] for c in range(C)]
                    else:
                        acc = list(tile_sums[j])
                    assert first + j not in due, "the stimulus overlaps two drains"
                    due[first + j] = {"valid": 1, "live": live, "cp": cp, "tile": tag["tile"],
                                      "layer": tag["layer"], "head": tag["head"], "bias": bmem[p.bbase + tag["tile"]],
                                      "m": M[cp], "s": S[cp], "acc": acc}
            if en:
                bheld = bmem[addr] if addr < len(bmem) else 0
            await ctx.tick()
        if due or shifts_due or bias_due:
            fail("rows never drained", sorted(due), sorted(shifts_due), sorted(bias_due))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bad, stats


def expected_rows(sched, nrows):
    """Rows drained over every pass, from the schedule alone."""
    total = 0
    for p in passes_of(sched):
        total += p.tiles * sum(p.drained(nrows))
    return total


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_drains_every_tile(name):
    sched = schedule(CONFIGS[name])
    bad, stats = simulate(sched, seed=11)
    assert not bad, bad
    assert stats["rows"] == expected_rows(sched, sched.cfg.rows)
    assert stats["tiles"] == sum(p.tiles * len(p.drained(sched.cfg.rows)) for p in passes_of(sched))


def test_shared_layer_drains_classes_rows_per_tile():
    sched = schedule(CONFIGS["mp_share_groups"])
    p = sched.layer_passes[0]
    assert p.shared and p.drained(None) == (sched.cfg.classes,)
    bad, stats = simulate(sched, seed=12)
    assert not bad, bad


@pytest.mark.parametrize("name", ["mp_batch_share", "mp_batch_groups"])
def test_mp_batch_partial_and_exited_samples(name):
    """A batch's rows are live while their sample is loaded and has not exited."""
    sched = schedule(CONFIGS[name])
    B = sched.batch_size
    for nrows in range(1, B + 1):
        for exited in (0, 1, 1 << (nrows - 1)):
            bad, _ = simulate(sched, seed=nrows * 8 + exited, nrows=nrows, exited=exited, pad_max=1)
            assert not bad, (nrows, exited, bad)


@pytest.mark.parametrize("name", ["op", "op_short"])
def test_op_partial_batches_and_exited_rows(name):
    sched = schedule(CONFIGS[name])
    R = sched.cfg.rows
    for nrows in range(1, R + 1):
        for exited in (0, (1 << nrows) - 1, 1 << (nrows - 1)):
            bad, stats = simulate(sched, seed=nrows * 8 + exited, nrows=nrows, exited=exited, pad_max=1)
            assert not bad, (nrows, exited, bad)
            assert stats["rows"] == expected_rows(sched, nrows)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_contents_and_padding(name):
    sched = schedule(CONFIGS[name])
    B = sched.batch_size

    # the drawn values are seeds and counts: shrinking a failure would only cost time
    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(seed=st.integers(0, 1 << 30), nrows=st.integers(1, B), exited=st.integers(0, (1 << B) - 1),
           pad=st.integers(0, 3))
    def check(seed, nrows, exited, pad):
        bad, _ = simulate(sched, seed, nrows=nrows, exited=exited, pad_max=pad)
        assert not bad, bad

    check()


def test_refuses_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        Drain(CONFIGS["op"])


@pytest.mark.parametrize("k", [0, 1, 2, 3, 7, 127, 128, 200, 255, 256, 1000])
def test_const_mul_is_a_product_for_every_sign(k):
    from amaranth.hdl import Signal, signed
    from amaranth.sim import Simulator as Sim
    from amaranth.hdl import Module
    from ffaccel.hw.interfaces import const_mul
    x = Signal(signed(6))
    y = Signal(signed(20))
    m = Module()
    m.d.comb += y.eq(const_mul(x, k))
    got = {}

    async def bench(ctx):
        for v in range(-32, 32):
            ctx.set(x, v)
            got[v] = ctx.get(y)

    sim = Sim(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == {v: v * k for v in range(-32, 32)}


def test_lut_mul_is_a_product():
    from amaranth.hdl import Module, Signal, unsigned
    from amaranth.sim import Simulator as Sim
    from ffaccel.hw.interfaces import lut_mul
    a, b, y = Signal(unsigned(5)), Signal(unsigned(3)), Signal(unsigned(8))
    m = Module()
    m.d.comb += y.eq(lut_mul(a, b))
    got = {}

    async def bench(ctx):
        for va in range(32):
            for vb in range(8):
                ctx.set(a, va)
                ctx.set(b, vb)
                got[va, vb] = ctx.get(y)

    sim = Sim(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == {(va, vb): va * vb for va in range(32) for vb in range(8)}
