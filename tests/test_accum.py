# amaranth: UnusedElaboratable=no
"""Accumulators (Amaranth simulator) against a plain-Python statement of the unit:

- loading a sample (then ``Latencies.load`` idle cycles, the controller's SETTLE) gives
  the goodness of the embedded input: sum of squares of the image
  pixels (not the label positions) + ``label_value**2`` (MP, every copy) or
  ``classes * neutral_value**2`` (OP, row ``row`` only);
- a norm step gives ``(m, s) == intops.rsqrt(g, rsqrt_frac, rsqrt_index)`` on ``sel``,
  readable ``Latencies.norm`` cycles after the step (not before), and clears ``g`` at once;
- goodness adds accumulate into ``g[cp]`` (and MP ``scores[cp]`` when ``score_mask`` has
  the add's layer);
- OP logit adds go to class ``tile*cols + c`` of row ``cp`` (when ``score_mask`` has the
  head's layer); ``scores`` shows the row ``score_row`` selects;
- ``start`` clears the scores (and the input goodness)."""

import random

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffaccel.config import AccelConfig
from ffaccel.hw.accum import Accumulators
from ffaccel.model.intops import rsqrt
from ffaccel.schedule import schedule

CONFIGS = {
    "mp": AccelConfig(inputs=8, classes=3, layers=(5, 4), rows=2, cols=3, abits=3, wbits=4, afrac=1),
    # copy groups: 5 copies on 2 rows -> 5 banks
    "mp_groups": AccelConfig(inputs=9, classes=5, layers=(4,), rows=2, cols=2, abits=2, wbits=3, afrac=0,
                             label_share=False),
    # OP: 5 classes over 3 head tiles of 2 lanes (the last tile has one class)
    "op": AccelConfig(inputs=7, classes=5, layers=(4, 6), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                      mode="op", lfrac=2),
    # OP: more lanes than classes
    "op_wide": AccelConfig(inputs=6, classes=2, layers=(3,), rows=2, cols=4, abits=4, wbits=3, afrac=2,
                           mode="op", lfrac=2),
    # layers left out of the score (the mask is the register file's reset value)
    "mp_mask": AccelConfig(inputs=8, classes=3, layers=(5, 4, 3), rows=2, cols=3, abits=3, wbits=4, afrac=1,
                           score_mask=(0, 1, 0)),
    "op_mask": AccelConfig(inputs=7, classes=5, layers=(4, 6), rows=3, cols=2, abits=3, wbits=4, afrac=1,
                           mode="op", lfrac=2, score_mask=(1, 0)),
}


def rs(cfg, g):
    m, s = rsqrt([g], cfg.rsqrt_frac, cfg.rsqrt_index)
    return int(m[0]), int(s[0])


def input_goodness(cfg, pixels):
    """Goodness of the embedded input of one sample (docs: label embedding)."""
    img = sum(p * p for p in pixels[cfg.classes:])
    if cfg.mode == "mp":
        return img + cfg.label_value ** 2
    return img + cfg.classes * cfg.neutral_value ** 2


class Model:
    def __init__(self, sched):
        cfg = sched.cfg
        self.cfg, self.sched = cfg, sched
        self.g = [None] * sched.banks          # None: not yet defined by the test
        self.ms = [None] * sched.banks
        self.scores = [[0] * cfg.classes for _ in range(cfg.rows if cfg.mode == "op" else 1)]
        self.scores_known = False
        self.now = 0                           # clock ticks so far
        self.pending = []                      # (tick from which readable, idx, (m, s))

    def tick(self):
        self.now += 1
        for due, idx, ms in [p for p in self.pending if p[0] <= self.now]:
            self.ms[idx] = ms
        self.pending = [p for p in self.pending if p[0] > self.now]

    def sample(self, pixels, row):
        g0 = input_goodness(self.cfg, pixels)
        if self.cfg.mode == "mp":
            self.g = [g0] * self.sched.banks
        else:
            self.g[row] = g0

    def start(self):
        self.scores = [[0] * len(r) for r in self.scores]
        self.scores_known = True

    def norm(self, idx):
        """The factors are readable ``Latencies.norm`` ticks after the step's cycle; the
        goodness is cleared at once."""
        self.pending.append((self.now + self.sched.latency.norm, idx,
                             rs(self.cfg, self.g[idx]) if self.g[idx] is not None else None))
        self.g[idx] = 0

    def good(self, cp, v, layer):
        if self.g[cp] is not None:
            self.g[cp] += v
        if self.cfg.mode == "mp" and self.cfg.scored[layer]:
            self.scores[0][cp] += v

    def logit(self, cp, tile, inc, layer):
        if self.cfg.mode == "op" and self.cfg.scored[layer]:
            for c, v in enumerate(inc):
                cls = tile * self.cfg.cols + c
                if cls < self.cfg.classes:
                    self.scores[cp][cls] += v


def idle(ctx, dut, sched):
    cfg = sched.cfg
    ctx.set(dut.load, {"valid": 0, "pixel": 0, "label_px": 0, "last": 0, "row": 0})
    ctx.set(dut.start, 0)
    ctx.set(dut.norm, {"en": 0, "idx": 0})
    ctx.set(dut.goodness, {"valid": 0, "cp": 0, "layer": 0, "sum": 0})
    ctx.set(dut.logit, {"valid": 0, "cp": 0, "tile": 0, "layer": 0, "inc": [0] * cfg.cols})
    ctx.set(dut.score_mask, sched.regs.group("score_mask")[0].reset)


async def do(ctx, dut, sched, model, op):
    """Drive one operation (a sample load takes ``inputs`` cycles) and update the model."""
    cfg = sched.cfg
    kind = op[0]
    if kind == "sample":
        _, pixels, row = op
        for i, p in enumerate(pixels):
            ctx.set(dut.load, {"valid": 1, "pixel": p, "label_px": int(i < cfg.classes),
                               "last": int(i == cfg.inputs - 1), "row": row})
            await ctx.tick()
            model.tick()
        # the squares reach the goodness Latencies.load cycles late (the controller's SETTLE)
        idle(ctx, dut, sched)
        for _ in range(sched.latency.load - 1):
            await ctx.tick()
            model.tick()
        await ctx.tick()
        model.sample(pixels, row)
    elif kind == "start":
        ctx.set(dut.start, 1)
        await ctx.tick()
        model.start()
    elif kind == "norm":
        ctx.set(dut.norm, {"en": 1, "idx": op[1]})
        await ctx.tick()
        model.norm(op[1])
    elif kind == "good":                      # ("good", cp, sum[, layer])
        layer = op[3] if len(op) > 3 else 0
        ctx.set(dut.goodness, {"valid": 1, "cp": op[1], "layer": layer, "sum": op[2]})
        await ctx.tick()
        model.good(op[1], op[2], layer)
    elif kind == "logit":                     # ("logit", cp, tile, inc[, layer])
        layer = op[4] if len(op) > 4 else 0
        ctx.set(dut.logit, {"valid": 1, "cp": op[1], "tile": op[2], "layer": layer, "inc": list(op[3])})
        await ctx.tick()
        model.logit(op[1], op[2], op[3], layer)
    elif kind == "idle":
        await ctx.tick()
    model.tick()
    idle(ctx, dut, sched)


def observe(ctx, dut, sched):
    cfg = sched.cfg
    out = {"g": [ctx.get(dut.g[b]) for b in range(sched.banks)], "ms": [], "scores": []}
    for b in range(sched.banks):
        ctx.set(dut.sel, b)
        out["ms"].append((ctx.get(dut.m), ctx.get(dut.s)))
    for r in range(cfg.rows if cfg.mode == "op" else 1):
        ctx.set(dut.score_row, r)
        out["scores"].append([ctx.get(dut.scores[c]) for c in range(cfg.classes)])
    return out


def compare(got, model, what):
    for b, (gv, want) in enumerate(zip(got["g"], model.g)):
        if want is not None:
            assert gv == want, (what, "g", b)
    for b, (mv, want) in enumerate(zip(got["ms"], model.ms)):
        if want is not None:
            assert mv == want, (what, "m,s", b)
    if model.scores_known:
        assert got["scores"] == model.scores, (what, "scores")


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def run_ops(sched, ops):
    """Run ``ops`` in one simulation; compare the unit with the model after each one."""
    dut = Accumulators(sched)
    model = Model(sched)
    log = []

    async def bench(ctx):
        idle(ctx, dut, sched)
        for op in ops:
            await do(ctx, dut, sched, model, op)
            log.append((op, observe(ctx, dut, sched), _snapshot(model)))

    run(dut, bench)
    for op, got, snap in log:
        compare(got, snap, op)
    return log


def _snapshot(model):
    snap = Model.__new__(Model)
    snap.cfg, snap.sched = model.cfg, model.sched
    snap.g, snap.ms = list(model.g), list(model.ms)
    snap.scores = [list(r) for r in model.scores]
    snap.scores_known = model.scores_known
    snap.now, snap.pending = model.now, list(model.pending)
    return snap


# ------------------------------------------------------------------------ directed tests
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_load_gives_input_goodness_and_norm_gives_rsqrt(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    rng = random.Random(5)
    amax = cfg.amax
    ops = []
    for rep in range(2):
        if cfg.mode == "mp":
            # the label positions hold garbage the unit must ignore; the image the max, then random
            px = [amax] * cfg.inputs if rep == 0 else [rng.randrange(amax + 1) for _ in range(cfg.inputs)]
            ops += [("sample", px, 0), ("start",)]
        else:
            for r in range(cfg.rows):
                px = [amax if rep == 0 and r == 0 else rng.randrange(amax + 1) for _ in range(cfg.inputs)]
                ops.append(("sample", px, r))
            ops.append(("start",))
        ops += [("norm", b) for b in range(sched.banks)] + [("idle",)] * sched.latency.norm
        ops += [("norm", 0)] + [("idle",)] * sched.latency.norm   # g cleared: rsqrt(0) = (0, 0)
    log = run_ops(sched, ops)
    # spell out one case by hand: the all-max sample
    first = log[0][2]
    want = sum(amax ** 2 for _ in range(cfg.inputs - cfg.classes)) + (
        cfg.label_value ** 2 if cfg.mode == "mp" else cfg.classes * cfg.neutral_value ** 2)
    assert (first.g[0]) == want
    # and the rsqrt output after the norms (not only equal to the model: nonzero)
    last = [i for i, (op, _, _) in enumerate(log) if op == ("norm", sched.banks - 1)][0]
    after_norms = log[last + sched.latency.norm][2]       # the factors are written by then
    assert all(ms is not None and ms[0] > 0 for ms in after_norms.ms)


def test_mp_load_ignores_label_pixels_and_fills_every_copy():
    sched = schedule(CONFIGS["mp_groups"])
    cfg = sched.cfg
    px = [cfg.amax] * cfg.classes + [0] * (cfg.inputs - cfg.classes)    # only label positions set
    log = run_ops(sched, [("sample", px, 0)])
    got = log[-1][1]["g"]
    assert got == [cfg.label_value ** 2] * sched.banks


def test_op_rows_get_their_own_sample():
    sched = schedule(CONFIGS["op"])
    cfg = sched.cfg
    px0 = [cfg.amax] * cfg.inputs
    px1 = [0] * cfg.inputs
    px2 = [1] * cfg.inputs
    log = run_ops(sched, [("sample", px0, 0), ("sample", px1, 1), ("sample", px2, 2)])
    got = log[-1][1]["g"]
    neutral = cfg.classes * cfg.neutral_value ** 2
    n_img = cfg.inputs - cfg.classes
    assert got == [n_img * cfg.amax ** 2 + neutral, neutral, n_img + neutral]


@pytest.mark.parametrize("name", ["mp", "op"])
def test_goodness_adds_accumulate_and_norm_clears(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    px = [1] * cfg.inputs
    ops = [("sample", px, r) for r in range(1 if cfg.mode == "mp" else cfg.rows)] + [("start",)]
    ops += [("norm", b) for b in range(sched.banks)]                     # all g = 0
    ops += [("good", 0, 3), ("good", 1, 5), ("good", 0, 7), ("idle",), ("good", sched.banks - 1, 100)]
    log = run_ops(sched, ops)
    got = log[-1][1]
    assert got["g"][0] == 10 and got["g"][1] == 5 + (100 if sched.banks == 2 else 0)
    if cfg.mode == "mp":
        assert got["scores"][0][:2] == [10, 5]
    else:
        assert got["scores"] == [[0] * cfg.classes] * cfg.rows       # OP: goodness is not a score
    log = run_ops(sched, ops + [("norm", 0), ("norm", 1)] + [("idle",)] * sched.latency.norm)
    got = log[-1][1]
    assert got["g"][:2] == [0, 0]
    assert got["ms"][0] == rs(cfg, 10) and got["ms"][1] == rs(cfg, 5 + (100 if sched.banks == 2 else 0))


@pytest.mark.parametrize("name", ["op", "op_wide"])
def test_op_logits_go_to_tile_class_of_row(name):
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    C, NC = cfg.cols, cfg.classes
    ops = [("start",)]
    # one increment per (row, tile): value 10*row + tile + 1 in lane 0, lane c adds c
    for r in range(cfg.rows):
        for t in range(sched.memory.head_tiles):
            ops.append(("logit", r, t, [10 * r + t + 1 + c for c in range(C)]))
    log = run_ops(sched, ops)
    got = log[-1][1]["scores"]
    for r in range(cfg.rows):
        want = [10 * r + cls // C + 1 + cls % C for cls in range(NC)]
        assert got[r] == want
    # start clears every row
    log = run_ops(sched, ops + [("logit", 0, 0, [-3] * C), ("start",)])
    assert log[-1][1]["scores"] == [[0] * NC] * cfg.rows
    assert log[-2][1]["scores"][0][0] == 1 - 3


def test_mp_start_clears_scores_and_logit_strobes_do_nothing():
    sched = schedule(CONFIGS["mp"])
    cfg = sched.cfg
    ops = [("start",), ("good", 0, 4), ("good", 2, 9),
           ("logit", 0, 0, [5] * cfg.cols), ("start",)]
    log = run_ops(sched, ops)
    assert log[2][1]["scores"][0] == [4, 0, 9]
    assert log[3][1]["scores"][0] == [4, 0, 9]
    assert log[4][1]["scores"][0] == [0, 0, 0]


# ------------------------------------------------------------------------ random sequences
def _ops(sched):
    cfg = sched.cfg
    nadd = 12
    gmax = min((1 << cfg.goodness_reg_bits) - 1 - max(input_goodness(cfg, [cfg.amax] * cfg.inputs), 0),
               (1 << (cfg.score_bits - 1)) - 1) // (nadd + 1)
    lmax = ((1 << (cfg.score_bits - 1)) - 1) // (nadd + 1)
    pixels = st.lists(st.integers(0, cfg.amax), min_size=cfg.inputs, max_size=cfg.inputs)
    rows = cfg.rows if cfg.mode == "op" else 1
    sample = st.tuples(st.just("sample"), pixels, st.integers(0, rows - 1))
    norm = st.tuples(st.just("norm"), st.integers(0, sched.banks - 1))
    layer = st.integers(0, cfg.n_layers - 1)
    good = st.tuples(st.just("good"), st.integers(0, sched.banks - 1), st.integers(0, max(gmax, 1)), layer)
    inc = st.lists(st.integers(-lmax, lmax), min_size=cfg.cols, max_size=cfg.cols)
    tiles = max(sched.memory.head_tiles, 1)
    logit = st.tuples(st.just("logit"), st.integers(0, cfg.rows - 1), st.integers(0, tiles - 1), inc, layer)
    other = st.sampled_from([("start",), ("idle",)])
    op = st.one_of(sample, norm, good, logit, other)
    return st.lists(op, min_size=1, max_size=nadd)


def _legal(sched, ops):
    """The controller's order: a sample load is followed by START (MP: always; OP: before
    the scores are read); the run starts with a load of every copy/row and a START."""
    cfg = sched.cfg
    rows = range(cfg.rows) if cfg.mode == "op" else range(1)
    head = [("sample", [0] * cfg.inputs, r) for r in rows] + [("start",)]
    out = list(head)
    for op in ops:
        out.append(op)
        if op[0] == "sample" and cfg.mode == "mp":
            out.append(("start",))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_operation_sequences(name):
    sched = schedule(CONFIGS[name])

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=_ops(sched))
    def check(ops):
        run_ops(sched, _legal(sched, ops))

    check()


@pytest.mark.parametrize("name", ["mp_mask", "op_mask"])
def test_skipped_layers_do_not_reach_the_scores(name):
    """With layer 1 (MP: layers 1 and 3) out of the score, its goodness still feeds the
    normalisation but not the scores; a scored layer's adds do."""
    sched = schedule(CONFIGS[name])
    cfg = sched.cfg
    rows = cfg.rows if cfg.mode == "op" else 1
    ops = [("sample", [1] * cfg.inputs, r) for r in range(rows)] + [("start",)]
    ops += [("norm", b) for b in range(sched.banks)]
    if cfg.mode == "mp":
        ops += [("good", 0, 3, 0), ("good", 0, 5, 1), ("good", 1, 7, 2)]
        got = run_ops(sched, ops)[-1][1]
        assert got["g"][:2] == [8, 7] and got["scores"][0] == [5, 0, 0]
    else:
        ops += [("logit", 0, 0, [4, 4], 0), ("logit", 0, 0, [9, 9], 1)]
        got = run_ops(sched, ops)[-1][1]
        assert got["scores"][0][:2] == [4, 4]


def test_refuses_non_schedule():
    with pytest.raises(TypeError, match="Schedule"):
        Accumulators(CONFIGS["mp"])


# ---------------------------------------------------------------- the cosine engine
COS = {
    # two samples of three labels: 6 copies, a layer of 7 units over 3 tiles of 3 lanes
    "cos": AccelConfig(inputs=9, classes=3, layers=(7, 5), rows=2, cols=3, abits=4, wbits=4, afrac=2, batch=2,
                       goodness="cos", lfrac=10),
    "cos_mask": AccelConfig(inputs=9, classes=3, layers=(7, 5), rows=2, cols=3, abits=4, wbits=4, afrac=2,
                            goodness="cos", lfrac=10, score_mask=(0, 1)),
}


@pytest.mark.parametrize("name", sorted(COS))
def test_cos_steps_score_the_cosine_goodness(name):
    """Cosine engine: a layer's rows (goodness and dot beats, as stage D sends them), then a
    COS step per copy: each copy's score is ``intops.cos_goodness`` of its activations
    exactly ``Latencies.cos`` cycles after its step (unchanged the cycle before), its
    factors those of ``rsqrt(g)``, and ``g`` and ``d`` are cleared for the next layer
    (a second layer's score adds on top); a layer the mask leaves out adds nothing."""
    import numpy as np

    from ffaccel.config import COS_RBITS
    from ffaccel.fixedpoint import cos_reference
    from ffaccel.model.intops import cos_goodness

    cfg = COS[name]
    sched = schedule(cfg)
    dut = Accumulators(sched)
    rng = np.random.default_rng(5)
    nb, C = sched.banks, cfg.cols
    hs = [rng.integers(0, cfg.amax + 1, size=(nb, n)) for n in cfg.layers]
    hs[0][1] = 0                                  # a copy whose goodness is 0
    want = np.zeros(nb, dtype=np.int64)
    seen = []

    async def bench(ctx):
        ctx.set(dut.score_mask, sum(1 << i for i, v in enumerate(cfg.scored) if v))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for layer, h in enumerate(hs):
            r = cos_reference(layer, h.shape[1], COS_RBITS)
            for b in range(nb):
                for t in range(0, h.shape[1], C):
                    seg = h[b, t:t + C]
                    ctx.set(dut.goodness, {"valid": 1, "cp": b, "layer": layer, "sum": int((seg * seg).sum()),
                                           "dot": int((seg * r[t:t + C]).sum())})
                    await ctx.tick()
            ctx.set(dut.goodness, {"valid": 0, "cp": 0, "layer": 0, "sum": 0, "dot": 0})
            g = (h * h).sum(axis=1)
            inc = cos_goodness(cfg, h, g, layer) if cfg.scored[layer] else np.zeros(nb, dtype=np.int64)
            before = want.copy()
            want[:] += inc
            for step in range(nb + sched.latency.cos):
                b = step
                ctx.set(dut.norm, {"en": int(b < nb), "idx": min(b, nb - 1), "cos": 1, "layer": layer})
                await ctx.tick()
                # the copy stepped latency.cos - 1 cycles ago is still old, the one before is in
                for cp in range(nb):
                    age = step - cp + 1                   # cycles since the copy's step ended
                    ctx.set(dut.score_row, sched.sample_of(cp))
                    got = ctx.get(dut.scores[sched.label_of(cp)])
                    if age >= sched.latency.cos:
                        assert got == want[cp], (layer, cp, step)
                    elif age >= 0:
                        assert got == before[cp], (layer, cp, step)
            for cp in range(nb):
                ctx.set(dut.sel, cp)
                seen.append(((ctx.get(dut.m), ctx.get(dut.s)), rs(cfg, int(g[cp]))))
                assert ctx.get(dut.g[cp]) == 0 and ctx.get(dut.d[cp]) == 0

    run(dut, bench)
    assert all(a == b for a, b in seen)
    assert (want != 0).any() or not any(cfg.scored)
