"""Activity model (ffaccel.perf) against the RTL: PE operations against the RTL's MAC
counter, and toggles per component against a VCD of the same stimulus (goal: within 5%)."""

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.hw.simtop import run_engine
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.perf.activity import COMPONENTS, Counters, PerfModel
from ffaccel.perf.vcdtoggles import count_toggles

CONFIGS = [
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, abits=5, afrac=2),
    AccelConfig(inputs=20, layers=(9, 7), classes=3, rows=2, cols=4, abits=5, afrac=2, label_share=False),
    AccelConfig(inputs=23, layers=(10, 6, 5), classes=4, rows=4, cols=3, abits=6, wbits=5, afrac=3),
    AccelConfig(inputs=18, layers=(7, 9), classes=3, rows=3, cols=4, abits=4, afrac=1, mode="op"),
]


def _model_counters(qm, x, gold, batches):
    pm = PerfModel(qm)
    tot, per = Counters(), []
    s0 = 0
    for b in batches:
        if qm.cfg.mode == "mp":
            c = pm.mp_sample(x[s0], [a[s0, :] for a in gold.activations], int(gold.exit_layer[s0]))
        else:
            idx = slice(s0, s0 + len(b))
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
    n = 3 if cfg.mode == "mp" else 5
    x = rng.integers(0, cfg.amax + 1, size=(n, cfg.inputs))
    if cfg.n_layers > 1:   # make one sample exit early
        sc = GoldenModel(qm).run(x).layer_scores
        qm = QuantModel(cfg.replace(thresholds=tuple(int(np.median(sc[:, l].max(1))) for l in range(cfg.n_layers - 1))),
                        qm.weights, qm.biases, qm.heads, qm.head_biases)
        cfg = qm.cfg
    gold = GoldenModel(qm).run(x, probe=True)
    batches = [x[i:i + 1] for i in range(n)] if cfg.mode == "mp" else [x[:3], x[3:]]
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
        assert want > 0
        assert abs(got[comp] - want) <= 0.05 * got[comp], (comp, got[comp], want)


def test_perf_cli_json_and_errors():
    import json
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ffaccel.perf", "--layers", "2x16", "--inputs", "32", "--rows", "4",
                        "--cols", "4", "--samples", "5", "--seed", "3", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"config", "samples", "summary"}
    assert len(out["samples"]) == 5 and {"cycles", "exit_layer", "macs"} <= set(out["samples"][0])
    from ffaccel.perf.cycles import inference_cycles
    cfg = AccelConfig.from_dict(out["config"])
    for s in out["samples"]:
        assert s["cycles"] == inference_cycles(cfg, s["exit_layer"])["total"]
    for bad, frag in ((["--samples", "0"], "--samples=0"), (["--dataset", "digits"], "needs --checkpoint"),
                      (["--rows", "x"], "invalid int")):
        r = subprocess.run([sys.executable, "-m", "ffaccel.perf", "--layers", "2x16", "--inputs", "32", *bad],
                           capture_output=True, text=True)
        assert r.returncode == 2 and frag in r.stderr and len(r.stderr.strip().splitlines()) == 1
