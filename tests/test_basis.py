"""LLSBasis unit: the on-chip weights of an LLS head equal ``model.lls.lls_basis`` (the
golden model's heads), lane by lane, tile by tile, restarted by ``first``; and the LLS
config, model and memory-map rules around it."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig, ConfigError
from ffaccel.fixedpoint import LLS_PHASE_BITS, lls_increments, lls_sin_table
from ffaccel.hw.basis import LLSBasis
from ffaccel.model.golden import QuantModel
from ffaccel.model.lls import lls_basis
from ffaccel.schedule import schedule


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _drive(cfg, layer: int):
    """Stream every tile of head ``layer`` with idle cycles between inputs; the lanes seen
    one cycle after each issued input, as (classes padded to tiles*cols, n)."""
    s = schedule(cfg)
    dut = LLSBasis(s)
    h = s.head_passes[layer]
    got = np.zeros((h.tiles * cfg.cols, h.n_in), dtype=np.int64)

    async def bench(ctx):
        for t in range(h.tiles):
            for k in range(h.n_in):
                ctx.set(dut.cmd, {"valid": 1, "first": int(k == 0), "last": int(k == h.n_in - 1), "k": k,
                                  "tag": {"tile": t, "layer": layer, "head": 1, "src": h.src}})
                await ctx.tick()
                ctx.set(dut.cmd, {"valid": 0, "tag": {"tile": t, "layer": layer, "head": 1}})
                for c in range(cfg.cols):
                    got[t * cfg.cols + c, k] = ctx.get(dut.w[c])
                await ctx.tick()                 # a bubble must not advance the phase
                for c in range(cfg.cols):
                    assert ctx.get(dut.w[c]) == got[t * cfg.cols + c, k]

    _run(dut, bench)
    return got


@pytest.mark.parametrize("head", ["lls-square", "lls"])
@pytest.mark.parametrize("classes,cols,n,wbits", [(10, 4, 9, 8), (3, 2, 5, 5), (7, 7, 12, 4), (2, 1, 3, 2)])
def test_generated_lanes_equal_the_golden_basis(head, classes, cols, n, wbits):
    cfg = AccelConfig(inputs=classes + 8, layers=(n, n + 1), classes=classes, rows=2, cols=cols, wbits=wbits,
                      abits=4, afrac=1, mode="op", exit_head=head)
    for layer in range(2):
        got = _drive(cfg, layer)
        want = lls_basis(cfg, cfg.layers[layer])
        assert (got[:classes] == want).all(), (got[:classes], want)
        assert (got[classes:] == 0).all()                     # padding lanes of the last tile


def test_basis_definition():
    """The integer basis: square = sign of the phase's half-period, sin = table of the
    phase's top bits; phases accumulate the class increment input by input."""
    cfg = AccelConfig(inputs=20, layers=(40,), classes=4, mode="op", exit_head="lls-square")
    inc = lls_increments(4)
    ph = [(j * inc[2]) % (1 << LLS_PHASE_BITS) for j in range(40)]
    assert lls_basis(cfg, 40)[2].tolist() == [1 if p < 1 << (LLS_PHASE_BITS - 1) else -1 for p in ph]
    sin = cfg.replace(exit_head="lls")
    table = lls_sin_table(sin.lls_amplitude)
    assert lls_basis(sin, 40)[2].tolist() == [table[p >> (LLS_PHASE_BITS - 6)] for p in ph]
    # f = linspace(50, 512, classes) radians per index, every class
    f = np.linspace(50, 512, 4)
    assert np.allclose(np.asarray(inc) / 2 ** LLS_PHASE_BITS, (f / (2 * np.pi)) % 1, atol=2 ** -LLS_PHASE_BITS)


@pytest.mark.parametrize("n", [500, 2000])
def test_integer_basis_follows_lls_sin_and_its_sign(n):
    """Against LLS's own definition on 10 classes: the square basis is sign(sin(f_c j)) on
    all but a few entries next to zero crossings, the sin basis correlates with sin(f_c j)."""
    classes = 10
    f = np.linspace(50, 512, classes)
    true = np.sin(f[:, None] * np.arange(n)[None, :])
    sq = lls_basis(AccelConfig(inputs=20, layers=(n,), classes=classes, mode="op", exit_head="lls-square"), n)
    agree = (sq == np.where(true >= 0, 1, -1)).mean()
    assert agree > 0.99, agree
    sn = lls_basis(AccelConfig(inputs=20, layers=(n,), classes=classes, mode="op", exit_head="lls"), n)
    corr = min(np.corrcoef(sn[c], true[c])[0, 1] for c in range(classes))
    assert corr > 0.99, corr


def test_lls_config_rules():
    with pytest.raises(ConfigError, match="needs mode='op'"):
        AccelConfig(mode="mp", exit_head="lls")
    with pytest.raises(ConfigError, match="exit_head='sine'"):
        AccelConfig(mode="op", exit_head="sine")
    sq = AccelConfig(inputs=20, layers=(8, 8), classes=3, mode="op", exit_head="lls-square")
    assert sq.hfrac == (0, 0) and sq.replace(exit_head="lls").hfrac == (7, 7)
    with pytest.raises(ConfigError, match="fixed weights"):
        AccelConfig(inputs=20, layers=(8, 8), classes=3, mode="op", exit_head="lls-square", hfrac=(3, 3))


def test_lls_heads_store_nothing_and_models_must_be_the_basis():
    cfg = AccelConfig(inputs=20, layers=(8, 6), classes=3, cols=4, mode="op", exit_head="lls")
    s = schedule(cfg)
    learned = schedule(cfg.replace(exit_head="learned", hfrac=()))
    assert s.memory.weight_words == 2 * 20 + 2 * 8 < learned.memory.weight_words
    assert s.memory.bias_words == 2 + 2 < learned.memory.bias_words
    assert all(h.generated and not h.biased for h in s.head_passes)
    qm = QuantModel.random(cfg, np.random.default_rng(0))
    bad = [h.copy() for h in qm.heads]
    bad[1][0, 0] += 1
    with pytest.raises(ConfigError, match="not the lls basis"):
        QuantModel(cfg, qm.weights, qm.biases, bad, qm.head_biases)
    with pytest.raises(ConfigError, match="not the lls basis"):
        QuantModel(cfg, qm.weights, qm.biases, qm.heads, [hb + 1 for hb in qm.head_biases])


def test_basis_unit_refuses_learned_heads():
    with pytest.raises(ValueError, match="learned"):
        LLSBasis(schedule(AccelConfig(inputs=20, layers=(8,), classes=3, mode="op")))


@pytest.mark.parametrize("args,fragment", [
    (("--mode", "mp", "--exit-head", "lls"), "needs mode='op'"),
    (("--mode", "op", "--exit-head", "cosine"), "exit_head='cosine'"),
])
def test_cli_refuses_bad_exit_heads_in_one_line(cli, tmp_path, args, fragment):
    r = cli("gen", "--layers", "2x8", "--inputs", "20", "--classes", "3", *args, "-o", str(tmp_path / "rtl"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rtl").exists()


def test_gen_writes_no_head_images_for_lls(cli, tmp_path):
    cfg = AccelConfig(inputs=20, layers=(8, 6), classes=3, cols=4, mode="op", exit_head="lls-square")
    from ffaccel.hw.generate import generate
    files, man = generate(cfg, QuantModel.random(cfg, np.random.default_rng(1)))
    assert not any(n.startswith("head") for n in files)
    assert len(files["weights.hex"].split()) == man["memory_map"]["weight_words"] == 2 * 20 + 2 * 8
    assert all(p["generated"] for p in man["schedule"]["passes"] if p["kind"] == "head")


def test_lls_training_learns_for_the_fixed_basis(digits):
    """``fit`` trains LLS layers with LLS's local loss; the heads stay the basis (nothing
    stored, nothing trained) and the integer model exits on their logits."""
    from ffaccel.model.golden import GoldenModel
    from ffaccel.model.training import fit
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(32, 32), mode="op",
                      exit_head="lls-square")
    from ffaccel.model.recipe import TrainRecipe
    net, qcfg, meta = fit(digits, cfg, TrainRecipe(epochs=4, min_steps=0, batch=32, hard_negatives=0.0),
                          progress=False)
    assert qcfg.exit_head == "lls-square" and qcfg.hfrac == (0, 0)
    for h, n in zip(net.heads, cfg.layers):
        assert torch_equal(h.weight, lls_basis(cfg, n)) and not h.weight.requires_grad
    assert meta["integer"]["accuracy_full"] > 0.5            # chance is 0.1
    from ffaccel.model.embed import input_codes
    from ffaccel.model.quant import quantize
    qm = quantize(net, qcfg)
    assert GoldenModel(qm).run(input_codes(digits.x_test[:20], qcfg)).scores.shape == (20, 10)


def torch_equal(w, basis) -> bool:
    return bool((w.detach().numpy() * 2.0 ** 0 == basis).all())


def _lls_sched():
    return schedule(AccelConfig(inputs=12, layers=(6, 5), classes=5, rows=2, cols=3, abits=4, wbits=5,
                                afrac=1, mode="op", exit_head="lls"))


def test_issue_takes_generated_lanes_and_reads_no_weights_for_lls_heads():
    from ffaccel.hw.issue import Issue
    s = _lls_sched()
    dut = Issue(s)
    seen = []

    async def bench(ctx):
        ctx.set(dut.nrows, 2)
        ctx.set(dut.wmem.data, 0b10101_01010_00111)           # lanes 7, 10, -11 (5-bit)
        for c, v in enumerate((3, -4, 9)):
            ctx.set(dut.gen_w[c], v)
        for head in (0, 1):
            ctx.set(dut.cmd, {"valid": 1, "first": 1, "last": 0, "k": 0,
                              "tag": {"layer": 1, "head": head, "tile": 0, "src": 1}})
            seen.append(("en", head, ctx.get(dut.wmem.en)))
            await ctx.tick()                                # p1: the read data arrives
            ctx.set(dut.cmd, {"valid": 0})
            await ctx.tick()                                # registered; the lanes are selected
            await ctx.tick()                                # registered at the array edge
            seen.append(("w", head, [ctx.get(dut.w[c]) for c in range(3)]))

    _run(dut, bench)
    assert seen == [("en", 0, 1), ("w", 0, [7, 10, -11]), ("en", 1, 0), ("w", 1, [3, -4, 9])]


def test_drain_reads_no_bias_for_lls_heads():
    from ffaccel.hw.drain import Drain
    s = _lls_sched()
    dut = Drain(s)
    seen = []

    async def bench(ctx):
        ctx.set(dut.nrows, 2)
        ctx.set(dut.bmem.data, (1 << s.cfg.bias_word_bits) - 1)      # junk a read would return
        for head in (0, 1):
            ctx.set(dut.p1, {"valid": 1, "last": 1, "tag": {"layer": 0, "head": head, "tile": 0}})
            await ctx.tick()
            ctx.set(dut.p1, {"valid": 0})
            for _ in range(s.latency.tile_go - 2):             # the tile's last accumulate
                await ctx.tick()
            seen.append(("en", head, ctx.get(dut.bmem.en)))
            await ctx.tick()                                   # go: row 0
            for _ in range(s.latency.select):                  # through stage A
                await ctx.tick()
            seen.append(("bias", head, ctx.get(dut.row.bias)))
            for _ in range(4):
                await ctx.tick()

    _run(dut, bench)
    assert seen == [("en", 0, 1), ("bias", 0, (1 << s.cfg.bias_word_bits) - 1), ("en", 1, 0), ("bias", 1, 0)]
