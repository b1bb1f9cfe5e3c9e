"""Energy model: a small config's energy worked out by hand from the coefficient table,
exit depth saves energy, coefficient files are validated, node scaling and the bottom-up
bound behave, the command on random and trained workloads."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.energy.coeffs import load_coeffs, node_factor
from ffaccel.energy.model import ENERGY_COMPONENTS, Profile
from ffaccel.energy.report import report
from ffaccel.schedule import schedule
from ffaccel.errors import FFAccelError
from ffaccel.workload import random_workload

CFG = AccelConfig(inputs=32, layers=(16, 12, 16), classes=5, rows=3, cols=4)

# ------------------------------------------------------------------ by hand
# 8 inputs, layers 4-4, 2 classes, a 2x4 array, W8 A8, weights in DRAM, 200 MHz,
# 45 nm (accumulator 20 bits, drained sum 21, rsqrt mantissa 12, product 33, goodness 19: from the config).
# Per-event energies from the default table (Horowitz 45 nm + the stated assumptions):
MULT_BIT = 0.2 / (0.5 * (8 + 8))            # 8x8 mult 0.2 pJ over its 16 operand bits at activity 0.5
REG_BIT = 0.1 / 32 / 0.5                    # one register bit toggle = 0.00625 pJ
ACC_BIT = (0.1 * 20 / 32) / (0.5 * 20) + REG_BIT   # 20-bit add per result-bit toggle + its register bit
WEIGHT_WORD = 1950.0 * 32 / 64              # DRAM, 4 lanes x 8 bits: 975 pJ
SRAM_64B = 10.0 * (64 / 8192) ** 0.5        # smallest bank (64 B floor): 8 KB point, sqrt slope of 8K->32K
ACT_WORD = SRAM_64B * 32 / 64               # 4 activations of 8 bits
# the normalisation multiplier takes the 21-bit drained sum (accumulator + 1) and m
POST_ROW = 4 * (0.2 * 21 * 12 / 64 + 0.1 * 33 / 32 + 0.2 + 0.1 * 19 / 32)  # per drained row, 4 columns
# area model: 8 PEs x (3.80*8*8 + 13.2*20) + 4 columns x (7.43*20*13 + 74.3*20 + 9.9*8*8) + 9034 cells
# (13 = rsqrt_frac + 1, the multiplier feature the fit was calibrated with),
# leaking 2 nW per cell, and 2 bank sets x 2 banks x 2 words x 32 bits of SRAM at 20 pW per bit
# (the weights are in DRAM: no weight SRAM), at 200 MHz
CELLS = 8 * (3.80 * 64 + 13.2 * 20) + 4 * (7.43 * 260 + 74.3 * 20 + 9.9 * 64) + 9034
LEAK_CYCLE = (2e-9 * CELLS + 20e-12 * 256) / 200e6 * 1e12    # pJ per cycle

TOGGLES = [{"weight_bus": 100, "act_read": 40, "array_x": 30, "pe_product": 150, "pe_acc": 200, "pe_shadow": 20,
            "act_write": 10, "pe_operand": 60},
           {"weight_bus": 50, "act_read": 20, "array_x": 10, "pe_product": 70, "pe_acc": 80, "pe_shadow": 8,
            "act_write": 4, "pe_operand": 25}]
COUNTS = [{"pe_ops": 64, "weight_reads": 8, "act_reads": 6, "act_writes": 2, "bias_reads": 1, "drained_rows": 2, "layer_rows": 2},
          {"pe_ops": 32, "weight_reads": 4, "act_reads": 2, "act_writes": 2, "bias_reads": 1, "drained_rows": 2, "layer_rows": 2}]
CYCLES = [50, 30]


def _layer_by_hand(tog, cnt, cycles, bias_word_bits):
    rows_per_weight = cnt["pe_ops"] / (4 * cnt["weight_reads"])    # each weight feeds this many PEs
    return (
        (tog["array_x"] * 4 + tog["weight_bus"] * rows_per_weight) * MULT_BIT   # operands into multipliers
        + tog["pe_product"] * REG_BIT + tog["pe_acc"] * ACC_BIT + tog["pe_shadow"] * REG_BIT
        + (2 * tog["weight_bus"] + tog["array_x"] + 2 * tog["act_read"]) * REG_BIT   # read-data, operand regs
        + tog["pe_operand"] * REG_BIT                                           # the PEs' operand copies
        + tog["act_write"] * REG_BIT
        + cnt["drained_rows"] * POST_ROW
        + cnt["weight_reads"] * WEIGHT_WORD
        + (cnt["act_reads"] + cnt["act_writes"]) * ACT_WORD
        + cnt["bias_reads"] * SRAM_64B * bias_word_bits / 64
        + cycles * LEAK_CYCLE)


@pytest.mark.parametrize("mode", ["mp", "op"])
def test_energy_of_a_small_config_by_hand(mode):
    """Every component from the coefficient table and the counts, independently of the
    model's code; then the report's per-sample average over exit depths and batches."""
    cfg = AccelConfig(inputs=8, layers=(4, 4), classes=2, rows=2, cols=4, weight_mem="dram", mode=mode)
    setup_cycles, load_toggles = 3, 12
    prof = Profile(cfg, TOGGLES, COUNTS, CYCLES, setup_cycles, load_toggles, sampled=1)
    # bias words: 4 lanes of 10 bits (abits + 2; OP head biases below 8 logits at lfrac 6 fit too)
    bias_bits = 40
    lanes_loaded = 8 if mode == "mp" else 8 * 2          # OP loads the batch's 2 samples
    e_setup = load_toggles * REG_BIT + lanes_loaded * SRAM_64B * 8 / 64 + setup_cycles * LEAK_CYCLE
    e1 = e_setup + _layer_by_hand(TOGGLES[0], COUNTS[0], CYCLES[0], bias_bits)
    e2 = e1 + _layer_by_hand(TOGGLES[1], COUNTS[1], CYCLES[1], bias_bits)

    exits = [1, 2, 2, 1, 2] if mode == "mp" else [1, 2, 1, 1, 1]
    rep = report(SimpleNamespace(cfg=cfg), load_coeffs(), 1, exit_layers=np.array(exits), prof=prof)
    if mode == "mp":      # one inference per sample
        runs = exits
        total, per_inf, cyc = (2 * e1 + 3 * e2) / 5, 1, (2 * (3 + 50) + 3 * (3 + 80)) / 5
        # lower bound: MACs (layer 1 shares the image part: 8*4, layer 2: 2 labels x 4x4) at
        # 0.2 + 0.0625 pJ, and the weight words of the layers run (8, then 4 more)
        lb = [32 * 0.2625 + 8 * WEIGHT_WORD, 64 * 0.2625 + 12 * WEIGHT_WORD]
    else:                 # batches of 2: samples {0,1} run to layer 2, {2,3} and {4} to layer 1
        runs = [2, 1, 1]
        total, per_inf, cyc = (e2 + 2 * e1) / 5, 2, ((3 + 80) + 2 * (3 + 50)) / 3
        # per sample: layer 8x4 + head 4x2 MACs, then 4x4 + 4x2; words 8 + 4 (head), then 4 + 4
        lb = [40 * 0.2625 + 12 * WEIGHT_WORD, 64 * 0.2625 + 20 * WEIGHT_WORD]
    assert rep["total_pj"] == pytest.approx(total, rel=1e-9)
    assert rep["full_depth_pj"] == pytest.approx(e2 / per_inf, rel=1e-9)
    assert rep["energy_by_exit_layer_pj"] == pytest.approx({"1": e1 / per_inf, "2": e2 / per_inf}, rel=1e-9)
    words = {1: 8, 2: 12}        # weight words read by an inference that stops after layer 1 / 2
    assert rep["components"]["weight_mem"] == pytest.approx(WEIGHT_WORD * sum(words[e] for e in runs) / 5)
    assert rep["cycles_per_inference"] == pytest.approx(cyc)
    assert rep["edp_pj_s"] == pytest.approx(total * cyc / 200e6, rel=1e-9)
    assert rep["lower_bound_pj"] == pytest.approx(np.mean([lb[e - 1] for e in exits]), rel=1e-9)
    assert rep["per_layer"][1]["pj_when_run"] == pytest.approx(e2 - e1, rel=1e-9)
    assert rep["exit_histogram"] == {"1": exits.count(1), "2": exits.count(2)}


@pytest.mark.parametrize("mem", ["dram", "sram"])
def test_exit_depth_saves_energy_on_a_workload(mem):
    wl = random_workload(CFG.replace(weight_mem=mem), seed=1, n=12)
    rep = report(wl, load_coeffs(), toggle_samples=4)
    assert set(rep["components"]) == set(ENERGY_COMPONENTS)
    by = [rep["energy_by_exit_layer_pj"][str(i)] for i in (1, 2, 3)]
    assert by[0] < by[1] < by[2] == pytest.approx(rep["full_depth_pj"])
    hist = rep["exit_histogram"]
    assert sum(hist.values()) == 12 and hist["3"] < 12          # some samples exit early
    assert rep["total_pj"] < rep["full_depth_pj"]
    assert rep["lower_bound_pj"] <= rep["total_pj"]
    assert all(v >= 0 for v in rep["components"].values())


def test_dram_costs_more_than_sram():
    wl_d = random_workload(CFG.replace(weight_mem="dram"), seed=2, n=4)
    wl_s = random_workload(CFG.replace(weight_mem="sram"), seed=2, n=4)
    c = load_coeffs()
    assert report(wl_d, c, 2)["components"]["weight_mem"] > 10 * report(wl_s, c, 2)["components"]["weight_mem"]


def test_coefficient_overrides_and_validation(tmp_path):
    (tmp_path / "c.toml").write_text("dram_64b_pj = 1300.0\nmult_int8_pj = 0.4\n")
    c = load_coeffs(tmp_path / "c.toml")
    assert c["dram_64b_pj"] == 1300.0 and "c.toml" in c.sources["mult_int8_pj"]
    assert c.mult_pj(8, 8) == pytest.approx(0.4)
    for text, frag in (("nope = 1.0", "unknown coefficient"), ("dram_64b_pj = -1", "positive"),
                       ("activity = 2.0", "activity"), ("dram_64b_pj = ", "does not parse")):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(FFAccelError, match=frag):
            load_coeffs(tmp_path / "bad.toml")
    with pytest.raises(FFAccelError, match="does not exist"):
        load_coeffs(tmp_path / "missing.toml")


def test_sram_energy_interpolates_horowitz_points():
    c = load_coeffs()
    assert c.sram_access_pj(8 * 1024, 64) == pytest.approx(10.0)
    assert c.sram_access_pj(32 * 1024, 64) == pytest.approx(20.0)
    assert c.sram_access_pj(1024 * 1024, 64) == pytest.approx(100.0)
    assert 10.0 < c.sram_access_pj(16 * 1024, 64) < 20.0
    assert c.sram_access_pj(1024 * 1024, 128) == pytest.approx(200.0)


def test_node_scaling():
    assert node_factor("45nm") == 1.0
    assert node_factor("7nm") < node_factor("16nm") < node_factor("28nm") < 1.0
    c45, c7 = load_coeffs(tech="45nm"), load_coeffs(tech="7nm")
    assert c7.mult_pj(8, 8) == pytest.approx(c45.mult_pj(8, 8) * node_factor("7nm"))


def test_energy_cli(tmp_path, cli):
    """The one subprocess run of the tool: python -m, JSON on stdout, plots written."""
    r = subprocess.run([sys.executable, "-m", "ffaccel.energy", "--layers", "2x16", "--inputs", "32", "--rows", "4",
                        "--cols", "4", "--samples", "4", "--json", "--plots", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("total_pj", "full_depth_pj", "components", "per_layer", "exit_histogram"):
        assert key in rep
    assert sum(rep["exit_histogram"].values()) == 4 and rep["total_pj"] <= rep["full_depth_pj"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energy_by_exit_depth.png", "exit_histogram.png"]
    r = cli("energy", "--layers", "2x16", "--inputs", "32", "--tech", "3nm")
    assert r.returncode == 2 and "tech" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_perf_and_energy_on_a_checkpoint(tmp_path, cli, digits_ckpt):
    """The data-set path of both tools: a trained checkpoint, its own config, real samples,
    the exit-knob sweep and its plot."""
    ck = str(digits_ckpt)
    r = cli("perf", "--checkpoint", ck, "--dataset", "digits", "--limit", "30", "--k", "0.5", "--rows", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["samples"]) == 30 and out["config"]["rows"] == 5 and out["config"]["layers"] == [16, 16]
    assert out["config"]["exit_k"] == 0.5 and out["workload"]["dataset"] == "digits"
    r = cli("energy", "--checkpoint", ck, "--dataset", "digits", "--limit", "30", "--ks=0,2", "--plots",
            str(tmp_path / "p"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    sweep = rep["k_sweep"]
    assert [s["k"] for s in sweep] == [0.0, 2.0]
    # a larger k lowers the thresholds: samples exit no later, so energy cannot grow
    assert sweep[1]["mean_exit_layer"] <= sweep[0]["mean_exit_layer"]
    assert sweep[1]["total_pj"] <= sweep[0]["total_pj"]
    assert (tmp_path / "p" / "energy_vs_accuracy.png").is_file()
    r = cli("perf", "--checkpoint", ck, "--dataset", "digits", "--layers", "3x16")
    assert r.returncode == 2 and "layers" in r.stderr


@pytest.mark.parametrize("mode", ["mp", "op"])
def test_zero_skipping_saves_weight_reads_on_sparse_inputs(mode):
    """The same model and sparse inputs with zero skipping off and on: the energy report
    gives each layer's weight reads skipped, and the energy falls with them."""
    from ffaccel.model.golden import QuantModel
    from ffaccel.workload import Workload, random_workload
    cfg = AccelConfig(inputs=40, layers=(24, 16), classes=4, rows=4, cols=4, mode=mode, weight_mem="sram")
    wl = random_workload(cfg, 3, 8)
    x = wl.x.copy()
    x[np.random.default_rng(3).random(x.shape) < 0.7] = 0
    reps = {}
    for skip in (False, True):
        qm = QuantModel(wl.cfg.replace(zero_skip=skip), wl.qm.weights, wl.qm.biases, wl.qm.heads, wl.qm.head_biases)
        reps[skip] = report(Workload(qm, x, None, {}), load_coeffs(), 4)
    assert all("weight_reads_skipped" not in l for l in reps[False]["per_layer"])
    skipped = [l["weight_reads_skipped"] for l in reps[True]["per_layer"]]
    assert skipped[0] > 0.3 and all(0 <= s < 1 for s in skipped)
    assert reps[True]["components"]["weight_mem"] < 0.8 * reps[False]["components"]["weight_mem"]
    assert reps[True]["total_pj"] < reps[False]["total_pj"]


def test_area_counts_the_maps_and_the_batch_registers():
    """The zero-skipping maps (one per sample of an MP batch) and a batch's per-copy
    registers are flip-flops the cell fit does not cover: counted one cell per bit."""
    from ffaccel.energy.model import area_cells, state_cells
    base = AccelConfig()
    s = schedule(base)
    assert state_cells(base) == 0
    one = base.replace(zero_skip=True)
    assert state_cells(one) == 2 * s.bank_depth * base.cols
    eight = one.replace(batch=8)
    assert state_cells(eight) > 8 * state_cells(one)
    assert area_cells(eight) - area_cells(one) == state_cells(eight) - state_cells(one)
