# amaranth: UnusedElaboratable=no
"""ActBanks (Amaranth simulator) against a plain-Python model of ``2 x banks`` memories of
``bank_depth`` words of ``cols`` lanes: lane-masked load writes, all-lane drain writes,
reads one cycle after ``raddr``/``ren``, read data held while ``ren`` is low, every
(set, bank) independent, ``lanes == 0`` writes nothing, ``load`` wins a collision."""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.actbanks import ActBanks
from ffaccel.schedule import schedule

CONFIGS = {
    # MP: one bank per class (3), depth ceil(8/3) = 3
    "mp": AccelConfig(inputs=8, classes=3, layers=(7, 4), rows=2, cols=3, abits=3, wbits=4, afrac=1),
    # OP: one bank per row (2), depth ceil(9/2) = 5
    "op": AccelConfig(inputs=7, classes=3, layers=(9, 4), rows=2, cols=2, abits=4, wbits=4, afrac=1,
                      mode="op"),
    # one lane per word
    "c1": AccelConfig(inputs=5, classes=2, layers=(3,), rows=2, cols=1, abits=2, wbits=3, afrac=0),
}


def pack(lanes, abits):
    return sum(v << (i * abits) for i, v in enumerate(lanes))


def unpack(word, abits, cols):
    return [(word >> (i * abits)) & ((1 << abits) - 1) for i in range(cols)]


class Model:
    """The banks as Python lists; ``rdata`` as the read ports must show it."""

    def __init__(self, sched):
        cfg = sched.cfg
        self.cfg, self.banks, self.depth = cfg, sched.banks, sched.bank_depth
        self.mem = {(s, b): [None] * self.depth for s in range(2) for b in range(self.banks)}
        self.rdata = {(s, b): None for s in range(2) for b in range(self.banks)}   # None: unknown

    def cycle(self, raddr, ren, load, drain):
        """One clock edge. ``ren``: set of (s, b); ``load``/``drain``: None or
        (lanes, set, bank, addr, lane values)."""
        writes = []
        if load is not None and load[0]:
            writes.append(load)
        elif drain is not None and drain[0]:       # load wins; the contract keeps them apart
            writes.append(drain)
        written = {(w[1], w[2], w[3]) for w in writes}
        for sb in ren:
            old = self.mem[sb][raddr]
            # reading the word being written in the same cycle: not specified, not checked
            self.rdata[sb] = None if (sb + (raddr,)) in written or old is None else list(old)
        for lanes, s, b, addr, vals in writes:
            word = self.mem[(s, b)][addr] or [None] * self.cfg.cols
            self.mem[(s, b)][addr] = [vals[c] if lanes >> c & 1 else word[c] for c in range(self.cfg.cols)]


def drive(ctx, dut, sched, raddr=0, ren=(), load=None, drain=None):
    cfg = sched.cfg
    ctx.set(dut.raddr, raddr)
    for s in range(2):
        for b in range(sched.banks):
            ctx.set(dut.ren[s][b], int((s, b) in ren))
    for port, w in ((dut.load, load), (dut.drain, drain)):
        if w is None:
            ctx.set(port, {"lanes": 0, "set": 0, "bank": 0, "addr": 0, "data": 0})
        else:
            lanes, s, b, addr, vals = w
            ctx.set(port, {"lanes": lanes, "set": s, "bank": b, "addr": addr, "data": pack(vals, cfg.abits)})


def observe(ctx, dut, sched):
    cfg = sched.cfg
    return {(s, b): unpack(ctx.get(dut.rdata[s][b]), cfg.abits, cfg.cols)
            for s in range(2) for b in range(sched.banks)}


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def all_lanes(cfg):
    return (1 << cfg.cols) - 1


async def fill(ctx, dut, sched, model, rng):
    """Write every word of every bank through ``drain`` (all lanes)."""
    cfg = sched.cfg
    for s in range(2):
        for b in range(sched.banks):
            for a in range(sched.bank_depth):
                vals = [rng.randrange(1 << cfg.abits) for _ in range(cfg.cols)]
                w = (all_lanes(cfg), s, b, a, vals)
                drive(ctx, dut, sched, drain=w)
                await ctx.tick()
                model.cycle(0, (), None, w)
    drive(ctx, dut, sched)


async def read_word(ctx, dut, sched, s, b, addr):
    drive(ctx, dut, sched, raddr=addr, ren={(s, b)})
    await ctx.tick()
    drive(ctx, dut, sched)
    return unpack(ctx.get(dut.rdata[s][b]), sched.cfg.abits, sched.cfg.cols)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_load_one_lane_changes_only_that_lane(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    dut = ActBanks(sched)
    model = Model(sched)
    rng = random.Random(1)
    bad = []

    async def bench(ctx):
        await fill(ctx, dut, sched, model, rng)
        for s in range(2):
            for b in range(sched.banks):
                a = rng.randrange(sched.bank_depth)
                for lane in range(cfg.cols):
                    before = await read_word(ctx, dut, sched, s, b, a)
                    if before != model.mem[(s, b)][a]:
                        bad.append(("before", s, b, a, before, model.mem[(s, b)][a]))
                    # the controller's load: the pixel replicated in every lane, one lane enabled
                    px = (before[lane] + 1 + rng.randrange((1 << cfg.abits) - 1)) % (1 << cfg.abits)
                    w = (1 << lane, s, b, a, [px] * cfg.cols)
                    drive(ctx, dut, sched, load=w)
                    await ctx.tick()
                    model.cycle(0, (), w, None)
                    after = await read_word(ctx, dut, sched, s, b, a)
                    want = list(before)
                    want[lane] = px
                    if after != want:
                        bad.append(("after", s, b, a, lane, after, want))

    run(dut, bench)
    assert not bad, bad[:4]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_drain_writes_all_lanes_and_banks_are_independent(name):
    """Each (set, bank) gets its own word at the same address; reading all banks at once
    returns each its own word."""
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    dut = ActBanks(sched)
    rng = random.Random(2)
    got = []
    want = {}

    async def bench(ctx):
        for a in range(sched.bank_depth):
            for s in range(2):
                for b in range(sched.banks):
                    vals = [rng.randrange(1 << cfg.abits) for _ in range(cfg.cols)]
                    want[(s, b, a)] = vals
                    drive(ctx, dut, sched, drain=(all_lanes(cfg), s, b, a, vals))
                    await ctx.tick()
        everyone = {(s, b) for s in range(2) for b in range(sched.banks)}
        for a in range(sched.bank_depth):
            drive(ctx, dut, sched, raddr=a, ren=everyone)
            await ctx.tick()
            got.append((a, observe(ctx, dut, sched)))

    run(dut, bench)
    for a, obs in got:
        for (s, b), vals in obs.items():
            assert vals == want[(s, b, a)], (s, b, a)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_read_latency_and_hold(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    dut = ActBanks(sched)
    rng = random.Random(3)
    model = Model(sched)
    checks = []

    async def bench(ctx):
        await fill(ctx, dut, sched, model, rng)
        D = sched.bank_depth
        for s in range(2):
            for b in range(sched.banks):
                a0, a1 = 0, D - 1
                # read a0 and settle
                await read_word(ctx, dut, sched, s, b, a0)
                prev = observe(ctx, dut, sched)[(s, b)]
                # a new address and ren: nothing visible in the same cycle ...
                drive(ctx, dut, sched, raddr=a1, ren={(s, b)})
                checks.append(("same cycle", observe(ctx, dut, sched)[(s, b)], prev))
                await ctx.tick()
                # ... the word one cycle later
                drive(ctx, dut, sched, raddr=a0)
                checks.append(("next cycle", observe(ctx, dut, sched)[(s, b)], model.mem[(s, b)][a1]))
                # ren low: other addresses and rewrites of the held word change nothing
                held = model.mem[(s, b)][a1]
                for a in range(D):
                    vals = [rng.randrange(1 << cfg.abits) for _ in range(cfg.cols)]
                    w = (all_lanes(cfg), s, b, a, vals)
                    drive(ctx, dut, sched, raddr=a, drain=w)
                    await ctx.tick()
                    model.cycle(a, (), None, w)
                    checks.append(("held", observe(ctx, dut, sched)[(s, b)], held))
                drive(ctx, dut, sched)
                # the rewritten contents are there
                for a in range(D):
                    checks.append(("rewritten", await read_word(ctx, dut, sched, s, b, a),
                                   model.mem[(s, b)][a]))

    run(dut, bench)
    for what, got, want in checks:
        assert got == want, what


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_lanes_zero_writes_nothing_and_load_wins(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    dut = ActBanks(sched)
    rng = random.Random(4)
    model = Model(sched)
    checks = []

    async def bench(ctx):
        await fill(ctx, dut, sched, model, rng)
        for s in range(2):
            for b in range(sched.banks):
                a = rng.randrange(sched.bank_depth)
                junk = [(1 << cfg.abits) - 1 - v for v in model.mem[(s, b)][a]]
                for port in ("load", "drain"):
                    kw = {port: (0, s, b, a, junk)}
                    drive(ctx, dut, sched, **kw)
                    await ctx.tick()
                    checks.append((f"{port} lanes=0", await read_word(ctx, dut, sched, s, b, a),
                                   model.mem[(s, b)][a]))
                # load and drain to the same word in the same cycle: the load is written
                lane = rng.randrange(cfg.cols)
                ld = (1 << lane, s, b, a, junk)
                dr = (all_lanes(cfg), s, b, a, [rng.randrange(1 << cfg.abits) for _ in range(cfg.cols)])
                drive(ctx, dut, sched, load=ld, drain=dr)
                await ctx.tick()
                model.cycle(0, (), ld, dr)
                checks.append(("load wins", await read_word(ctx, dut, sched, s, b, a), model.mem[(s, b)][a]))

    run(dut, bench)
    for what, got, want in checks:
        assert got == want, what


def _steps(sched):
    cfg = sched.cfg
    word = st.lists(st.integers(0, (1 << cfg.abits) - 1), min_size=cfg.cols, max_size=cfg.cols)
    target = st.tuples(st.integers(0, 1), st.integers(0, sched.banks - 1), st.integers(0, sched.bank_depth - 1))
    one_lane = st.integers(0, cfg.cols - 1).map(lambda c: 1 << c)
    load = st.tuples(st.one_of(one_lane, st.integers(0, all_lanes(cfg))), target, word).map(
        lambda t: ("load", (t[0],) + t[1] + (t[2],)))
    drain = st.tuples(st.sampled_from([all_lanes(cfg), all_lanes(cfg), 0]), target, word).map(
        lambda t: ("drain", (t[0],) + t[1] + (t[2],)))
    write = st.one_of(st.none(), load, drain)
    ren = st.sets(st.tuples(st.integers(0, 1), st.integers(0, sched.banks - 1)))
    step = st.tuples(st.integers(0, sched.bank_depth - 1), ren, write)
    return st.lists(step, min_size=1, max_size=30)


@pytest.mark.parametrize("name", ["mp", "op"])
def test_random_traffic(name):
    sched = schedule(CONFIGS[name])

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=_steps(sched), seed=st.integers(0, 1 << 16))
    def check(steps, seed):
        dut = ActBanks(sched)
        model = Model(sched)
        log = []

        async def bench(ctx):
            await fill(ctx, dut, sched, model, random.Random(seed))
            # settle every read port on a known word
            everyone = {(s, b) for s in range(2) for b in range(sched.banks)}
            drive(ctx, dut, sched, raddr=0, ren=everyone)
            await ctx.tick()
            model.cycle(0, everyone, None, None)
            for raddr, ren, write in steps:
                kind, w = write if write else (None, None)
                drive(ctx, dut, sched, raddr=raddr, ren=ren,
                      load=w if kind == "load" else None, drain=w if kind == "drain" else None)
                # the read ports change only on the clock edge
                log.append(("same", observe(ctx, dut, sched), dict(model.rdata)))
                await ctx.tick()
                model.cycle(raddr, ren, w if kind == "load" else None, w if kind == "drain" else None)
                log.append(("next", observe(ctx, dut, sched), dict(model.rdata)))

        run(dut, bench)
        for what, got, want in log:
            for sb, v in want.items():
                if v is not None:
                    assert got[sb] == v, (what, sb)

    check()


def test_refuses_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        ActBanks(CONFIGS["mp"])
