"""Energy model: parts sum to the total, exit depth saves energy, coefficient files are
validated, node scaling and the bottom-up bound behave."""

import json
import subprocess
import sys

import pytest

from ffaccel.cli import FFAccelError
from ffaccel.config import AccelConfig
from ffaccel.energy.__main__ import report
from ffaccel.energy.coeffs import load_coeffs, node_factor
from ffaccel.energy.model import ENERGY_COMPONENTS
from ffaccel.workload import random_workload

CFG = AccelConfig(inputs=32, layers=(16, 12, 16), classes=5, rows=3, cols=4)


@pytest.mark.parametrize("mem", ["dram", "sram"])
def test_components_sum_to_total_and_exit_saves(mem):
    wl = random_workload(CFG.replace(weight_mem=mem), seed=1, n=12)
    rep = report(wl, load_coeffs(), toggle_samples=4)
    assert set(rep["components"]) == set(ENERGY_COMPONENTS)
    assert sum(rep["components"].values()) == pytest.approx(rep["total_pj"], rel=1e-12)
    by = [rep["energy_by_exit_layer_pj"][str(i)] for i in (1, 2, 3)]
    assert by[0] < by[1] < by[2] == pytest.approx(rep["full_depth_pj"])
    hist = rep["exit_histogram"]
    assert sum(hist.values()) == 12 and hist["3"] < 12          # some samples exit early
    assert rep["total_pj"] < rep["full_depth_pj"]
    # the average is the histogram-weighted energy by depth
    avg = sum(hist[k] * rep["energy_by_exit_layer_pj"][k] for k in hist) / 12
    assert avg == pytest.approx(rep["total_pj"], rel=1e-9)
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


def test_energy_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ffaccel.energy", "--layers", "2x16", "--inputs", "32", "--rows", "4",
                        "--cols", "4", "--samples", "4", "--json", "--plots", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("total_pj", "full_depth_pj", "components", "per_layer", "exit_histogram"):
        assert key in rep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["energy_by_exit_depth.png", "exit_histogram.png"]
    r = subprocess.run([sys.executable, "-m", "ffaccel.energy", "--layers", "2x16", "--inputs", "32",
                        "--tech", "3nm"], capture_output=True, text=True)
    assert r.returncode == 2 and "tech" in r.stderr


def test_perf_and_energy_on_a_checkpoint(tmp_path):
    """The data-set path of both tools: a trained checkpoint, its own config, real samples,
    the exit-knob sweep and its plot."""
    ck = tmp_path / "d.ckpt"
    r = subprocess.run([sys.executable, "-m", "ffaccel.train", "--dataset", "digits", "--layers", "2x16",
                        "--epochs", "1", "--out", str(ck), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "ffaccel.perf", "--checkpoint", str(ck), "--dataset", "digits",
                        "--limit", "30", "--k", "0.5", "--rows", "5", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["samples"]) == 30 and out["config"]["rows"] == 5 and out["config"]["layers"] == [16, 16]
    r = subprocess.run([sys.executable, "-m", "ffaccel.energy", "--checkpoint", str(ck), "--dataset", "digits",
                        "--limit", "30", "--ks=0,2", "--plots", str(tmp_path / "p"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert [s["k"] for s in rep["k_sweep"]] == [0.0, 2.0]
    assert (tmp_path / "p" / "energy_vs_accuracy.png").is_file()
    r = subprocess.run([sys.executable, "-m", "ffaccel.perf", "--checkpoint", str(ck), "--dataset", "digits",
                        "--layers", "3x16"], capture_output=True, text=True)
    assert r.returncode == 2 and "layers" in r.stderr
