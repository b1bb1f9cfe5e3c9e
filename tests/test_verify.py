"""cocotb verification of the generated RTL against the golden model (sim/, ffaccel.verify).

A matrix of small randomised configs (sizes not multiples of the array, odd widths, copy
groups, both modes, label sharing on and off, exits at every layer) on Icarus and on
Verilator, with random idle cycles on the input stream and back-pressure on the result
stream; mutation tests (deliberate RTL bugs must be caught); the cfg-port write path;
the CLI. Builds are cached under build/sim-tests (gitignored): the first run pays the
Verilator compiles (~15-25 s each), later runs reuse them until the Verilog changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

from ffaccel.config import AccelConfig
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.schedule import schedule
from ffaccel.verify import verify_samples
from ffaccel.workload import informative_config, random_workload, sensitivity, spread_thresholds

pytestmark = pytest.mark.rtl

BUILD = Path(os.environ.get("FFACCEL_SIM_TEST_BUILD", REPO / "build" / "sim-tests"))
HAVE_ICARUS = shutil.which("iverilog") is not None
needs_icarus = pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog not installed")


def make_config(seed: int, **shape) -> AccelConfig:
    return informative_config(np.random.default_rng(seed), **shape)


# Structure of each case; formats come from the seed. rows < classes gives copy groups
# (MP); sizes are not multiples of rows/cols; OP sample counts leave a partial batch.
CASES = {
    "mp_groups_share": dict(inputs=23, layers=(13, 7, 9), classes=5, rows=2, cols=3, abits=5, wbits=3,
                            mode="mp", exit_policy="max", label_share=True),
    "op_margin": dict(inputs=19, layers=(11, 6, 5), classes=4, rows=3, cols=4, abits=6, wbits=5,
                      mode="op", exit_policy="margin"),
    "mp_noshare_margin": dict(inputs=20, layers=(9, 10), classes=6, rows=4, cols=5, abits=4, wbits=6,
                              mode="mp", exit_policy="margin", label_share=False),
    "mp_one_layer_rows1": dict(inputs=12, layers=(5,), classes=3, rows=1, cols=2, abits=3, wbits=2,
                               mode="mp", exit_policy="max", label_share=True),
    "op_three_layers": dict(inputs=17, layers=(7, 5, 3), classes=3, rows=2, cols=3, abits=5, wbits=3,
                            mode="op", exit_policy="max"),
    "mp_ten_classes": dict(inputs=16, layers=(6, 6, 6), classes=10, rows=4, cols=4, abits=8, wbits=8,
                           mode="mp", exit_policy="max", label_share=True),
    "op_rows1_noexit": dict(inputs=14, layers=(4, 9), classes=2, rows=1, cols=2, abits=7, wbits=4,
                            mode="op", exit_policy="none"),
    "mp_margin_groups": dict(inputs=21, layers=(11, 8), classes=7, rows=3, cols=4, abits=6, wbits=7,
                             mode="mp", exit_policy="margin", label_share=False),
    "op_cols1": dict(inputs=10, layers=(3, 3), classes=3, rows=4, cols=1, abits=2, wbits=2,
                     mode="op", exit_policy="max"),
    "op_lls_square": dict(inputs=18, layers=(9, 7, 6), classes=5, rows=3, cols=2, abits=5, wbits=4,
                          mode="op", exit_policy="max", exit_head="lls-square"),
    "op_lls_sin": dict(inputs=21, layers=(10, 8), classes=6, rows=2, cols=4, abits=6, wbits=5,
                       mode="op", exit_policy="margin", exit_head="lls"),
    # layer 2 left out of the score (no exit after it), and OP deciding at layer 2 of 3
    "mp_skip_middle": dict(inputs=15, layers=(8, 6, 7), classes=4, rows=2, cols=3, abits=5, wbits=4,
                           mode="mp", exit_policy="max", label_share=True, score_mask=(1, 0, 1)),
    "op_skip_last": dict(inputs=16, layers=(6, 7, 5), classes=3, rows=2, cols=3, abits=5, wbits=4,
                         mode="op", exit_policy="margin", score_mask=(0, 1, 0)),
    # zero skipping (sparse inputs: case_samples), with copy groups, unshared with operand
    # copies, and OP with learned and LLS heads
    "mp_zero_skip": dict(inputs=22, layers=(12, 9), classes=5, rows=2, cols=4, abits=4, wbits=4,
                         mode="mp", exit_policy="max", label_share=True, zero_skip=True),
    "mp_zero_skip_noshare": dict(inputs=19, layers=(7, 10), classes=4, rows=3, cols=3, abits=5, wbits=4,
                                 mode="mp", exit_policy="margin", label_share=False, zero_skip=True,
                                 fpga_regs=True),
    "op_zero_skip": dict(inputs=20, layers=(10, 7, 6), classes=3, rows=3, cols=4, abits=4, wbits=5,
                         mode="op", exit_policy="max", zero_skip=True),
    "op_zero_skip_lls": dict(inputs=17, layers=(8, 9), classes=4, rows=2, cols=3, abits=5, wbits=4,
                             mode="op", exit_policy="margin", exit_head="lls", zero_skip=True),
    # the FPGA registers with label sharing (the drain's per-lane label-weight selects)
    "mp_fpga_regs_share": dict(inputs=21, layers=(10, 7), classes=6, rows=4, cols=3, abits=5, wbits=4,
                               mode="mp", exit_policy="max", label_share=True, fpga_regs=True),
    # MP batches (issue #14): three images on three rows of the shared layer 1 with zero
    # skipping (the batch's map), a partial last batch; without sharing, copy groups that
    # straddle two samples and skip the groups of exited samples
    "mp_batch_share_skip": dict(inputs=19, layers=(9, 8, 6), classes=3, rows=3, cols=4, abits=5, wbits=4,
                                mode="mp", exit_policy="max", label_share=True, zero_skip=True, batch=3),
    "mp_batch_groups": dict(inputs=17, layers=(8, 9), classes=3, rows=4, cols=3, abits=6, wbits=5,
                            mode="mp", exit_policy="margin", label_share=False, batch=4, fpga_regs=True),
    # eight samples on eight rows; later layers in two groups of four samples each, which
    # share their weight reads
    "mp_batch8_skip": dict(inputs=14, layers=(7, 6, 5), classes=2, rows=8, cols=3, abits=5, wbits=4,
                           mode="mp", exit_policy="max", label_share=True, zero_skip=True, batch=8),
    # binary stochastic units (issue #17): the multiplier-free array, the random source and
    # sigmoid ROM, k tied units' biases; 1-bit activations with zero skipping and a batch,
    # OP with three tied units (2-bit counts) and the FPGA registers, MP copy groups
    "mp_bsff_k1_skip": dict(inputs=20, layers=(11, 9, 6), classes=4, rows=4, cols=3, abits=1, wbits=5,
                            mode="mp", exit_policy="max", label_share=True, zero_skip=True, batch=2,
                            neuron="bsff", bsff_k=1, bsff_seed=77),
    "op_bsff_k3": dict(inputs=18, layers=(9, 7, 5), classes=3, rows=3, cols=4, abits=2, wbits=6,
                       mode="op", exit_policy="margin", fpga_regs=True, neuron="bsff", bsff_k=3, bsff_seed=5),
    "mp_bsff_k4_groups": dict(inputs=16, layers=(8, 10), classes=5, rows=3, cols=2, abits=3, wbits=4,
                              mode="mp", exit_policy="max", label_share=False, neuron="bsff", bsff_k=4,
                              bsff_seed=0xDEADBEEF),
    # PhyLL's cosine goodness (issue #19): the COS phase after each pass, the reference
    # codes in the bias words; copy groups straddling two samples of a batch, zero skipping
    "mp_cos_batch_groups": dict(inputs=18, layers=(9, 7, 6), classes=4, rows=3, cols=3, abits=5, wbits=4,
                                mode="mp", exit_policy="max", label_share=False, zero_skip=True, batch=2,
                                goodness="cos"),
    # physical layers (issue #19): the external-layer port with the bench's P. MP: P in
    # front of layer 1 with concat (the embedded copies go out), batches over copy groups,
    # the cosine engine, P stalling with random latency; OP: P between layers 1 and 2, a
    # fixed latency (cycles exact)
    "mp_phys_concat": dict(inputs=14, layers=(8, 7), classes=3, rows=2, cols=3, abits=5, wbits=4, mode="mp",
                           exit_policy="max", label_share=False, batch=2, physical="random:seed=3,out=9,concat=1",
                           goodness="cos"),
    "op_phys_between": dict(inputs=13, layers=(7, 6, 5), classes=3, rows=2, cols=3, abits=5, wbits=4, mode="op",
                            exit_policy="margin", physical="random:seed=4,out=5,at=2"),
}
#: P's stall probability in the physical cases (0: a fixed latency, the cycles exact)
PORT_STALLS = {"mp_phys_concat": 0.3, "op_phys_between": 0.0}
VERILATOR_CASES = ["mp_batch_share_skip"]
# the other cases run on Verilator with -m slow (every case runs on Icarus by default)
VERILATOR_SLOW_CASES = ["op_bsff_k3", "mp_phys_concat", "op_phys_between", "mp_cos_batch_groups", "mp_bsff_k1_skip", "mp_groups_share", "op_margin", "mp_noshare_margin", "op_lls_sin", "mp_zero_skip_noshare", "op_zero_skip",
                        "mp_batch_groups", "mp_batch8_skip"]
# (case, stall probability): stalls vary so timing independence is exercised too
STALLS = {"mp_groups_share": 0.3, "op_margin": 0.4, "mp_noshare_margin": 0.2, "mp_one_layer_rows1": 0.0,
          "op_three_layers": 0.5, "mp_ten_classes": 0.3, "op_rows1_noexit": 0.3, "mp_margin_groups": 0.6,
          "op_cols1": 0.3, "op_lls_square": 0.4, "op_lls_sin": 0.3, "mp_skip_middle": 0.3, "op_skip_last": 0.4,
          "mp_zero_skip": 0.3, "mp_zero_skip_noshare": 0.5, "op_zero_skip": 0.4, "op_zero_skip_lls": 0.3,
          "mp_fpga_regs_share": 0.4, "mp_batch_share_skip": 0.4, "mp_batch_groups": 0.3,
          "mp_batch8_skip": 0.3, "mp_bsff_k1_skip": 0.4, "op_bsff_k3": 0.3, "mp_bsff_k4_groups": 0.5,
          "mp_cos_batch_groups": 0.4, "mp_phys_concat": 0.3, "op_phys_between": 0.4}


def case_samples(name: str, seed: int):
    """(qm, x) of a case: the ``verify_samples`` workload with a zero-image sample and a
    saturated one. The number formats depend on the case only (so every seed of a case
    shares one RTL build); weights and inputs come from seed, seed+100, ...: the first
    whose activations depend on the inputs (sensitivity >= 0.2) and, where the config can
    exit early, whose samples exit at more than one layer (deterministic)."""
    for fmt in range(4):
        base_cfg = make_config(fmt, **CASES[name])
        for k in range(8):
            s = seed + 100 * k
            n = 8 if base_cfg.mode == "mp" else 2 * base_cfg.rows + 1
            if base_cfg.batch > 4:             # two batches, the second partial
                n = base_cfg.batch + 3
            qm, x = verify_samples(base_cfg.replace(thresholds=()), s, n)
            if base_cfg.zero_skip:            # sparse inputs, as images are
                x[np.random.default_rng(s).random(x.shape) < 0.6] = 0
            x[0, base_cfg.classes:] = 0       # zero image goodness
            x[-1] = base_cfg.amax             # saturated input
            qm = spread_thresholds(qm, x)
            exits = set(GoldenModel(qm).run(x).exit_layer.tolist())
            # an early exit needs a scored layer before the decision layer
            can_exit = qm.cfg.exit_policy != "none" and any(qm.cfg.scored[:qm.cfg.decision_layer - 1])
            if sensitivity(qm, x) >= 0.2 and (len(exits) > 1 or not can_exit):
                return qm, x
    raise AssertionError(f"no informative samples for case {name} near seed {seed}")


def _check(name, sim, seed):
    from ffaccel.sim.runner import verify
    qm, x = case_samples(name, seed)
    out = verify(qm, x, sim=sim, build_dir=BUILD, in_stall=STALLS[name], out_stall=STALLS[name], seed=seed,
                 tag=f"{name}-{seed}", port_stall=PORT_STALLS.get(name, 0.0))
    rep = out["report"]
    assert rep.mismatches == 0, f"{name} on {sim}: {rep.summary()}"
    assert len(rep.samples) == len(x)
    return out


#: cases the default run leaves to `-m slow` on Icarus too (each feature they exercise is
#: also in a default case here and in tests/test_engine.py's random matrix, on the same RTL)
ICARUS_SLOW_CASES = ("mp_noshare_margin", "mp_one_layer_rows1", "op_three_layers", "op_rows1_noexit",
                     "mp_margin_groups", "op_cols1", "op_lls_square", "op_skip_last", "mp_zero_skip_noshare",
                     "op_zero_skip_lls", "mp_batch8_skip", "mp_bsff_k4_groups")


@needs_icarus
# (a second seed of every case, other weights and inputs on the same build: `-m slow`)
@pytest.mark.parametrize("seed", [11, pytest.param(12, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ICARUS_SLOW_CASES else n
                                  for n in CASES])
def test_icarus_matches_golden(name, seed):
    _check(name, "icarus", seed=seed)


@pytest.mark.parametrize("name", VERILATOR_CASES + [pytest.param(n, marks=pytest.mark.slow)
                                                    for n in VERILATOR_SLOW_CASES])
def test_verilator_matches_golden(name):
    _check(name, "verilator", seed=23)


def test_matrix_exits_at_every_layer():
    """The matrix's samples exit early at every layer in both modes (from the golden
    model of the very cases the simulator runs, so this test stands on its own)."""
    seen = set()
    for name in CASES:
        for seed in (11, 12):
            qm, x = case_samples(name, seed)
            seen.update((qm.cfg.mode, int(e), qm.cfg.n_layers) for e in GoldenModel(qm).run(x).exit_layer)
    early = {(mode, e) for mode, e, n in seen if e < n}
    assert {m for m, _ in early} == {"mp", "op"}
    assert {e for _, e in early} >= {1, 2}
    assert {e for _, e, n in seen if e == n} >= {2, 3}


# ---------------------------------------------------------------------------- cfg port

@needs_icarus
def test_cfg_port_sets_thresholds_and_exit_enable():
    """RTL built without thresholds (exits off at reset): writing thresholds + exit enable
    through the cfg port must give the golden model's early exits; and an RTL built with
    thresholds must stop exiting early once exit_enable is written 0."""
    from ffaccel.sim.runner import threshold_writes, verify
    qm, x = case_samples("mp_groups_share", seed=5)
    cfg = qm.cfg
    assert cfg.thresholds
    gold_exits = GoldenModel(qm).run(x).exit_layer
    assert gold_exits.min() < cfg.n_layers
    out = verify(qm, x, sim="icarus", build_dir=BUILD, hw_cfg=cfg.replace(thresholds=()),
                 in_stall=0.2, out_stall=0.2, seed=5, tag="cfgport-on")
    assert out["report"].mismatches == 0, out["report"].summary()
    assert out["run"].output["cfg_writes"][-1] == [schedule(cfg).regs.exit_enable, 1]
    # exits disabled through the port: the golden model without thresholds decides
    qm_off = QuantModel(cfg.replace(thresholds=()), qm.weights, qm.biases, qm.heads, qm.head_biases)
    out = verify(qm_off, x, sim="icarus", build_dir=BUILD, hw_cfg=cfg,
                 cfg_writes=threshold_writes(cfg, exit_enable=False), seed=5, tag="cfgport-off")
    assert out["report"].mismatches == 0, out["report"].summary()
    assert {s.exit_layer for s in out["report"].samples} == {cfg.n_layers}


@needs_icarus
def test_cfg_port_shift_registers():
    """The normalisation shift registers (layers and OP heads) written through the cfg
    port: an RTL built for wfrac/hfrac must compute the golden model of wfrac+1/hfrac+1
    (same integer weights) once the shifts rsqrt_frac + wfrac - afrac are rewritten."""
    from ffaccel.sim.runner import threshold_writes, verify
    qm, x = case_samples("op_margin", seed=7)
    cfg = qm.cfg
    new = cfg.replace(wfrac=tuple(w + 1 for w in cfg.wfrac), hfrac=tuple(h + 1 for h in cfg.hfrac))
    qm2 = QuantModel(new, qm.weights, qm.biases, qm.heads, qm.head_biases)
    # the new reset values are the new config's register map; written through the port
    writes = threshold_writes(new)
    writes += [[r.addr, r.reset] for r in schedule(new).regs.group("shift") + schedule(new).regs.group("head_shift")]
    assert sensitivity(qm2, x) > 0.1
    out = verify(qm2, x, sim="icarus", build_dir=BUILD, hw_cfg=cfg, cfg_writes=writes, in_stall=0.3,
                 out_stall=0.3, seed=7, tag="cfgport-shift")
    assert out["report"].mismatches == 0, out["report"].summary()
    # and without the shift writes the RTL computes the old formats: the check has teeth
    out = verify(qm2, x, sim="icarus", build_dir=BUILD, hw_cfg=cfg, cfg_writes=threshold_writes(new),
                 seed=7, tag="cfgport-noshift")
    assert out["report"].mismatches > 0


# ---------------------------------------------------------------------------- mutations

# the case that exposes each fault (an OP head fault needs an OP config, ...)
FAULT_CASES = {"requant_round": "mp_groups_share", "probe_tile": "mp_noshare_margin",
               "input_stall": "mp_groups_share", "exit_tie": "mp_ten_classes",
               "threshold_off_by_one": "mp_margin_groups", "label_share_term": "mp_groups_share",
               "op_head_increment": "op_margin", "lls_phase_restart": "op_lls_square",
               "score_mask_ignored": "mp_skip_middle", "skip_ones": "mp_zero_skip_noshare",
               "skip_map_stale": "op_zero_skip", "result_tag": "mp_batch_share_skip",
               "exited_groups_streamed": "mp_batch_groups", "skip_batch_map": "mp_batch_share_skip",
               "bsff_epoch_frozen": "mp_bsff_k1_skip", "bsff_tied_bias": "op_bsff_k3",
               "cos_ref_lane": "mp_cos_batch_groups", "cos_rounding": "mp_cos_batch_groups",
               "port_answer_addr": "mp_phys_concat", "port_no_label": "mp_phys_concat"}


def fault_samples(fault: str):
    qm, x = case_samples(FAULT_CASES[fault], seed=11)
    if fault == "exit_tie":
        # label columns of W1 zeroed: every label copy is the same vector, so all scores tie
        w1 = qm.weights[0].copy()
        w1[:, :qm.cfg.classes] = 0
        qm = QuantModel(qm.cfg, [w1] + qm.weights[1:], qm.biases, qm.heads, qm.head_biases)
        assert set(GoldenModel(qm).run(x).label.tolist()) == {0}
    return qm, x


def test_every_fault_has_a_case():
    from ffaccel.sim.faults import FAULTS
    assert set(FAULT_CASES) == set(FAULTS) and len(FAULTS) >= 6


#: faults that the default run also catches in the Amaranth simulator (tests/test_engine.py,
#: tests/test_port.py): the cocotb bench checks them under -m slow only
AMARANTH_CAUGHT = ("cos_ref_lane", "cos_rounding", "port_answer_addr")
#: and these under -m slow as well (the default run keeps a fault in every unit kind:
#: post-processing, controller, exit comparator, drain, accumulators, non-zero map, port)
SLOW_FAULTS = AMARANTH_CAUGHT + ("probe_tile", "lls_phase_restart", "skip_map_stale", "exited_groups_streamed",
                                 "skip_batch_map", "bsff_epoch_frozen")


@needs_icarus
@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAULTS else f
                                   for f in sorted(FAULT_CASES)])
def test_bench_catches_injected_faults(fault):
    from ffaccel.sim.runner import verify
    qm, x = fault_samples(fault)
    out = verify(qm, x, sim="icarus", build_dir=BUILD, fault=fault, in_stall=0.3, out_stall=0.3, seed=11,
                 tag=f"fault-{fault}")
    rep = out["report"]
    assert rep.mismatches > 0, f"fault {fault} went unnoticed"
    # caught on the samples themselves, not only by the idle watch after the last one
    assert any(not s.match for s in rep.samples), rep.summary()


@needs_icarus
def test_scoreboard_flags_corrupted_outputs():
    """The scoreboard is not vacuous: each kind of corruption of a passing run is caught."""
    from ffaccel.sim.runner import verify
    from ffaccel.sim.scoreboard import compare
    qm, x = case_samples("op_three_layers", seed=11)
    out = verify(qm, x, sim="icarus", build_dir=BUILD, in_stall=0.5, out_stall=0.5, seed=11,
                 tag="op_three_layers-11")
    good = out["run"].output
    assert compare(qm, x, good).mismatches == 0

    def corrupt(fn):
        bad = json.loads(json.dumps(good))
        fn(bad)
        return compare(qm, x, bad)

    def flip_probe(d):
        d["probes"][3][3] ^= 1

    def drop_probe(d):
        del d["probes"][-1]
        d["probe_beats_before_quiet"] -= 1

    def cycles(d):
        d["results"][0]["cycles"] += 1

    def score(d):
        d["results"][-1]["scores"][0] += 1

    def row(d):
        d["results"][0]["row"] = 1

    def spurious(d):
        d["probes"].append(d["probes"][0])

    for fn in (flip_probe, drop_probe, cycles, score, row, spurious):
        assert corrupt(fn).mismatches > 0, fn.__name__


# ---------------------------------------------------------------------------- CLI

def test_verify_samples_is_the_shared_workload():
    """verify's samples are ffaccel.workload's (what ffaccel.perf simulates for the same
    flags), deterministic, and exit at every layer."""
    cfg = AccelConfig(inputs=32, layers=(16, 16, 16), rows=4, cols=4)
    qm1, x1 = verify_samples(cfg, 3, 12)
    qm2, x2 = verify_samples(cfg, 3, 12)
    wl = random_workload(cfg, 3, 12)
    assert np.array_equal(x1, x2) and np.array_equal(x1, wl.x) and qm1.cfg == qm2.cfg == wl.qm.cfg
    assert all(np.array_equal(a, b) for a, b in zip(qm1.weights, wl.qm.weights))
    assert qm1.cfg.thresholds
    exits = set(GoldenModel(qm1).run(x1).exit_layer.tolist())
    assert exits == {1, 2, 3}


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ffaccel.verify", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


@needs_icarus
def test_cli_json_report():
    r = _cli("--layers", "2x5", "--inputs", "12", "--classes", "3", "--rows", "2", "--cols", "3",
             "--abits", "5", "--wbits", "3", "--sim", "icarus", "--samples", "4", "--seed", "2",
             "--json", "--build-dir", str(BUILD))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert {"config", "samples", "mismatches", "sim", "cycles_per_s"} <= set(doc)
    assert doc["mismatches"] == 0 and len(doc["samples"]) == 4
    assert all(set(s) == {"label", "exit_layer", "cycles", "match"} and s["match"] for s in doc["samples"])
    assert doc["config"]["layers"] == [5, 5] and doc["config"]["abits"] == 5


@needs_icarus
def test_cli_reports_an_injected_fault_with_status_1(cli):
    r = cli("verify", "--layers", "2x5", "--inputs", "12", "--classes", "3", "--rows", "2", "--cols", "3",
            "--sim", "icarus", "--samples", "3", "--fault", "requant_round", "--build-dir", str(BUILD))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MISMATCH" in r.stdout


@needs_icarus
def test_cli_checkpoint_with_array_override(digits_ckpt, cli):
    """A trained digits checkpoint (the session's), quantised and calibrated, on another array."""
    r = cli("verify", "--checkpoint", str(digits_ckpt), "--dataset", "digits", "--rows", "3", "--cols", "6",
            "--samples", "3", "--sim", "icarus", "--json", "--build-dir", str(BUILD))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["mismatches"] == 0 and len(doc["samples"]) == 3
    assert (doc["config"]["rows"], doc["config"]["cols"], doc["config"]["layers"]) == (3, 6, [16, 16])
    r = cli("verify", "--checkpoint", str(digits_ckpt), "--dataset", "digits", "--layers", "3x16", "--sim", "icarus")
    assert r.returncode == 2 and "layers" in r.stderr


@pytest.mark.fault
@needs_icarus
def test_build_folder_links_are_never_written_through(tmp_path, cli):
    """Links planted in a (shared) build folder at the job file and the lock: a run must
    neither overwrite nor truncate their targets."""
    build = tmp_path / "b"
    args = ["verify", "--layers", "2x5", "--inputs", "12", "--classes", "3", "--rows", "2", "--cols", "3",
            "--sim", "icarus", "--samples", "2", "--build-dir", str(build)]
    assert cli(*args).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = list(build.rglob("job-*.json")) + list(build.rglob(".lock"))
    assert planted
    for p in planted:
        p.unlink()
        p.symlink_to(victim)
    r = cli(*args)
    assert victim.read_text() == "precious"
    locks = [p for p in planted if p.name == ".lock"]
    # a link at the lock is refused with one line; with the locks restored the run replaces the job links
    assert r.returncode == 2 and "a link at .lock" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for p in locks:
        p.unlink()
    assert cli(*args).returncode == 0 and victim.read_text() == "precious"
    assert not any(p.is_symlink() for p in planted if p.name != ".lock")


@pytest.mark.parametrize("args", [["--bogus"], ["--layers", "2x16", "--inputs", "32", "--rows", "0"],
                                  ["--stall", "1.5"], ["--samples", "0"], ["--sim", "modelsim"],
                                  ["--dataset", "digits"]])
@pytest.mark.fault
def test_cli_bad_input_is_one_line_exit_2(args, cli):
    r = cli("verify", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffaccel.verify: error:"), r.stderr


# ---------------------------------------------------------------------------- real data

@pytest.mark.slow
def test_real_mnist_checkpoint():
    ckpt = os.environ.get("FFACCEL_MNIST_CKPT")
    if not ckpt:
        pytest.skip("set FFACCEL_MNIST_CKPT to a trained MNIST checkpoint")
    r = _cli("--checkpoint", ckpt, "--dataset", "mnist", "--samples", os.environ.get("FFACCEL_MNIST_SAMPLES", "3"),
             "--sim", "verilator", "--json", "--build-dir", str(BUILD), timeout=7200)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["mismatches"] == 0


@needs_icarus
def test_vcd_is_moved_into_place_when_complete(tmp_path, cli):
    """The simulator writes the VCD in its run folder; the finished file then replaces the
    user's path (a link there is replaced, its target untouched)."""
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tmp_path / "w.vcd").symlink_to(target)
    r = cli("verify", "--layers", "2x8", "--inputs", "16", "--sim", "icarus", "--samples", "1",
            "--build-dir", str(tmp_path / "b"), "--vcd", str(tmp_path / "w.vcd"))
    assert r.returncode == 0, r.stderr
    vcd = tmp_path / "w.vcd"
    assert not vcd.is_symlink() and vcd.read_text().startswith("$date") and target.read_text() == "keep"
    assert not list((tmp_path / "b").rglob("*.vcd"))              # nothing left in the run folder
