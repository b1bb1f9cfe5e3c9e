"""RandomSource unit (BSFF): the words it gives each drained row equal
``fixedpoint.bsff_hash`` of the row's position, ``LATENCY`` cycles later (one more with
``fpga_regs``), the epoch steps once per ``start``; the hash's statistics, the sigmoid
table, and the BSFF config rules."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig, ConfigError
from ffaccel.fixedpoint import (BSFF_HASH_ROUNDS, bsff_epoch_states, bsff_hash, bsff_key, bsff_sigmoid_table,
                                xorshift32)
from ffaccel.hw.rng import RandomSource
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.schedule import schedule
from ffaccel.workload import spread_thresholds


def _cfg(**kw) -> AccelConfig:
    base = dict(inputs=12, layers=(7, 5), classes=3, rows=2, cols=3, abits=1, afrac=4, wbits=4,
                neuron="bsff", bsff_seed=12345)
    base.update(kw)
    return AccelConfig(**base)


@pytest.mark.parametrize("fpga_regs", [False, True])
def test_words_equal_the_golden_hash(fpga_regs):
    """Two inferences (a start each) of six random rows, back to back within one."""
    cfg = _cfg(fpga_regs=fpga_regs)
    dut = RandomSource(schedule(cfg))
    lat = RandomSource.LATENCY + (1 if fpga_regs else 0)
    rng = np.random.default_rng(0)
    phases = [[(int(rng.integers(0, 2)), int(rng.integers(0, 6)), int(rng.integers(0, 3))) for _ in range(6)]
              for _ in range(2)]
    seen = [[], []]

    async def bench(ctx):
        for ph, rows in enumerate(phases):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for i in range(len(rows) + lat - 1):
                if i < len(rows):
                    layer, cp, tile = rows[i]
                    ctx.set(dut.row, {"valid": 1, "layer": layer, "cp": cp, "tile": tile})
                else:
                    ctx.set(dut.row, {"valid": 0, "layer": 0, "cp": 0, "tile": 0})
                await ctx.tick()
                if i >= lat - 1:
                    seen[ph].append([ctx.get(dut.u[c]) for c in range(cfg.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for epoch, rows, got in zip(bsff_epoch_states(cfg.bsff_seed, 2), phases, seen):
        assert len(got) == len(rows)
        for (layer, cp, tile), words in zip(rows, got):
            want = bsff_hash(bsff_key(epoch, layer, cp), np.arange(cfg.cols) + tile * cfg.cols)
            assert words == [int(v) for v in want], (layer, cp, tile)


def test_epoch_states_are_xorshift_from_the_seed():
    assert bsff_epoch_states(7, 3) == [xorshift32(7), xorshift32(xorshift32(7)),
                                       xorshift32(xorshift32(xorshift32(7)))]
    with pytest.raises(ValueError, match="seed 0"):
        bsff_epoch_states(0, 1)


def test_hash_bytes_are_uniform_and_independent():
    """The bytes a unit compares are uniform (chi-square over 256 bins) and not correlated
    between neighbouring neurons, copies, layers or inferences."""
    n = np.arange(100_000)
    e = bsff_epoch_states(1, 2)
    u = bsff_hash(bsff_key(e[0], 0, 0), n)
    by = (u & np.uint64(255)).astype(np.int64)
    cnt = np.bincount(by, minlength=256)
    chi2 = float(((cnt - len(n) / 256) ** 2 / (len(n) / 256)).sum())
    assert chi2 < 330                         # 255 degrees of freedom: p ~ 0.001 at 330
    assert abs(np.corrcoef(by[:-1], by[1:])[0, 1]) < 0.02
    for other in (bsff_key(e[0], 0, 1), bsff_key(e[0], 1, 0), bsff_key(e[1], 0, 0)):
        b2 = (bsff_hash(other, n) & np.uint64(255)).astype(np.int64)
        assert abs(np.corrcoef(by, b2)[0, 1]) < 0.05
    assert BSFF_HASH_ROUNDS == 5


def test_sigmoid_table_ends_never_and_always_fire():
    t = bsff_sigmoid_table(4)
    assert len(t) == 256 and t[0] == 0 and t[-1] == 256 and t[128] == 128
    assert all(a <= b for a, b in zip(t, t[1:]))
    for afrac in range(0, 9):
        assert bsff_sigmoid_table(afrac)[0] == 0    # padding columns (bias at the lane's minimum) never fire


def test_golden_counts_follow_the_firing_probability():
    """With every pre-activation at z, a unit fires about sigmoid(z) of the time; the
    counts of k tied units lie in 0..k."""
    cfg = _cfg(inputs=40, layers=(400,), classes=3, bsff_k=3, abits=2, mode="op", rows=4)
    rng = np.random.default_rng(1)
    qm = QuantModel.random(cfg, rng)
    qm.weights[0][:] = 0
    qm.biases[0][:] = np.array([-16, 0, 16])          # z = -1, 0, +1 at afrac 4
    h = GoldenModel(qm).run(rng.integers(0, 4, size=(40, 40)), probe=True).activations[0]
    assert h.min() >= 0 and h.max() <= 3
    p = 1 / (1 + np.exp(-np.array([-1.0, 0.0, 1.0])))
    assert abs(h.mean() - p.sum()) < 0.02


def test_same_position_same_bits_whatever_the_exits():
    """A full-depth run and an early-exit run draw the same bits for the layers both run."""
    cfg = _cfg(layers=(6, 6, 6), exit_policy="max")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, size=(12, cfg.inputs))
    qm = spread_thresholds(QuantModel.random(cfg, rng), x)
    a = GoldenModel(qm).run(x, probe=True)
    b = GoldenModel(qm).run(x, probe=True, early_exit=True)
    assert len(set(b.exit_layer.tolist())) > 1
    for layer in range(3):
        live = b.exit_layer > layer
        assert (a.activations[layer][live] == b.activations[layer][live]).all()
    # another inference (epoch) draws other bits
    c = GoldenModel(qm).run(x, probe=True, epoch=1)
    assert (c.activations[0] != a.activations[0]).any()


@pytest.mark.parametrize("kw,fragment", [
    ({"abits": 2}, "needs abits=1"),
    ({"bsff_k": 3, "abits": 1}, "needs abits=2"),
    ({"bsff_k": 5, "abits": 3}, "bsff_k=5 is out of range"),
    ({"bsff_seed": 0}, "bsff_seed=0 is out of range"),
    ({"afrac": 9}, "0..8 fractional bits"),
    ({"neuron": "relu", "bsff_k": 2, "abits": 2}, "needs neuron='bsff'"),
    ({"neuron": "sigmoid"}, "neuron='sigmoid' is not allowed"),
])
def test_bad_bsff_configs_are_refused(kw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        _cfg(**kw)


def test_relu_configs_serialise_as_before():
    """The BSFF fields are left out of a ReLU config's JSON, so its hash (and every cache
    and store keyed on it) is what it was before they existed."""
    relu = AccelConfig()
    assert "neuron" not in relu.to_dict() and "bsff_k" not in relu.to_dict()
    b = _cfg()
    assert b.to_dict()["neuron"] == "bsff" and AccelConfig.from_dict(b.to_dict()) == b
    assert b.hardware_hash() != b.replace(bsff_seed=2).hardware_hash()


def test_rng_refuses_relu():
    with pytest.raises(ValueError, match="no stochastic units"):
        RandomSource(schedule(AccelConfig(inputs=12, layers=(4,), classes=3)))
