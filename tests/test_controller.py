"""Controller unit alone: its issue trace equals the schedule's pass list.

The datapath is absent (the pipeline reports idle; the exit comparator is a delay line of
its latency that never fires, so every
inference runs to the decision layer: the last one, or the last scored one): per pass the controller must issue, for every copy
group and tile, the inputs ``k_first .. k_first + k - 1`` (``first``/``last`` on the ends),
then the pass's label words, and start tiles exactly one tile period apart."""

import pytest
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig
from ffaccel.hw.controller import Controller
from ffaccel.schedule import schedule

CONFIGS = [
    AccelConfig(inputs=14, layers=(5, 7), classes=3, rows=2, cols=3),                      # MP groups, sharing
    AccelConfig(inputs=14, layers=(5, 7), classes=3, rows=2, cols=3, label_share=False),
    AccelConfig(inputs=9, layers=(4, 2, 3), classes=4, rows=5, cols=2, label_share=False),  # rows > classes
    AccelConfig(inputs=9, layers=(4, 6), classes=3, rows=3, cols=4, mode="op"),
    AccelConfig(inputs=20, layers=(3,), classes=2, rows=1, cols=1),
    # trailing layers out of the score: the inference ends at the last scored layer
    AccelConfig(inputs=9, layers=(4, 2, 3), classes=4, rows=5, cols=2, score_mask=(0, 1, 0)),
    AccelConfig(inputs=9, layers=(4, 6), classes=3, rows=3, cols=4, mode="op", score_mask=(1, 0)),
]


def trace(cfg, batch: int):
    """Issue beats (cycle, fields) of one inference of ``batch`` samples."""
    dut = Controller(schedule(cfg))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    beats, info = [], {}

    async def bench(ctx):
        ctx.set(dut.result.ready, 1)
        ctx.set(dut.score_mask, schedule(cfg).regs.group("score_mask")[0].reset)
        for j in range(batch):
            for i in range(cfg.inputs):
                ctx.set(dut.pixels.valid, 1)
                ctx.set(dut.pixels.payload, {"data": (i * 7 + j) % (cfg.amax + 1),
                                             "last": int(j == batch - 1 and i == cfg.inputs - 1)})
                while not ctx.get(dut.pixels.ready):
                    await ctx.tick()
                await ctx.tick()
        ctx.set(dut.pixels.valid, 0)
        cyc = 0
        lat = schedule(cfg).exit_latency
        line = [(0, 0)] * (lat - 1)                # the comparator's valid and tag, lat cycles late

        async def tick():
            line.append((ctx.get(dut.cmp_valid), ctx.get(dut.cmp_tag)))
            await ctx.tick()
            v, t = line.pop(0)
            ctx.set(dut.cmp_o_valid, v)
            ctx.set(dut.cmp_o_tag, t)
        while not ctx.get(dut.result.valid):
            c = ctx.get(dut.issue)
            if c.valid or c.lab:
                beats.append((cyc, {"valid": c.valid, "lab": c.lab, "first": c.first, "last": c.last,
                                    "lab_last": c.lab_last, "k": c.k, "layer": c.tag.layer, "head": c.tag.head,
                                    "tile": c.tag.tile, "grp": c.tag.grp, "shared": c.tag.shared, "src": c.tag.src}))
            cyc += 1
            await tick()
            assert cyc < 100_000
        info["results"] = 0
        while ctx.get(dut.result.valid):
            info["results"] += 1
            info["row"] = ctx.get(dut.result.payload.row)
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return beats, info


def expected(cfg, batch: int):
    """(pass key, beats) from the schedule alone."""
    s = schedule(cfg)
    passes = []
    for layer in range(cfg.decision_layer):
        passes.append(s.layer_passes[layer])
        if s.head_passes:
            passes.append(s.head_passes[layer])
    out = []
    for p in passes:
        for g, rows in enumerate(p.drained(batch)):
            for t in range(p.tiles):
                for k in range(p.k):
                    out.append({"valid": 1, "lab": 0, "first": int(k == 0), "last": int(k == p.k - 1), "lab_last": 0,
                                "k": p.k_first + k, "layer": p.layer, "head": int(p.kind == "head"), "tile": t,
                                "grp": g, "shared": int(p.shared), "src": p.src, "_period": p.period(rows)})
                for j in range(p.label_words):
                    out.append({"valid": 0, "lab": 1, "first": 0, "last": 0, "lab_last": int(j == p.label_words - 1),
                                "k": j, "layer": p.layer, "head": 0, "tile": t, "grp": g, "shared": 1,
                                "src": p.src, "_period": p.period(rows)})
    return out


@pytest.mark.parametrize("ci", range(len(CONFIGS)))
def test_issue_trace_equals_schedule(ci):
    cfg = CONFIGS[ci]
    batch = 1 if cfg.mode == "mp" else cfg.rows - 1
    beats, info = trace(cfg, batch)
    want = expected(cfg, batch)
    assert [b for _, b in beats] == [{k: v for k, v in w.items() if k != "_period"} for w in want]
    # consecutive tiles of one pass and copy group start one tile period apart
    starts = [(c, w) for (c, b), w in zip(beats, want) if b["valid"] and b["first"]]
    for (c0, w0), (c1, w1) in zip(starts, starts[1:]):
        if (w0["layer"], w0["head"], w0["grp"]) == (w1["layer"], w1["head"], w1["grp"]):
            assert c1 - c0 == w0["_period"], (w0, w1)
    assert info["results"] == batch


def test_controller_refuses_a_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        Controller(AccelConfig())
