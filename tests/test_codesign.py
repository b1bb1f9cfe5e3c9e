"""The co-design scripts (issue #15): bad input refused in one line before any work, and
the Pareto table and plot of a study's CSV, with the silicon anchors scaled to 45 nm."""

import csv
import subprocess
import sys

import pytest


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,fragment", [
    (["--design", "nope"], "--design 'nope' unknown"),
    (["--verify-samples", "0"], "--verify-samples=0 out of range"),
    (["--dataset", "digits"], "each design needs 784 / 10"),
])
def test_low_energy_refuses_bad_input_before_work(args, fragment, tmp_path):
    r = _run("scripts/low_energy_mnist.py", *args, "--json", str(tmp_path / "o.json"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.json").exists()


def test_pareto_table_plot_and_anchors(tmp_path):
    keys = ["trial", "layers", "wbits", "accuracy", "energy_pj", "area_mm2", "latency_us", "point_key"]
    rows = [  # b dominates c on every objective; a and b trade accuracy for energy
        {"trial": 0, "layers": "1x256", "wbits": 4, "accuracy": 0.97, "energy_pj": 1e5, "area_mm2": 1.0,
         "latency_us": 20.0, "point_key": "a"},
        {"trial": 1, "layers": "2x500", "wbits": 8, "accuracy": 0.98, "energy_pj": 5e5, "area_mm2": 3.0,
         "latency_us": 40.0, "point_key": "b"},
        {"trial": 2, "layers": "2x500", "wbits": 4, "accuracy": 0.975, "energy_pj": 6e5, "area_mm2": 3.5,
         "latency_us": 50.0, "point_key": "c"}]
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    png, js = tmp_path / "p.png", tmp_path / "p.json"
    r = _run("scripts/codesign_pareto.py", "--csv", str(path), "--png", str(png), "--json", str(js))
    assert r.returncode == 0, r.stderr
    table = [l for l in r.stdout.splitlines() if l.startswith("| 1x256") or l.startswith("| 2x500")]
    assert [l.split(" | ")[0] for l in table] == ["| 1x256", "| 2x500"] and "97.50%" not in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json
    doc = json.loads(js.read_text())
    assert [a["nj_at_45nm"] for a in doc["anchors"]] == pytest.approx([2340 * 45 / 28, 236.5 * 45 / 65, 50.1 * 45 / 40])
    bad = _run("scripts/codesign_pareto.py", "--csv", str(tmp_path / "none.csv"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
