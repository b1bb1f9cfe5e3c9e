"""Exit comparator (Amaranth simulator) against the golden model's exit rule."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.hw.exitcmp import ExitCmp
from ffaccel.model.exits import fires


@pytest.mark.parametrize("policy", ["max", "margin", "none"])
@pytest.mark.parametrize("n,bits", [(10, 30), (2, 5), (3, 8)])
def test_exit_comparator_matches_golden_rule(policy, n, bits):
    dut = ExitCmp(n, bits, policy)
    rng = np.random.default_rng(n * bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    cases = []
    for _ in range(400):
        kind = rng.integers(0, 3)
        if kind == 0:       # ties everywhere
            sc = rng.integers(lo, hi + 1, size=2)[rng.integers(0, 2, size=n)]
        elif kind == 1:     # extremes
            sc = rng.choice([lo, hi, 0, -1], size=n)
        else:
            sc = rng.integers(lo, hi + 1, size=n)
        cases.append((sc.astype(np.int64), int(rng.integers(lo, hi + 1)), bool(rng.integers(0, 4) == 0)))
    got = []

    async def bench(ctx):
        for sc, t, last in cases:
            for i, v in enumerate(sc.tolist()):
                ctx.set(dut.scores[i], v)
            ctx.set(dut.threshold, t)
            ctx.set(dut.last, last)
            got.append((ctx.get(dut.label), ctx.get(dut.fire), ctx.get(dut.top1), ctx.get(dut.top2)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (sc, t, last), (label, fire, top1, top2) in zip(cases, got):
        assert label == int(np.argmax(sc))                       # lowest index wins ties
        s = np.sort(sc)
        assert (top1, top2) == (int(s[-1]), int(s[-2]))
        n_layers = 3
        layer = n_layers - 1 if last else 0
        assert bool(fire) == bool(fires(sc[None, :], layer, (True,) * n_layers, policy, [t, t])[0])


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_exit_comparator_validates():
    with pytest.raises(ValueError, match="policy"):
        ExitCmp(10, 30, "first")
    with pytest.raises(ValueError, match="n=1"):
        ExitCmp(1, 30, "max")
