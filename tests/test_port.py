"""The external-layer port (physical layers, issue #19) in the whole engine, Amaranth
simulator: P is a test process that checks every block input the port sends against the
golden model's (layer 1: the embedded sample; later: the previous layer's activations)
and answers with the golden model's recorded response. The engine equals the golden
model bit for bit (labels, exit layers, scores) with P in front of layer 1 or between
layers, with and without concat, MP (batches, copy groups, the cosine engine) and OP, and
with P stalling the port and answering after random latencies; with a P of fixed latency
the RTL's cycle counter equals the cycle model. The schedule's port plan (input order,
weights, bank depth) and two injected port faults are checked too."""

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.hw.simtop import run_engine
from ffaccel.model.embed import embed_all, embed_neutral
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.perf.cycles import inference_cycles
from ffaccel.schedule import schedule
from ffaccel.sim.faults import FAULTS
from ffaccel.workload import informative_config, spread_thresholds

CASES = {
    # P in front of every layer (layer 1: the embedded sample goes out), concat: [P(u), u]
    "mp_first_concat": dict(mode="mp", physical="random:seed=3,out=9,concat=1", inputs=14, layers=(7, 6)),
    "op_first_concat": dict(mode="op", physical="random:seed=3,out=9,concat=1", inputs=14, layers=(7, 6)),
    # a compressive P in front of layer 1 (the layer reads P's answer alone)
    "mp_first_compress": dict(mode="mp", physical="random:seed=2,out=8,act=abs", inputs=14, layers=(7, 6)),
    # P between layers, the cosine engine (COS, then the port, then NORM)
    "mp_between_cos": dict(mode="mp", physical="random:seed=1,out=5,at=2", inputs=13, layers=(7, 6, 5),
                           goodness="cos"),
    "op_between_concat": dict(mode="op", physical="random:seed=4,out=4,concat=1,at=2", inputs=12,
                              layers=(6, 5, 4)),
    # MP batches of two samples: six label copies over three copy groups of two rows;
    # the FPGA registers
    "mp_batch_groups": dict(mode="mp", physical="random:seed=5,out=7,concat=1,at=1-2", inputs=15, layers=(6, 5),
                            batch=2, fpga_regs=True),
}


def case(name: str, seed: int = 1):
    """(qm, x, responses, golden result): weights drawn from ``seed``; P's answers recorded
    once (noise included) and replayed everywhere; thresholds spread so samples exit at
    several layers."""
    for k in range(10):                                 # the first draw that exits at several layers
        rng = np.random.default_rng(seed + 100 * k)
        cfg = informative_config(rng, classes=3, rows=2, cols=3, abits=5, wbits=4, exit_policy="max",
                                 label_share=False, **CASES[name])
        qm = QuantModel.random(cfg, rng)                # (with the config's P)
        x = rng.integers(0, cfg.amax + 1, size=(5, cfg.inputs))
        x[0, cfg.classes:] = 0                          # zero image goodness
        x[-1] = cfg.amax                                # saturated
        responses = GoldenModel(qm).run(x).responses
        qm = spread_thresholds(qm, x, responses)
        gold = GoldenModel(qm).run(x, probe=True, responses=responses)
        if len(set(gold.exit_layer.tolist())) > 1:
            return qm, x, gold
    raise AssertionError(f"no draw of {name} exits at several layers")


def engine_run(qm, x, gold, **kw):
    """Run the engine with a P that checks what it gets and answers from ``gold``."""
    cfg = qm.cfg
    batches = schedule(cfg).batches(len(x))
    calls = []

    def P(bno, layer, copy, u):
        s0 = batches[bno][0]
        smp, lab = (s0 + copy // cfg.classes, copy % cfg.classes) if cfg.mode == "mp" else (s0 + copy, 0)
        if layer == 0:
            want = embed_all(x, cfg)[smp, lab] if cfg.mode == "mp" else embed_neutral(x, cfg)[smp]
        else:
            want = gold.activations[layer - 1][smp, lab]
        assert list(u) == want.tolist(), f"P got the wrong block input (layer {layer + 1}, copy {copy})"
        assert layer < gold.exit_layer[smp], "an exited sample went through P"
        calls.append((smp, lab, layer))
        return gold.responses[layer][smp, lab]

    out, _ = run_engine(qm, [x[s0:s0 + n] for s0, n in batches], physical=P, **kw)
    return out, calls


def check_results(qm, gold, out):
    for i, o in enumerate(out):
        assert (o.label, o.exit_layer, o.scores) == \
            (int(gold.label[i]), int(gold.exit_layer[i]), gold.scores[i].tolist()), (qm.cfg.physical, i)


@pytest.mark.parametrize("name", sorted(CASES))
def test_engine_with_a_port_matches_golden_and_the_cycle_model(name):
    qm, x, gold = case(name)
    cfg = qm.cfg
    for latency in ((1,) if sorted(CASES).index(name) % 2 else (9,)):       # (both, over the cases)
        out, calls = engine_run(qm, x, gold, port_latency=latency)
        check_results(qm, gold, out)
        # every live copy went through P once per physical layer it reached
        want = {(s, c, l) for s in range(len(x)) for c in range(cfg.copies) for l in range(cfg.n_layers)
                if cfg.physical_at[l] and l < gold.exit_layer[s]}
        assert sorted(calls) == sorted(want)
        s0 = 0
        for s0, n in schedule(cfg).batches(len(x)):
            exits = gold.exit_layer[s0:s0 + n]
            c = inference_cycles(cfg.replace(port_latency=latency), int(exits.max()), n, None, exits)["total"]
            assert [o.cycles for o in out[s0:s0 + n]] == [c] * n, (name, latency)


@pytest.mark.parametrize("name", ["mp_batch_groups", "op_first_concat"])
def test_a_stalling_p_with_random_latency_changes_no_result(name):
    qm, x, gold = case(name, seed=2)
    out, _ = engine_run(qm, x, gold, port_stall=0.35, seed=7)
    check_results(qm, gold, out)
    fixed, _ = engine_run(qm, x, gold)
    assert sum(o.cycles for o in out) > sum(o.cycles for o in fixed)       # the stalls did happen


@pytest.mark.parametrize("fault", ["port_answer_addr", "port_no_label"])
def test_a_broken_port_is_caught(fault):
    qm, x, gold = case("mp_first_concat")
    with pytest.raises(AssertionError):
        out, _ = engine_run(qm, x, gold, units=FAULTS[fault])
        check_results(qm, gold, out)


def test_port_plan_orders_the_inputs_and_weights():
    cfg = AccelConfig(inputs=10, layers=(5, 6), classes=3, rows=2, cols=4, physical="random:out=6,concat=1")
    s = schedule(cfg)
    p = s.ports[0]
    # [u (10), p (6)] for the layer's [p, u]; p from word 3 of the bank: a gap of 2 lanes
    assert (p.out_words, p.in_words, p.pbase) == (3, 2, 3)
    assert p.input_order().tolist() == list(range(6, 16)) + list(range(6))
    w = np.arange(5 * 16).reshape(5, 16)
    ws = s.stream_weights(0, w)
    assert (ws[:, :10] == w[:, 6:]).all() and (ws[:, 10:] == w[:, :6]).all()
    lp = s.layer_passes[0]
    assert (lp.n_in, lp.image_end, lp.gap_at, lp.gap) == (16, 10, 10, 2)
    assert [lp.position(k) for k in (9, 10, 15)] == [9, 12, 17]
    assert s.bank_depth == 5                             # u's 3 words, then P's 2
    # without concat the pass reads P's answer alone, from word pbase
    s2 = schedule(cfg.replace(physical="random:out=6"))
    assert (s2.layer_passes[0].n_in, s2.layer_passes[0].act_base, s2.layer_passes[0].image_end) == (6, 3, 0)
    assert [ph for ph, _ in s2.layer_phases(0)][:3] == ["port", "norm", "stream"]
    # the port phase: each live copy's words out and in, P's latency, 3 fixed cycles; + 1
    assert s2.port_cycles(0, live=[0]) == 3 * (3 + 2 + cfg.port_latency + 3) + 1


def test_physical_configs_refuse_zero_skipping():
    from ffaccel.config import ConfigError
    with pytest.raises(ConfigError, match="zero skipping"):
        AccelConfig(inputs=10, layers=(5,), classes=3, physical="random:", zero_skip=True)


@pytest.mark.parametrize("name", ["mp_first_concat", "op_first_concat"])
def test_activity_model_matches_the_rtl_with_a_port(name, tmp_path):
    """The activity model's toggles, PE operations and cycles against the RTL's VCD with P
    in front of every layer (the port's bank reads and answer writes; a bank that holds both
    a sample's image and its copy's answer), exact but for the load stream's write data
    (the model assumes an unstalled stream, as for every config: within 5%)."""
    from ffaccel.perf.activity import COMPONENTS, Counters, PerfModel
    from ffaccel.perf.vcdtoggles import count_toggles
    qm, x, gold = case(name)
    cfg = qm.cfg
    batches = schedule(cfg).batches(len(x))
    vcd = tmp_path / "run.vcd"
    out, _ = run_engine(qm, [x[s0:s0 + n] for s0, n in batches], vcd=str(vcd),
                        physical=lambda b, layer, cp, u: gold.responses[layer][
                            (batches[b][0] + cp // cfg.classes, cp % cfg.classes) if cfg.mode == "mp"
                            else (batches[b][0] + cp, 0)])
    pm, tot = PerfModel(qm), Counters()
    for s0, n in batches:
        idx = slice(s0, s0 + n)
        resp = [None if r is None else r[idx] for r in gold.responses]
        acts = [a[idx] if cfg.mode == "mp" else a[idx, 0, :] for a in gold.activations]
        c = (pm.mp_batch if cfg.mode == "mp" else pm.op_batch)(x[idx], acts, gold.exit_layer[idx], responses=resp)
        assert (c.pe_ops, c.cycles) == (out[s0].macs, out[s0].cycles)
        assert c.port_copies == sum(cfg.copies * sum(cfg.physical_at[:gold.exit_layer[s]]) for s in range(s0, s0 + n))
        tot.add(c)
    got = count_toggles(vcd)
    for comp in COMPONENTS:
        want = tot.toggles[comp]
        tol = 0.05 * got.get(comp, 0) if comp == "act_write" else 0
        assert abs(got.get(comp, 0) - want) <= tol, (comp, got.get(comp, 0), want)


def test_energy_prices_p_and_the_converters():
    """The ``physical`` component: P's own energy per copy (``physical_pj``) and a
    conversion per value across the port (``converter_fj_step`` x 2**abits)."""
    from ffaccel.energy.coeffs import load_coeffs
    from ffaccel.energy.model import EnergyModel
    cfg = AccelConfig(inputs=20, layers=(8, 6), classes=3, rows=2, cols=3, physical="random:out=10",
                      physical_pj=40.0)
    c = load_coeffs(None, cfg.tech)
    em = EnergyModel(cfg, c)
    cnt = {k: 0 for k in ("pe_ops", "weight_reads", "bias_reads", "act_reads", "act_writes", "drained_rows",
                          "layer_rows")}
    cnt.update(port_copies=6, port_values=6 * 30)
    e = em.layer(0, dict.fromkeys(("weight_bus", "act_read", "array_x", "pe_operand", "pe_product", "pe_acc",
                                   "pe_shadow", "act_write"), 0), cnt, 100)
    conv = c["converter_fj_step"] * 2 ** cfg.abits / 1000
    assert e["physical"] == pytest.approx(6 * 40.0 + 180 * conv)
    assert conv == pytest.approx(2.56)                  # 8 bits at 10 fJ per step
