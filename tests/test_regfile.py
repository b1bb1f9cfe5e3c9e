# amaranth: UnusedElaboratable=no
"""RegFile (Amaranth simulator): reset values of the register map, writes through the
register port (effective the next cycle, only with ``we``), full register ranges, and
the combinational read side (threshold / shift base / head shift base / exit enable /
score mask).

The expected values come from ``schedule.regs`` (the register map) and a plain-Python
dictionary model of the registers, never from the unit's code."""

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.regfile import RegFile
from ffaccel.schedule import schedule

CONFIGS = {
    # MP, three layers, calibrated thresholds (one negative), exits on
    "mp3": AccelConfig(inputs=12, classes=3, layers=(6, 5, 4), rows=2, cols=3, abits=3, wbits=4,
                       afrac=1, thresholds=(5, -7), score_mask=(1, 0, 1)),
    # OP, two layers: head shift bases differ from the layer shift bases
    "op2": AccelConfig(inputs=8, classes=5, layers=(7, 4), rows=2, cols=3, abits=3, wbits=4, afrac=1,
                       mode="op", lfrac=2, thresholds=(3,), exit_policy="margin"),
    # one layer: no threshold register at all; exits disabled
    "mp1": AccelConfig(inputs=6, classes=2, layers=(5,), rows=2, cols=2, abits=2, wbits=3, afrac=0),
    # the shift register resets to 19, wider than the score width (5 signed bits)
    "tiny": AccelConfig(inputs=3, classes=2, layers=(1,), abits=1, afrac=0),
    # exit_policy none: exit_enable resets to 0 even with thresholds
    "none": AccelConfig(inputs=10, classes=3, layers=(4, 4), rows=3, cols=2, abits=2, wbits=3, afrac=0,
                        thresholds=(2,), exit_policy="none"),
}


def reg_range(r):
    if r.signed:
        return -(1 << (r.bits - 1)), (1 << (r.bits - 1)) - 1
    return 0, (1 << r.bits) - 1


def reset_model(sched):
    return {r.addr: r.reset for r in sched.regs.registers}


def expected_view(sched, regs):
    """What the read side must show for a register model {addr: value}."""
    rm, L = sched.regs, sched.cfg.n_layers
    by_name = {r.name: regs[r.addr] for r in rm.registers}
    return {
        "threshold": [by_name[f"threshold{i}"] for i in range(L - 1)],
        "shift": [by_name[f"shift{i}"] for i in range(L)],
        "head_shift": [by_name[f"head_shift{i}"] for i in range(L)] if sched.cfg.mode == "op" else [],
        "exit_enable": by_name["exit_enable"],
        "score_mask": by_name["score_mask"],
    }


def read_view(ctx, dut, sched):
    """Read every register through the combinational read side (no clock edge)."""
    L = sched.cfg.n_layers
    view = {"threshold": [], "shift": [], "head_shift": []}
    for i in range(L - 1):
        ctx.set(dut.thr_layer, i)
        view["threshold"].append(ctx.get(dut.threshold))
    for head, key in ((0, "shift"), (1, "head_shift"))[: 2 if sched.cfg.mode == "op" else 1]:
        ctx.set(dut.sel_head, head)
        for i in range(L):
            ctx.set(dut.sel_layer, i)
            view[key].append(ctx.get(dut.shift_base))
    view["exit_enable"] = ctx.get(dut.exit_enable)
    view["score_mask"] = ctx.get(dut.score_mask)
    return view


def wr(ctx, dut, we, addr, data):
    """Drive the register port (an interface: one signal at a time)."""
    ctx.set(dut.port.we, we)
    ctx.set(dut.port.addr, addr)
    ctx.set(dut.port.data, data)


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_register_map_sanity():
    """The maps the tests rely on: the layout of the register addresses."""
    for cfg in CONFIGS.values():
        rm, L = schedule(cfg).regs, cfg.n_layers
        assert [r.addr for r in rm.group("threshold")] == list(range(L - 1))
        assert [r.addr for r in rm.group("shift")] == list(range(L, 2 * L))
        # head shift bases exist in OP only (MP has no heads); the addresses keep their slots
        assert [r.addr for r in rm.group("head_shift")] == (list(range(2 * L, 3 * L)) if cfg.mode == "op" else [])
        assert [r.addr for r in rm.group("exit_enable")] == [3 * L]
        assert [r.addr for r in rm.group("score_mask")] == [3 * L + 1] and rm.group("score_mask")[0].bits == L
        for r in rm.registers:
            lo, hi = reg_range(r)
            # the port's signed data lane holds every register's full range
            assert -(1 << (rm.data_bits - 1)) <= lo and hi <= (1 << (rm.data_bits - 1)) - 1


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reset_values(name):
    cfg = CONFIGS[name]
    sched = schedule(cfg)
    dut = RegFile(sched)
    seen = {}

    async def bench(ctx):
        seen["now"] = read_view(ctx, dut, sched)
        await ctx.tick()                       # idle port: nothing changes
        seen["later"] = read_view(ctx, dut, sched)

    run(dut, bench)
    want = expected_view(sched, reset_model(sched))
    # spelled out from the config (the register map's statement of the reset values)
    L = cfg.n_layers
    assert want["threshold"] == (list(cfg.thresholds) if cfg.thresholds else [0] * (L - 1))
    assert want["shift"] == [cfg.rsqrt_frac + cfg.wfrac[i] - cfg.afrac for i in range(L)]
    assert want["head_shift"] == ([max(0, cfg.rsqrt_frac + cfg.hfrac[i] - cfg.lfrac) for i in range(L)]
                                  if cfg.mode == "op" else [])
    assert want["exit_enable"] == int(bool(cfg.thresholds) and cfg.exit_policy != "none")
    assert want["score_mask"] == sum(1 << i for i in range(L) if not cfg.score_mask or cfg.score_mask[i])
    assert seen["now"] == want
    assert seen["later"] == want


def test_tiny_config_shift_reset_wider_than_score():
    cfg = CONFIGS["tiny"]
    sched = schedule(cfg)
    assert cfg.score_bits == 5 and sched.regs.group("shift")[0].reset == 19
    dut = RegFile(sched)
    got = []

    async def bench(ctx):
        ctx.set(dut.sel_layer, 0)
        ctx.set(dut.sel_head, 0)
        got.append(ctx.get(dut.shift_base))
        # write and read back the full range through the port
        for v in (63, 0, 19, 47):
            wr(ctx, dut, 1, sched.regs.shift, v)
            await ctx.tick()
            ctx.set(dut.port.we, 0)
            got.append(ctx.get(dut.shift_base))

    run(dut, bench)
    assert got == [19, 63, 0, 19, 47]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_register_full_range_next_cycle_and_isolated(name):
    """For every register and each of its extreme values: a write is invisible in its own
    cycle, visible the next, touches no other register; a write with we=0 does nothing."""
    cfg = CONFIGS[name]
    sched = schedule(cfg)
    dut = RegFile(sched)
    log = []

    async def bench(ctx):
        model = reset_model(sched)
        for r in sched.regs.registers:
            lo, hi = reg_range(r)
            for v in (hi, lo, hi // 2 if hi > 1 else 1, (lo + hi) // 3 if r.signed else 1, r.reset):
                if not lo <= v <= hi:
                    continue
                # we=0: data and address on the port, nothing written
                wr(ctx, dut, 0, r.addr, v if v != model[r.addr] else lo)
                await ctx.tick()
                log.append((r.name, "we0", read_view(ctx, dut, sched), expected_view(sched, model)))
                wr(ctx, dut, 1, r.addr, v)
                # same cycle: still the old value
                log.append((r.name, "same", read_view(ctx, dut, sched), expected_view(sched, model)))
                await ctx.tick()
                wr(ctx, dut, 0, 0, 0)
                model[r.addr] = v
                log.append((r.name, v, read_view(ctx, dut, sched), expected_view(sched, model)))

    run(dut, bench)
    assert log
    for name_, what, got, want in log:
        assert got == want, (name_, what)


@pytest.mark.parametrize("name", ["mp3", "op2", "tiny"])
def test_unused_addresses_write_nothing(name):
    """The unused threshold slot (address L-1) and addresses past the map are ignored."""
    cfg = CONFIGS[name]
    sched = schedule(cfg)
    rm = sched.regs
    used = {r.addr for r in rm.registers}
    unused = [a for a in range(1 << rm.addr_bits) if a not in used]
    assert unused
    dut = RegFile(sched)
    got = []
    hi = (1 << (rm.data_bits - 1)) - 1

    async def bench(ctx):
        for a in unused:
            for v in (hi, -1, 1):
                wr(ctx, dut, 1, a, v)
                await ctx.tick()
                got.append(read_view(ctx, dut, sched))

    run(dut, bench)
    want = expected_view(sched, reset_model(sched))
    assert all(g == want for g in got)


def _writes(sched):
    regs = sched.regs.registers
    one = st.sampled_from(regs).flatmap(
        lambda r: st.tuples(st.just(r.addr), st.integers(*reg_range(r)), st.booleans()))
    return st.lists(one, min_size=1, max_size=25)


@pytest.mark.parametrize("name", ["mp3", "op2"])
def test_random_write_sequences(name):
    cfg = CONFIGS[name]
    sched = schedule(cfg)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=_writes(sched))
    def check(ops):
        dut = RegFile(sched)
        log = []

        async def bench(ctx):
            model = reset_model(sched)
            for addr, v, we in ops:
                wr(ctx, dut, int(we), addr, v)
                await ctx.tick()
                if we:
                    model[addr] = v
                log.append((read_view(ctx, dut, sched), expected_view(sched, model)))

        run(dut, bench)
        for got, want in log:
            assert got == want

    check()


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_refuses_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        RegFile(CONFIGS["mp3"])
