# amaranth: UnusedElaboratable=no
"""Issue stage (Amaranth simulator), driven with the command stream the controller sends
for each pass of the schedule (copy groups, tiles, label words, tile periods), with the
weight memory and the activation banks emulated in Python (synchronous read, data held
while the enable is low). Checked against a plain-Python statement of the stage:

- cycle t: weight word ``wbase + tile*n_in + k`` of the pass is read; the bank word
  ``k // cols`` is read only when ``k % cols == 0`` or on ``first``, only in the source
  set and only from the banks the pass needs;
- cycle t+1: ``p1`` is the command (and the read data is registered); cycle t+3 (through
  the operand registers at the array edge): ``w[c]`` is lane c of the weight word; ``x[r]``
  is row r's operand (MP
  layer 1: ``label_value`` where k is the row's copy among the first ``classes`` inputs,
  else 0, the image pixel beyond; OP layer 1: ``neutral_value`` for ``k < classes``;
  otherwise the activation k of the row's copy / sample); gated rows see 0;
- ``macs`` adds enabled rows x cols per streamed input and clears on ``clear``;
- MP label sharing: ``wlab[j]`` holds the tile's label weights ``W[t*cols + c, j]``.
"""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.issue import Issue
from ffaccel.schedule import schedule

CONFIGS = {
    # MP without sharing, 5 copies on 2 rows: three copy groups (2, 2, 1)
    "mp_groups": AccelConfig(inputs=8, classes=5, layers=(7, 4), rows=2, cols=3, abits=3, wbits=4,
                             afrac=1, label_share=False),
    # 3 copies on 2 rows: row 1 holds a copy in the first group only (gated in the second)
    "mp_groups_short": AccelConfig(inputs=8, classes=3, layers=(5, 4), rows=2, cols=3, abits=3, wbits=4,
                                   afrac=1, label_share=False),
    # MP sharing with copy groups; the shared stream starts at k=5 (not a word boundary)
    "mp_share_groups": AccelConfig(inputs=9, classes=5, layers=(4, 3), rows=2, cols=3, abits=2, wbits=3,
                                   afrac=0),
    # MP sharing, one copy group
    "mp_share": AccelConfig(inputs=7, classes=3, layers=(5, 3), rows=3, cols=2, abits=3, wbits=4, afrac=1),
    # MP batches: three samples' images on three rows (shared), or two samples' copies in
    # groups that straddle the samples (no sharing)
    "mp_batch_share": AccelConfig(inputs=7, classes=2, layers=(5, 3), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                                  batch=3),
    "mp_batch_groups": AccelConfig(inputs=8, classes=3, layers=(4, 5), rows=2, cols=3, abits=3, wbits=3, afrac=1,
                                   batch=2, label_share=False),
    # OP: layers and heads
    "op": AccelConfig(inputs=7, classes=3, layers=(5, 4), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                      mode="op", lfrac=2),
}


def commands(sched, nrows, pad):
    """The controller's command stream over every pass: (cmd dict or None, pass, grp).
    ``pad(n)`` gives extra idle cycles after a tile (on top of the tile period)."""
    cfg = sched.cfg
    out = []
    passes = list(sched.layer_passes)
    if cfg.mode == "op":
        passes = [p for pair in zip(sched.layer_passes, sched.head_passes) for p in pair]
    for p in passes:
        groups = range(1) if (p.shared or cfg.mode == "op") else range(sched.copy_groups)
        for grp in groups:
            drained = p.groups[grp] if p.groups is not None else nrows
            for t in range(p.tiles):
                tag = {"grp": grp, "src": p.src, "tile": t, "layer": p.layer,
                       "head": int(p.kind == "head"), "shared": int(p.shared)}
                cyc = []
                for i in range(p.k):
                    cyc.append({"valid": 1, "first": int(i == 0), "last": int(i == p.k - 1), "lab": 0,
                                "lab_last": 0, "k": p.k_first + i, "tag": tag})
                for j in range(p.label_words):
                    cyc.append({"valid": 0, "first": 0, "last": 0, "lab": 1,
                                "lab_last": int(j == p.label_words - 1), "k": j, "tag": tag})
                idle = p.period(drained) - len(cyc) + pad()
                cyc += [None] * idle
                out += [(c, p, grp) for c in cyc]
    return out


IDLE = {"valid": 0, "first": 0, "last": 0, "lab": 0, "lab_last": 0, "k": 0,
        "tag": {"grp": 0, "src": 0, "tile": 0, "layer": 0, "head": 0, "shared": 0}}


def lanes(word, bits, n, signed=False):
    out = []
    for i in range(n):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def pack(vals, bits):
    return sum((v & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(vals))


def expected_operand(sched, mem, cmd, grp, r, nrows, exited):
    """(enabled, operand) of array row r for a streamed input ``cmd``."""
    cfg = sched.cfg
    R, C, NC = cfg.rows, cfg.cols, cfg.classes
    k, tag = cmd["k"], cmd["tag"]
    first_layer = tag["layer"] == 0 and not tag["head"]
    if cfg.mode == "op":
        en = r < nrows and not exited >> r & 1
        if first_layer and k < NC:
            x = cfg.neutral_value
        else:
            x = mem[tag["src"]][r][k // C][k % C]
        return en, x
    # MP: copy b * classes + c is sample b's copy of label c; sample b's image in bank b
    live = lambda b: b < nrows and not exited >> b & 1          # noqa: E731
    if tag["shared"]:                               # sample r's image through row r
        en = r < sched.batch_size and live(r)
        return en, (mem[0][r][k // C][k % C] if r < sched.batch_size else 0)
    copy = grp * R + r
    smp = copy // NC
    en = copy < sched.banks and live(smp)
    if first_layer:
        if k < NC:
            x = cfg.label_value if k == copy % NC else 0
        else:
            x = mem[0][smp][k // C][k % C]           # the sample's image: bank smp of set 0
    else:
        x = mem[tag["src"]][copy][k // C][k % C] if copy < sched.banks else None
    return en, x


def needed_banks(sched, cmd, nrows, exited):
    cfg = sched.cfg
    tag = cmd["tag"]
    if cfg.mode == "op":
        return {b for b in range(sched.banks) if b < nrows and not exited >> b & 1}
    live = lambda b: b < nrows and not exited >> b & 1          # noqa: E731
    if tag["layer"] == 0:                           # the images of the samples in flight
        if tag["shared"]:
            return {b for b in range(sched.batch_size) if live(b)}
        return {b for b in sched.group_samples(tag["grp"]) if live(b)}
    return {b for b in range(sched.banks) if b // cfg.rows == tag["grp"] and live(b // cfg.classes)}


def simulate(sched, seed, nrows=None, exited=0, pad_max=2, clear_at=None):
    """Run every pass once; return (list of failures, final macs, macs model)."""
    cfg = sched.cfg
    R, C, NB = cfg.rows, cfg.cols, sched.banks
    rng = random.Random(seed)
    if nrows is None:
        nrows = sched.batch_size
    mem = [[[[rng.randrange(cfg.amax + 1) for _ in range(C)] for _ in range(sched.bank_depth)]
            for _ in range(NB)] for _ in range(2)]
    wmem = [[rng.randrange(cfg.wmin, cfg.wmax + 1) for _ in range(C)]
            for _ in range(sched.memory.weight_words)]
    stream = commands(sched, nrows, lambda: rng.randrange(pad_max + 1))
    dut = Issue(sched)
    bad = []
    state = {"macs": 0, "macs_per_pass": []}

    def fail(*what):
        if len(bad) < 20:
            bad.append(what)

    async def bench(ctx):
        ctx.set(dut.nrows, nrows)
        ctx.set(dut.exited, exited)
        # START: clear the counter (the register starts at 0 anyway)
        ctx.set(dut.clear, 1)
        ctx.set(dut.cmd, IDLE)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        held = {(s, b): 0 for s in range(2) for b in range(NB)}
        wheld = 0
        prev = prev2 = prev3 = None  # (cmd, pass, grp) of the previous cycle, and the two before
        last_pass2 = None
        macs = 0
        wlab_due = []               # (cycle, tile expectation)
        for cyc, (cmd, p, grp) in enumerate(stream + [(None, None, 0)] * 4):
            clear = clear_at is not None and cyc == clear_at
            ctx.set(dut.clear, int(clear))
            ctx.set(dut.cmd, cmd or IDLE)
            for (s, b), v in held.items():
                ctx.set(dut.rdata[s][b], pack(v, cfg.abits) if v else 0)
            ctx.set(dut.wmem.data, wheld)
            # ---- cycle t: the reads of cmd
            en, addr = ctx.get(dut.wmem.en), ctx.get(dut.wmem.addr)
            raddr = ctx.get(dut.raddr)
            ren = {(s, b) for s in range(2) for b in range(NB) if ctx.get(dut.ren[s][b])}
            if cmd is not None and (cmd["valid"] or cmd["lab"]):
                want = p.wbase + cmd["tag"]["tile"] * p.n_in + cmd["k"]
                if not en or addr != want:
                    fail("wmem", cyc, cmd, en, addr, want)
            elif en:
                fail("wmem.en on idle", cyc)
            if cmd is not None and cmd["valid"] and (cmd["k"] % C == 0 or cmd["first"]):
                want = {(p.src, b) for b in needed_banks(sched, cmd, nrows, exited)}
                if ren != want or raddr != cmd["k"] // C:
                    fail("bank read", cyc, cmd, sorted(ren), sorted(want), raddr)
            elif ren:
                fail("bank read without a new word", cyc, cmd, sorted(ren))
            # ---- cycle t+3: the array side of the command three cycles ago
            pc = prev3[0] if prev3 else None
            if pc is not None and pc["valid"]:
                pp, pgrp = prev3[1], prev3[2]
                got_w = [ctx.get(dut.w[c]) for c in range(C)]
                want_w = wmem[pp.wbase + pc["tag"]["tile"] * pp.n_in + pc["k"]]
                if got_w != want_w:
                    fail("w", cyc, pc, got_w, want_w)
                n_en = 0
                for r in range(R):
                    e, x = expected_operand(sched, mem, pc, pgrp, r, nrows, exited)
                    gx, ge = ctx.get(dut.x[r]), ctx.get(dut.row_en) >> r & 1
                    n_en += e
                    if ge != e or gx != (x if e else 0):
                        fail("row", cyc, pc, r, (ge, gx), (e, x if e else 0))
                got = (ctx.get(dut.valid), ctx.get(dut.first), ctx.get(dut.last))
                if got != (1, pc["first"], pc["last"]):
                    fail("valid/first/last", cyc, got)
            elif ctx.get(dut.valid):
                fail("valid without a streamed input", cyc)
            # ---- cycle t+1: p1 of the previous command
            pc = prev[0] if prev else None
            if pc is not None:
                got = {f: ctx.get(getattr(dut.p1, f)) for f in ("valid", "first", "last", "lab", "lab_last", "k")}
                got["lane"] = ctx.get(dut.p1.lane)
                got_tag = {f: ctx.get(getattr(dut.p1.tag, f)) for f in pc["tag"]}
                want = {f: pc[f] for f in ("valid", "first", "last", "lab", "lab_last", "k")}
                want["lane"] = pc["k"] % C
                if got != want or got_tag != pc["tag"]:
                    fail("p1", cyc, got, want, got_tag)
                if pc["lab_last"]:
                    t = pc["tag"]["tile"]
                    wl = [wmem[prev[1].wbase + t * prev[1].n_in + j] for j in range(cfg.classes)]
                    wlab_due.append((cyc + 2, wl))
            if ctx.get(dut.macs) != macs:
                fail("macs", cyc, ctx.get(dut.macs), macs)
            for due, wl in list(wlab_due):
                if due == cyc:
                    got = [[ctx.get(dut.wlab[j][c]) for c in range(C)] for j in range(cfg.classes)]
                    if got != wl:
                        fail("wlab", cyc, got, wl)
                    wlab_due.remove((due, wl))
            # ---- the emulated memories answer next cycle
            for sb in ren:
                s, b = sb
                held[sb] = mem[s][b][raddr] if raddr < sched.bank_depth else None
            if en:
                wheld = pack(wmem[addr], cfg.wbits) if addr < len(wmem) else 0
            # the counter: enabled rows x cols per streamed input, counted the cycle its read
            # data is registered (the command two cycles ago), unless cleared
            pc2 = prev2[0] if prev2 else None
            if prev2 is not None and last_pass2 is not None and prev2[1] is not last_pass2:
                state["macs_per_pass"].append(macs)    # the previous pass is counted in full
            if prev2 is not None:
                last_pass2 = prev2[1]
            if clear:
                macs = 0
            elif pc2 is not None and pc2["valid"]:
                macs += C * sum(expected_operand(sched, mem, pc2, prev2[2], r, nrows, exited)[0]
                                for r in range(R))
            prev3, prev2, prev = prev2, prev, ((cmd, p, grp) if cmd is not None else None)
            await ctx.tick()
        state["macs_per_pass"].append(macs)
        state["macs"] = ctx.get(dut.macs)
        if wlab_due:
            fail("wlab never checked", wlab_due)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bad, state


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_passes_match_the_statement(name):
    sched = schedule(CONFIGS[name])
    bad, state = simulate(sched, seed=7, pad_max=0)
    assert not bad, bad
    # with every row live the counter equals the schedule's PE operations, pass by pass
    passes = list(sched.layer_passes)
    if sched.cfg.mode == "op":
        passes = [p for pair in zip(sched.layer_passes, sched.head_passes) for p in pair]
    want, total = [], 0
    for p in passes:
        total += p.pe_ops(sched.cfg.cols, sched.cfg.rows)
        want.append(total)
    assert state["macs_per_pass"] == want
    assert state["macs"] == total


def test_clear_zeroes_the_counter():
    sched = schedule(CONFIGS["mp_share"])
    bad, state = simulate(sched, seed=3, pad_max=0, clear_at=9)     # mid-stream, inputs counting
    assert not bad, bad
    total = sum(p.pe_ops(sched.cfg.cols) for p in sched.layer_passes)
    assert 0 < state["macs"] < total


def test_op_partial_batches_and_exited_rows():
    """OP: rows beyond the batch and rows whose sample exited are gated, read nothing and
    add no PE operations."""
    sched = schedule(CONFIGS["op"])
    R = sched.cfg.rows
    for nrows in range(1, R + 1):
        for exited in (0, 1, (1 << nrows) - 1, 1 << (nrows - 1)):
            exited &= (1 << nrows) - 1
            bad, state = simulate(sched, seed=nrows * 16 + exited, nrows=nrows, exited=exited)
            assert not bad, (nrows, exited, bad)
            live = sum(1 for r in range(nrows) if not exited >> r & 1)
            passes = [p for pair in zip(sched.layer_passes, sched.head_passes) for p in pair]
            assert state["macs"] == sum(p.tiles * p.k for p in passes) * sched.cfg.cols * live


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_memories_batches_and_padding(name):
    sched = schedule(CONFIGS[name])
    B = sched.batch_size

    # the drawn values are seeds and counts: shrinking a failure would only cost time
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(seed=st.integers(0, 1 << 30), nrows=st.integers(1, B), exited=st.integers(0, (1 << B) - 1),
           pad=st.integers(0, 3), clear=st.none() | st.integers(0, 60))
    def check(seed, nrows, exited, pad, clear):
        bad, _ = simulate(sched, seed, nrows=nrows, exited=exited & ((1 << nrows) - 1),
                          pad_max=pad, clear_at=clear)
        assert not bad, bad

    check()


def test_refuses_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        Issue(CONFIGS["op"])
