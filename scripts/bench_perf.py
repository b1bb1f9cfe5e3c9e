#!/usr/bin/env python3
"""Benchmarks of the cycle/activity model, printed as figures measured in one run.

1. perf vs RTL simulation (cocotb + Verilator, via ``ffaccel.verify``): time per inference
   on the same config and samples, and their ratio.
2. The MNIST test set through ``ffaccel.perf`` on 784-4x2000 MP with early exit (needs
   ``--checkpoint``): wall time, toggles sampled on ``--toggle-samples`` inferences.
3. SCALE-Sim v3 (PyPI ``scalesim==3.0.0`` in its own venv, created under ``runs/`` on first
   use: it needs numpy 1.26.4) side by side on the same FC layers (B = 10 label copies,
   784->2000 and 2000->2000), same array and output-stationary dataflow: cycles and wall
   time per layer.

    python scripts/bench_perf.py [--checkpoint CKPT] [--skip-rtl] [--skip-scalesim] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALESIM_VENV = ROOT / "runs" / "scalesim-venv"

SCALESIM_CFG = """[general]
run_name = ffaccel_cmp

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:    6144
FilterSramSzkB:   6144
OfmapSramSzkB:    6144
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {df}
Bandwidth : 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def ensure_scalesim() -> Path:
    py = SCALESIM_VENV / "bin" / "python"
    if not py.exists():
        print("[bench] creating the SCALE-Sim venv (scalesim==3.0.0, numpy==1.26.4)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(SCALESIM_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy==1.26.4"], check=True)
    return py


def scalesim_layer(py: Path, rows: int, cols: int, m: int, n: int, k: int, df: str = "os") -> dict:
    """One GEMM layer (M x K) . (K x N) in SCALE-Sim: its cycles, utilisation, wall time, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="ffaccel-scalesim-") as d:
        dp = Path(d)
        (dp / "a.cfg").write_text(SCALESIM_CFG.format(rows=rows, cols=cols, df=df))
        (dp / "topo.csv").write_text(f"Layer, M, N, K,\nfc, {m}, {n}, {k},\n")
        (dp / "layout.csv").write_text("Layer, a,\nfc, 1,\n")
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", str(py), "-m", "scalesim.scale", "-c", "a.cfg", "-t",
                            "topo.csv", "-l", "layout.csv", "-i", "gemm", "-p", str(dp / "log")],
                           cwd=d, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"SCALE-Sim failed: {r.stderr[-400:]}")
        rss_kb = int(r.stderr.strip().splitlines()[-1]) if r.stderr.strip().splitlines()[-1].isdigit() else 0
        rep = (dp / "log" / "ffaccel_cmp" / "COMPUTE_REPORT.csv").read_text().splitlines()[1].split(",")
    return {"cycles_reported": int(rep[2]), "cycles": int(rep[2]) + 1, "util_percent": float(rep[4]),
            "seconds": round(dt, 2), "peak_rss_mb": round(rss_kb / 1024, 1)}


def ffaccel_layer(rows: int, cols: int, n_in: int, n_out: int, copies: int = 10) -> dict:
    """The same FC layer on ffaccel's engine: a one-layer MP net without label sharing, so
    the engine computes the full 10-copy GEMM like SCALE-Sim does."""
    from ffaccel.config import AccelConfig
    from ffaccel.perf.cycles import layer_phases
    t0 = time.perf_counter()
    reps = 200
    for _ in range(reps):
        cfg = AccelConfig(inputs=n_in, layers=(n_out,), classes=copies, rows=rows, cols=cols, label_share=False)
        ph = dict(layer_phases(cfg, 0))
    dt = (time.perf_counter() - t0) / reps
    compute = ph["stream"] + ph["flush"]
    macs = copies * n_in * n_out
    return {"cycles": compute, "cycles_with_norm_exit": sum(ph.values()), "phases": ph,
            "util_percent": 100.0 * macs / (rows * cols * compute), "seconds": dt}


RTL_CONFIGS = {
    "verify-default": (["--layers", "2x16", "--inputs", "32", "--rows", "4", "--cols", "4"], 32),
    "mnist-shape": (["--layers", "4x2000", "--inputs", "784", "--rows", "10", "--cols", "16"], 2),
}


def bench_rtl(name: str = "verify-default") -> dict:
    """perf vs cocotb + Verilator on the same config, seed and samples."""
    from ffaccel.cli import config_from_args
    from ffaccel.perf.report import analyse
    from ffaccel.verify import build_parser
    from ffaccel.workload import random_workload
    flags, samples = RTL_CONFIGS[name]
    args = [*flags, "--samples", str(samples), "--seed", "0", "--sim", "verilator", "--json"]
    # the first run builds the simulator; the second is timed
    subprocess.run([sys.executable, "-m", "ffaccel.verify", *args], capture_output=True, text=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ffaccel.verify", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"verify failed: {r.stderr[-400:]}")
    out = json.loads(r.stdout)
    sim_s = out["run_seconds"]          # the simulator run itself (build excluded, cached)
    from ffaccel.model.golden import GoldenModel
    from ffaccel.perf.activity import PerfModel
    cfg = config_from_args(build_parser().parse_args(flags))
    wl = random_workload(cfg, 0, samples)
    # model set-up (float64 weight copies, tiled weights) is per model, like the RTL build
    t0 = time.perf_counter()
    models = (GoldenModel(wl.qm), PerfModel(wl.qm))
    setup_s = time.perf_counter() - t0
    reps = 20 if samples > 4 else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        analyse(wl, toggle_samples=0, models=models)
    perf_s = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(max(1, reps // 3)):
        analyse(wl, toggle_samples=samples, models=models)
    perf_t = (time.perf_counter() - t0) / max(1, reps // 3)
    return {"config": name, "samples": samples, "sim_cycles": out["sim_cycles"],
            "rtl_cycles_per_s": out["cycles_per_s"], "rtl_seconds_per_inference": sim_s / samples,
            "rtl_wall_seconds": round(wall, 2),
            "perf_seconds_per_inference": perf_s / samples, "speedup": sim_s / perf_s,
            "perf_with_all_toggles_seconds_per_inference": perf_t / samples, "speedup_with_all_toggles": sim_s / perf_t,
            "rtl_all_match": all(s.get("match") for s in out["samples"]), "perf_model_setup_seconds": setup_s,
            "perf_includes": "golden model (bit-exact outputs), exact cycles, MACs and accesses per sample"}


def bench_mnist(checkpoint: str, toggle_samples: int) -> dict:
    from ffaccel.perf.report import analyse
    from ffaccel.workload import dataset_workload
    t0 = time.perf_counter()
    wl = dataset_workload(checkpoint, "mnist", None, overrides=None)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = analyse(wl, toggle_samples)
    dt = time.perf_counter() - t1
    s = rep["summary"]
    return {"samples": s["samples"], "wall_seconds": round(dt, 1), "setup_seconds": round(t_load, 1),
            "toggle_samples": toggle_samples, "toggles_rel_std_error": s["toggles_rel_std_error"],
            "cycles_per_inference": s["cycles_per_inference"], "utilisation_useful": s["utilisation_useful"],
            "utilisation_pe_busy": s["utilisation_pe_busy"], "exit_histogram": s["exit_histogram"],
            "timing": rep["timing"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="MNIST 4x2000 MP checkpoint for the test-set run")
    p.add_argument("--toggle-samples", type=int, default=32)
    p.add_argument("--skip-rtl", action="store_true")
    p.add_argument("--rtl-configs", default="verify-default,mnist-shape", help=f"of {', '.join(RTL_CONFIGS)}")
    p.add_argument("--skip-scalesim", action="store_true")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    out: dict = {}
    if not args.skip_rtl:
        out["perf_vs_rtl"] = [bench_rtl(name) for name in args.rtl_configs.split(",")]
    for r in out.get("perf_vs_rtl", []):
        print(f"[{r['config']}] perf vs cocotb+Verilator: {r['rtl_seconds_per_inference'] * 1e3:.1f} ms vs "
              f"{r['perf_seconds_per_inference'] * 1e6:.1f} us per inference -> {r['speedup']:.0f}x "
              f"({r['speedup_with_all_toggles']:.0f}x with the toggles of every inference)")
    if args.checkpoint:
        out["mnist_test_set"] = bench_mnist(args.checkpoint, args.toggle_samples)
        m = out["mnist_test_set"]
        print(f"MNIST test set ({m['samples']} samples) through perf: {m['wall_seconds']} s "
              f"(toggles on {m['toggle_samples']} inferences, rel. std. error {m['toggles_rel_std_error']})")
    if not args.skip_scalesim:
        py = ensure_scalesim()
        rows_out = []
        for rows, cols in ((16, 16), (10, 16)):
            for n_in, n_out in ((784, 2000), (2000, 2000)):
                ss = scalesim_layer(py, rows, cols, 10, n_out, n_in)
                ff = ffaccel_layer(rows, cols, n_in, n_out)
                rows_out.append({"array": f"{rows}x{cols}", "layer": f"{n_in}->{n_out}", "scalesim": ss,
                                 "ffaccel": ff, "time_ratio": ss["seconds"] / ff["seconds"]})
                print(f"{rows}x{cols} os {n_in}->{n_out} B=10: SCALE-Sim {ss['cycles']} cycles "
                      f"({ss['util_percent']:.1f}%) in {ss['seconds']} s, {ss['peak_rss_mb']} MB; ffaccel "
                      f"{ff['cycles']} cycles ({ff['util_percent']:.1f}%) in {ff['seconds'] * 1e6:.0f} us "
                      f"-> {ss['seconds'] / ff['seconds']:.0f}x faster")
        out["scalesim"] = rows_out
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
