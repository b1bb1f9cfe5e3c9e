"""Whole engine in the Amaranth simulator against the golden model, on random small configs
(sizes not multiples of the array, copy groups, both modes, label sharing on and off,
the PEs' operand copies on and off, exits forced at every layer). The cocotb benches (sim/) repeat this on Verilator/Icarus."""

import numpy as np
import pytest
from amaranth.hdl import Cat, Signal
from amaranth.sim import Simulator

from ffaccel.config import AccelConfig
from ffaccel.hw.actbanks import ActBanks
from ffaccel.hw.simtop import run_engine
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.perf.cycles import inference_cycles, unit_stream_lengths
from ffaccel.schedule import schedule
from ffaccel.sim.faults import FAULTS
from ffaccel.workload import informative_config, sensitivity, spread_thresholds


def _copies(inputs: int) -> bool:
    """The PEs' operand copies on about half the entries, from a value already drawn (a
    draw of its own would shift every later draw of the matrix)."""
    return inputs % 2 == 1


def _skip(classes: int) -> bool:
    """Zero skipping on about half the entries (from a value already drawn, as above)."""
    return classes % 2 == 0


def _batch(mode: str, rows: int, share: bool, layers: tuple) -> int:
    """MP batches of 1 to 3 samples (from values already drawn, as above); the shared
    layer 1 holds at most ``rows`` samples."""
    if mode != "mp":
        return 1
    b = 1 + sum(layers) % 3
    return min(b, rows) if share else b


def random_config(rng) -> AccelConfig:
    inputs = int(rng.integers(8, 24))
    classes = int(rng.integers(2, min(6, inputs - 1) + 1))
    layers = tuple(int(v) for v in rng.integers(1, 11, size=int(rng.integers(1, 4))))
    rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    abits, wbits = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    mode, policy = str(rng.choice(["mp", "op"])), str(rng.choice(["max", "margin", "none"]))
    share = bool(rng.integers(0, 2))
    return informative_config(
        rng, inputs=inputs, classes=classes, layers=layers, rows=rows, cols=cols, abits=abits, wbits=wbits,
        mode=mode, exit_policy=policy, label_share=share, fpga_regs=_copies(inputs), zero_skip=_skip(classes),
        batch=_batch(mode, rows, share, layers))


def random_lls_config(rng) -> AccelConfig:
    """An OP config with LLS heads (sin or square basis generated on chip)."""
    inputs = int(rng.integers(8, 24))
    classes = int(rng.integers(2, min(8, inputs - 1) + 1))
    return informative_config(
        rng, inputs=inputs, classes=classes,
        layers=tuple(int(v) for v in rng.integers(1, 11, size=int(rng.integers(2, 4)))),   # heads past layer 1
        rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 6)), abits=int(rng.integers(2, 7)),
        wbits=int(rng.integers(2, 7)), mode="op", exit_policy=str(rng.choice(["max", "margin", "none"])),
        exit_head=str(rng.choice(["lls", "lls-square"])), fpga_regs=_copies(inputs),
        zero_skip=_skip(classes))


def random_bsff_config(rng) -> AccelConfig:
    """A BSFF config: binary stochastic units, 1 to 4 tied per weight row (1, the binary
    datapath, twice as often), two or three layers, either mode."""
    inputs = int(rng.integers(8, 24))
    classes = int(rng.integers(2, min(6, inputs - 1) + 1))
    layers = tuple(int(v) for v in rng.integers(1, 11, size=int(rng.integers(2, 4))))
    rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    k = int(rng.choice([1, 1, 2, 3, 4]))
    mode, policy = str(rng.choice(["mp", "op"])), str(rng.choice(["max", "margin", "none"]))
    share = bool(rng.integers(0, 2))
    return informative_config(
        rng, inputs=inputs, classes=classes, layers=layers, rows=rows, cols=cols, abits=k.bit_length(),
        wbits=int(rng.integers(2, 7)), mode=mode, exit_policy=policy, label_share=share, neuron="bsff",
        bsff_k=k, bsff_seed=int(rng.integers(1, 2 ** 32)), fpga_regs=_copies(inputs),
        zero_skip=_skip(classes), batch=_batch(mode, rows, share, layers))


def random_cos_config(rng) -> AccelConfig:
    """An MP config with PhyLL's cosine goodness (the engine's COS phase): copy groups,
    batches, sharing, zero skipping and the operand copies drawn as above; a logit
    fraction that spreads the cosines (|cos| <= 1) over many codes (``informative_config``)."""
    inputs = int(rng.integers(8, 24))
    classes = int(rng.integers(2, min(6, inputs - 1) + 1))
    layers = tuple(int(v) for v in rng.integers(1, 11, size=int(rng.integers(2, 4))))   # COS before exits
    rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    share = bool(rng.integers(0, 2))
    cfg = informative_config(
        rng, inputs=inputs, classes=classes, layers=layers, rows=rows, cols=cols, abits=int(rng.integers(2, 7)),
        wbits=int(rng.integers(2, 7)), mode="mp", exit_policy=str(rng.choice(["max", "margin"])),
        label_share=share, fpga_regs=_copies(inputs), zero_skip=_skip(classes),
        batch=_batch("mp", rows, share, layers), goodness="cos")
    return cfg


def check(qm: QuantModel, x: np.ndarray, units: dict | None = None):
    cfg = qm.cfg
    gold = GoldenModel(qm).run(x, probe=True)
    batches = [x[s0:s0 + n] for s0, n in schedule(cfg).batches(len(x))]
    out, probes = run_engine(qm, batches, units=units)
    assert len(out) == len(x)
    for i, o in enumerate(out):
        assert (o.label, o.exit_layer, o.scores) == \
            (int(gold.label[i]), int(gold.exit_layer[i]), gold.scores[i].tolist()), (cfg, i)
    # contract 2: the cycle model equals the RTL's cycle counter, inference by inference
    s0 = 0
    for batch in batches:
        exits = gold.exit_layer[s0:s0 + len(batch)]
        kept = unit_stream_lengths(cfg, batch, [a[s0:s0 + len(batch)] for a in gold.activations], exits) \
            if cfg.zero_skip else None
        want = inference_cycles(cfg, int(exits.max()), len(batch), kept, exits)["total"]
        for i in range(s0, s0 + len(batch)):
            assert out[i].cycles == want, (cfg, i, out[i].cycles, want)
        s0 += len(batch)
    # results carry their sample's row in the batch
    s0 = 0
    for batch in batches:
        assert [out[i].row for i in range(s0, s0 + len(batch))] == list(range(len(batch))), (cfg, s0)
        s0 += len(batch)
    # activations: the probe beats arrive batch by batch; each batch emits one beat per
    # (visited layer, live copy, tile): MP copy b * classes + c is sample b's label copy c
    idx, s0 = 0, 0
    per = cfg.classes if cfg.mode == "mp" else 1
    for batch in batches:
        nb = len(batch)
        count = 0
        for layer in range(cfg.n_layers):
            tiles = -(-cfg.layers[layer] // cfg.cols)
            count += tiles * per * sum(1 for s in range(s0, s0 + nb) if layer < gold.exit_layer[s])
        for lay, cp, t, vals in probes[idx: idx + count]:
            s, copy = s0 + cp // per, cp % per
            n = cfg.layers[lay]
            lo, hi = t * cfg.cols, min(n, (t + 1) * cfg.cols)
            assert vals[: hi - lo] == gold.activations[lay][s, copy, lo:hi].tolist(), (cfg, s, lay, copy, t)
            assert all(v == 0 for v in vals[hi - lo:])
        idx += count
        s0 += nb
    assert idx == len(probes)


def random_case(seed: int):
    """(qm, x) of one random-matrix entry: a config whose activations depend on the input,
    thresholds spread so that samples exit at several layers (seeds from LLS_SEEDS on: OP
    with LLS heads)."""
    rng = np.random.default_rng(1000 + seed)
    for _ in range(20):                   # formats whose activations depend on the input
        cfg = random_bsff_config(rng) if seed in BSFF_SEEDS else random_cos_config(rng) if seed in COS_SEEDS \
            else random_lls_config(rng) if seed in LLS_SEEDS else random_config(rng)
        if seed in ABS_SEEDS:
            cfg = cfg.replace(neuron="abs")          # |z| units
        qm = QuantModel.random(cfg, rng)
        x = rng.integers(0, cfg.amax + 1, size=(5 if cfg.mode == "mp" else cfg.rows + 2, cfg.inputs))
        if cfg.zero_skip:                 # sparse inputs (a generator of its own: the draws above stay)
            x[np.random.default_rng(seed).random(x.shape) < 0.6] = 0
        x[0, cfg.classes:] = 0            # zero image goodness
        x[-1] = cfg.amax                  # saturation
        if sensitivity(qm, x) < 0.2:
            continue
        if cfg.n_layers > 1 and rng.random() < 0.4:       # some layers left out of the score
            mask = tuple(int(v) for v in rng.integers(0, 2, size=cfg.n_layers))
            if any(mask):
                qm = QuantModel(cfg.replace(score_mask=mask), qm.weights, qm.biases, qm.heads, qm.head_biases)
        qm = spread_thresholds(qm, x)
        exits = set(GoldenModel(qm).run(x).exit_layer.tolist())
        # samples must exit at more than one layer where the config can exit early
        if len(exits) > 1 or qm.cfg.decision_layer == 1 or cfg.exit_policy == "none":
            return qm, x
    raise AssertionError("no input-dependent config found")


SEEDS = range(50)
LLS_SEEDS = range(24, 32)
BSFF_SEEDS = range(32, 42)
COS_SEEDS = range(42, 48)
ABS_SEEDS = (46, 47, 48, 49)          # (two of them cosine configs)


#: entries the default run leaves to `-m slow` (it keeps 12 plain, 4 LLS, 5 BSFF, all cosine and |z|)
SLOW_SEEDS = set(range(12, 24)) | set(range(28, 32)) | set(range(37, 42))


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_SEEDS else s for s in SEEDS])
def test_engine_matches_golden_on_random_configs(seed):
    check(*random_case(seed))


class GarbageOnCollision(ActBanks):
    """Activation banks whose read of a word written in the same cycle returns all ones:
    what the memories' ``no_rw_check`` lets synthesis return."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        s = self.sched
        for st in range(2):
            for b in range(s.banks):
                hit = Signal(name=f"hit{st}_{b}")
                m.d.sync += hit.eq(self.ren[st][b] & Cat(
                    (w.set == st) & (w.bank == b) & (w.lanes != 0) & (w.addr == self.raddr)
                    for w in (self.load, self.drain)).any())
                with m.If(hit):                  # (the later assignment wins)
                    m.d.comb += self.rdata[st][b].eq(-1)
        return m


def test_garbage_banks_do_return_garbage_on_a_collision():
    """The substitute below is not a no-op: a read of the word being written reads ones."""
    qm, _ = random_case(0)
    dut = GarbageOnCollision(schedule(qm.cfg))
    seen = []

    async def bench(ctx):
        ctx.set(dut.load, {"lanes": 1, "set": 0, "bank": 0, "addr": 0, "data": 0})
        ctx.set(dut.raddr, 0)
        ctx.set(dut.ren[0][0], 1)
        await ctx.tick()
        seen.append(ctx.get(dut.rdata[0][0]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(1 << qm.cfg.act_word_bits) - 1]


@pytest.mark.parametrize("seed", range(0, 32, 3))
def test_engine_never_reads_a_word_being_written(seed):
    """Reads and writes of the activation banks never meet in a cycle, so the memories may
    leave that case undefined (``no_rw_check``): garbage there changes no result."""
    check(*random_case(seed), units={"actbanks": GarbageOnCollision})


def test_random_configs_exit_at_every_layer():
    """The random matrix above exercises early exits (golden model only, so this test
    stands on its own): both modes, and exits after layers 1 and 2."""
    seen = set()
    for seed in SEEDS:
        qm, x = random_case(seed)
        seen.update((qm.cfg.mode, int(e), qm.cfg.n_layers) for e in GoldenModel(qm).run(x).exit_layer)
    early = {(mode, e) for mode, e, n in seen if e < n}
    assert {m for m, _ in early} == {"mp", "op"}
    assert {e for _, e in early} >= {1, 2}


def test_random_configs_skip_layers_in_the_score():
    """Some entries of the random matrix leave layers out of the score: inner ones (no exit
    after them) and trailing ones (an earlier layer decides)."""
    cfgs = [random_case(seed)[0].cfg for seed in SEEDS]
    # (and both PE kinds, in both modes)
    assert {(c.mode, c.fpga_regs) for c in cfgs} == {(m, o) for m in ("mp", "op") for o in (False, True)}
    assert {(c.mode, c.zero_skip) for c in cfgs} == {(m, o) for m in ("mp", "op") for o in (False, True)}
    masks = [c for c in cfgs if c.score_mask]
    assert any(c.decision_layer < c.n_layers for c in masks)
    assert any(not all(c.scored[:c.decision_layer]) for c in masks)


@pytest.mark.parametrize("mask", [(1, 0, 1), (1, 1, 0), (0, 1, 1)])
def test_engine_score_mask(mask):
    """Score masks through the register file, accumulators and controller: the engine
    equals the golden model of the same mask, and the mask changes the outcome (the golden
    model without it differs), so a unit that ignores it is caught."""
    rng = np.random.default_rng(11)
    for mode in ("mp", "op"):
        cfg = informative_config(rng, inputs=16, classes=4, layers=(7, 6, 5), rows=3, cols=3, abits=5,
                                 wbits=5, mode=mode, exit_policy="max", label_share=True)
        qm = QuantModel.random(cfg, rng)
        x = rng.integers(0, cfg.amax + 1, size=(5 if mode == "mp" else 5, cfg.inputs))
        qm = spread_thresholds(QuantModel(cfg.replace(score_mask=mask), qm.weights, qm.biases, qm.heads,
                                          qm.head_biases), x)
        plain = GoldenModel(QuantModel(qm.cfg.replace(score_mask=()), qm.weights, qm.biases, qm.heads,
                                       qm.head_biases)).run(x)
        masked = GoldenModel(qm).run(x)
        assert (plain.scores != masked.scores).any() or (plain.exit_layer != masked.exit_layer).any()
        assert masked.exit_layer.max() <= qm.cfg.decision_layer
        check(qm, x)


def test_engine_default_shape_small_layers():
    """The default 10 x 16 array with MP label sharing on a small net."""
    rng = np.random.default_rng(7)
    cfg = AccelConfig(inputs=40, layers=(20, 17, 9))
    qm = QuantModel.random(cfg, rng)
    x = rng.integers(0, 256, size=(3, 40))
    check(spread_thresholds(qm, x), x)


@pytest.mark.parametrize("fault", ["cos_ref_lane", "cos_rounding"])
def test_engine_catches_a_broken_cosine_unit(fault):
    """The cosine entries of the matrix catch a wrong reference lane in stage D and a
    rounding dropped from the COS pipeline (one entry is enough for either)."""
    qm, x = random_case(COS_SEEDS[0])
    with pytest.raises(AssertionError):
        check(qm, x, units=FAULTS[fault])
