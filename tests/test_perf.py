"""Activity model (ffaccel.perf) against the RTL: PE operations against the RTL's MAC
counter, and toggles per component against a VCD of the same stimulus (goal: within 5%).
The command's cycles, MACs, weight reads and PE operations against counts worked out by
hand for a tiny config, MP and OP."""

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.hw.simtop import run_engine
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.perf.activity import COMPONENTS, Counters, PerfModel
from ffaccel.perf.vcdtoggles import count_toggles
from ffaccel.schedule import schedule

CONFIGS = [
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, abits=5, afrac=2),
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, abits=5, afrac=2, label_share=False),
    AccelConfig(inputs=23, layers=(10, 6, 5), classes=4, rows=4, cols=3, abits=6, wbits=5, afrac=3),
    # MP rows beyond the classes: the array has no PEs there (Schedule.live_rows)
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=5, cols=3, abits=5, afrac=2),
    AccelConfig(inputs=18, layers=(7, 9), classes=3, rows=3, cols=4, abits=4, afrac=1, mode="op"),
    AccelConfig(inputs=18, layers=(7, 9), classes=5, rows=3, cols=2, abits=4, afrac=1, mode="op", exit_head="lls"),
    AccelConfig(inputs=18, layers=(7, 9), classes=3, rows=3, cols=4, abits=4, afrac=1, mode="op",
                exit_head="lls-square"),
    # each PE registers its own operand copies (one cycle more per pass)
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=5, cols=3, abits=5, afrac=2, fpga_regs=True),
    AccelConfig(inputs=18, layers=(7, 9), classes=5, rows=3, cols=2, abits=4, afrac=1, mode="op", exit_head="lls",
                fpga_regs=True),
    # zero skipping (sparse inputs below): MP shared and unshared with copy groups, OP
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, abits=5, afrac=2, zero_skip=True),
    AccelConfig(inputs=23, layers=(10, 6, 5), classes=4, rows=3, cols=3, abits=6, wbits=5, afrac=3,
                label_share=False, zero_skip=True),
    AccelConfig(inputs=18, layers=(7, 9), classes=3, rows=3, cols=4, abits=4, afrac=1, mode="op", zero_skip=True),
    # MP batches: three images on three rows (shared layer 1, zero skipping: the map of the
    # batch), and without sharing copy groups that straddle two samples
    AccelConfig(inputs=20, layers=(9, 7), classes=2, rows=3, cols=4, abits=5, afrac=2, batch=3, zero_skip=True),
    AccelConfig(inputs=20, layers=(9, 7, 5), classes=3, rows=4, cols=3, abits=5, afrac=2, batch=2,
                label_share=False),
    # BSFF: 1-bit activations with zero skipping and a batch; OP with 3 tied units (2-bit
    # counts) and the FPGA registers
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=3, cols=4, abits=1, afrac=4, wbits=5, wfrac=(2, 2),
                batch=2, zero_skip=True, neuron="bsff"),
    AccelConfig(inputs=18, layers=(7, 9), classes=3, rows=3, cols=4, abits=2, afrac=4, wbits=6, wfrac=(3, 3),
                mode="op", fpga_regs=True, neuron="bsff", bsff_k=3),
]


def _model_counters(qm, x, gold, batches):
    pm = PerfModel(qm)
    tot, per = Counters(), []
    s0 = 0
    for b in batches:
        idx = slice(s0, s0 + len(b))
        if qm.cfg.mode == "mp":
            c = pm.mp_batch(x[idx], [a[idx] for a in gold.activations], gold.exit_layer[idx])
        else:
            c = pm.op_batch(x[idx], [a[idx, 0, :] for a in gold.activations], gold.exit_layer[idx])
        per.append(c)
        tot.add(c)
        s0 += len(b)
    return tot, per


@pytest.mark.parametrize("ci", range(len(CONFIGS)))
def test_activity_model_matches_rtl(ci, tmp_path):
    cfg = CONFIGS[ci]
    rng = np.random.default_rng(ci)
    qm = QuantModel.random(cfg, rng)
    n = 3 * cfg.batch - 1 if cfg.mode == "mp" else 5      # (MP batches: a partial one)
    x = rng.integers(0, cfg.amax + 1, size=(n, cfg.inputs))
    if cfg.zero_skip:
        x[rng.random(x.shape) < 0.6] = 0
        x[0, cfg.classes:] = 0          # a blank image: a pass of empty entries only
    if cfg.n_layers > 1:   # make one sample exit early
        sc = GoldenModel(qm).run(x).layer_scores
        qm = QuantModel(cfg.replace(thresholds=tuple(int(np.median(sc[:, l].max(1))) for l in range(cfg.n_layers - 1))),
                        qm.weights, qm.biases, qm.heads, qm.head_biases)
        cfg = qm.cfg
    gold = GoldenModel(qm).run(x, probe=True)
    batches = [x[s0:s0 + size] for s0, size in schedule(cfg).batches(n)] if cfg.mode == "mp" else [x[:3], x[3:]]
    vcd = tmp_path / "run.vcd"
    out, _ = run_engine(qm, batches, vcd=str(vcd))
    tot, per = _model_counters(qm, x, gold, batches)
    # PE operations and cycles per inference equal the RTL's counters
    firsts = np.cumsum([0] + [len(b) for b in batches])[:-1]
    for c, i in zip(per, firsts):
        assert c.pe_ops == out[i].macs and c.cycles == out[i].cycles
    got = count_toggles(vcd)
    for comp in COMPONENTS:
        want = tot.toggles[comp]
        if comp == "pe_operand" and not cfg.fpga_regs:
            assert got.get(comp, 0) == want == 0
            continue
        assert want > 0
        # exact but for the loaded pixels' write data (the model assumes an unstalled input
        # stream; the bench's pixel stream pauses between samples) and the weight operand of
        # LLS heads (the generator's register between passes: within 1%; the PEs' copies of it)
        loose = comp == "act_write" or (comp in ("weight_bus", "pe_operand") and cfg.exit_head != "learned")
        tol = 0.05 * got[comp] if loose else 0
        assert abs(got[comp] - want) <= tol, (comp, got[comp], want)


# 32 inputs (10 of them the label), layers 16-16, 10 classes, a 4x4 array: worked out by hand
# from the controller's phases (docs/architecture.md, "Cycles"): START 1, then per layer NORM
# (one cycle per bank), STREAM (tiles x tile period), FLUSH (last tile's stream tail + drain +
# 17 cycles: command, read-data, operand, product and shadow registers, drain stages A1 and A2, 9 post-processing
# stages, the flush test), EXIT 1 + 5 (MP: the exit comparator over 10 classes, 4 tree
# levels and the threshold stage); OP: START 1 + NORM over the 4 rows, then per layer STREAM,
# FLUSH, NORM 4, head STREAM, head FLUSH, EXIT 4 + 5, EXIT2 1.
#
# MP layer 1 (label sharing): 4 tiles; per tile 10 label-weight words + max(22 image inputs,
#   10 rows drained) = 32 -> STREAM 128; FLUSH 22 + 10 + 10 + 17 - 32 = 27; NORM 10; EXIT 6: 171.
# MP layer 2: 4 tiles x 3 copy groups (4, 4, 2 labels), each max(16 inputs, rows) = 16 ->
#   STREAM 192; FLUSH 16 + 2 + 17 - 16 = 19; NORM 10; EXIT 6: 227.
MP_CYCLES = {1: 1 + 171, 2: 1 + 171 + 227}
# MACs: layer 1 once for the image (22 x 16) plus each label copy's one-hot input (10 x 16);
# layer 2 for every label copy (10 x 16 x 16).
MP_MACS = {1: 22 * 16 + 10 * 16, 2: 22 * 16 + 10 * 16 + 10 * 16 * 16}
# weight words: layer 1, 4 tiles x (22 + 10); layer 2, 4 tiles x 16 inputs x 3 copy groups
MP_WEIGHT_READS = {1: 4 * 32, 2: 4 * 32 + 4 * 16 * 3}
# PE operations: layer 1, 4 tiles x 22 inputs x 4 columns x 1 row; layer 2, x 10 rows in use
MP_PE_OPS = {1: 4 * 22 * 4, 2: 4 * 22 * 4 + 4 * 16 * 4 * 10}
# OP, batch of b samples: layer 1 STREAM 4 x max(32, b) = 128, FLUSH 32 + b + 17 - 32, NORM 4,
# head STREAM 3 tiles x max(16, b) = 48, head FLUSH 16 + b + 17 - 16, EXIT 4 + 5, EXIT2 1;
# layer 2 the same with STREAM 4 x 16 = 64.


def _op_cycles(exit_layer: int, b: int) -> int:
    l1 = 128 + (b + 17) + 4 + 48 + (b + 17) + 9 + 1
    l2 = 64 + (b + 17) + 4 + 48 + (b + 17) + 9 + 1
    return 1 + 4 + l1 + (l2 if exit_layer == 2 else 0)


# OP MACs per sample to its own exit: layer 32 x 16 and head 16 x 10, then 16 x 16 and 16 x 10
OP_MACS = {1: 32 * 16 + 16 * 10, 2: 32 * 16 + 16 * 10 + 16 * 16 + 16 * 10}
ARGS = ["--layers", "2x16", "--inputs", "32", "--rows", "4", "--cols", "4"]


def test_perf_cli_counts_by_hand():
    """The one subprocess run of the tool; every sample's counters against the hand counts."""
    import json
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ffaccel.perf", *ARGS, "--samples", "5", "--seed", "3", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"config", "samples", "summary"} and len(out["samples"]) == 5
    exits = [s["exit_layer"] for s in out["samples"]]
    assert set(exits) == {1, 2}                                 # both cases are checked
    for s in out["samples"]:
        e = s["exit_layer"]
        assert (s["cycles"], s["macs"], s["weight_reads"], s["pe_ops"]) == \
            (MP_CYCLES[e], MP_MACS[e], MP_WEIGHT_READS[e], MP_PE_OPS[e]), s
    summ = out["summary"]
    assert summ["full_depth"]["cycles"] == MP_CYCLES[2]
    assert summ["cycles_per_sample"] == pytest.approx(np.mean([MP_CYCLES[e] for e in exits]))
    assert summ["utilisation_useful"] == pytest.approx(
        sum(MP_MACS[e] for e in exits) / (16 * sum(MP_CYCLES[e] for e in exits)))


def test_perf_op_batches_by_hand(cli):
    """OP: 6 samples run as a batch of 4 and a batch of 2; a batch runs to its deepest exit."""
    import json
    r = cli("perf", *ARGS, "--mode", "op", "--samples", "6", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = out["samples"]
    assert out["summary"]["inferences"] == 2
    total = 0
    for lo, hi in ((0, 4), (4, 6)):
        batch = rows[lo:hi]
        deepest = max(s["exit_layer"] for s in batch)
        assert {s["exit_layer"] for s in batch} == {1, 2}          # the rule matters here
        useful = sum(OP_MACS[s["exit_layer"]] for s in batch)
        for s in batch:
            assert s["cycles"] == _op_cycles(deepest, hi - lo), (s, deepest)
            assert s["macs"] == useful // (hi - lo)
        total += _op_cycles(deepest, hi - lo)
    assert out["summary"]["cycles_per_sample"] == pytest.approx(total / 6)
    assert out["summary"]["cycles_per_inference"] == pytest.approx(total / 2)
    assert out["summary"]["full_depth"]["cycles"] == _op_cycles(2, 4)


@pytest.mark.parametrize("bad,frag", [(["--samples", "0"], "--samples=0"), (["--dataset", "digits"], "needs --checkpoint"),
                                      (["--rows", "x"], "invalid int"), (["--toggle-samples", "-1"], "toggle-samples")])
def test_perf_cli_errors_are_one_line(cli, bad, frag):
    r = cli("perf", "--layers", "2x16", "--inputs", "32", *bad)
    assert r.returncode == 2 and frag in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", ["mp", "op"])
def test_zero_skipping_report_paths_agree(mode):
    """The perf report under zero skipping: inferences counted with toggles (activations
    given) and without (non-zero maps made a chunk at a time) give the same cycles and
    weight reads; the per-layer summary shows the skipped reads."""
    from ffaccel.perf.report import analyse
    from ffaccel.workload import Workload, random_workload
    cfg = AccelConfig(inputs=30, layers=(12, 9), classes=3, rows=3, cols=4, abits=5, afrac=2, mode=mode,
                      zero_skip=True)
    wl = random_workload(cfg, 5, 9)
    x = wl.x.copy()
    x[np.random.default_rng(5).random(x.shape) < 0.7] = 0
    wl = Workload(wl.qm, x, None, {})
    full, bare = analyse(wl, len(x)), analyse(wl, 0)
    assert [s["cycles"] for s in full["samples"]] == [s["cycles"] for s in bare["samples"]]
    assert full["summary"]["weight_reads_per_inference"] == bare["summary"]["weight_reads_per_inference"]
    layers = bare["summary"]["zero_skip"]
    assert layers[0]["weight_reads_skipped"] > 0.3 and layers[0]["cycle_reduction"] > 1.2
