"""ECG beats on a wearable-sized engine (issue #20): LightFF's application, end to end.

1. Data: the MIT-BIH records of ``make data-ecg`` (``--dataset ecg``), beats per class per split.
2. Network: ``--layers`` (MP, default recipe), float and integer accuracy, balanced accuracy,
   per-class recall, MAC cut with exit.
3. Engine: the DSE (``examples/dse_ecg.toml``: array shape, weight width, exit knob, weights
   in an SRAM sized to the weight set) picks the design with the least energy among those
   whose balanced accuracy is within ``--tolerance`` of the best.
4. That design trained at its weight width, its RTL simulated on ``--verify`` beats (bit-exact
   against the golden model, cycles against the cycle model), and its energy on every test
   beat: per beat with and without exit, per hour at 72 beats per minute (power-gated
   between beats, and always on: leakage for the whole hour), latency per beat at the
   nominal clock against the 0.83 s between beats.

    make data-ecg && python scripts/ecg_wearable.py --json OUT.json    # about 2 minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BPM = 72
BEAT_S = 60.0 / BPM


def run(cmd: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"{cmd[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ecg_wearable", description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="2x64")
    p.add_argument("--space", default=str(ROOT / "examples" / "dse_ecg.toml"))
    p.add_argument("--tolerance", type=float, default=0.01, help="balanced accuracy below the best allowed")
    p.add_argument("--verify", type=int, default=4, help="test beats simulated on the RTL (0: none)")
    p.add_argument("--work", default=str(ROOT / "build" / "ecg"))
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    if not 0 <= args.tolerance < 1 or args.verify < 0:
        print("ecg_wearable: --tolerance must lie in [0, 1) and --verify be >= 0", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    # the DSE sizes the engine
    dse = run(["ffaccel.dse", "--space", args.space, "--workers", "1", "--store", str(work / "dse.db"),
               "--out", str(work / "dse"), "--no-progress", "--json"])
    rows = list(csv.DictReader(open(work / "dse" / "dse_ecg_points.csv")))
    best = max(float(r["balanced_accuracy"]) for r in rows)
    ok = [r for r in rows if float(r["balanced_accuracy"]) >= best - args.tolerance]
    pick = min(ok, key=lambda r: (float(r["energy_pj"]), float(r["area_cells"])))
    design = {k: (float(pick[k]) if k == "k" else int(pick[k])) for k in ("rows", "cols", "wbits", "k")}

    # the network at the chosen weight width, with the chosen exit knob
    ck = work / f"ecg_{args.layers}_w{design['wbits']}.ckpt"
    tr = run(["ffaccel.train", "--dataset", "ecg", "--inputs", "192", "--classes", "5", "--layers", args.layers,
              "--mode", "mp", "--wbits", str(design["wbits"]), "--k", str(design["k"]), "--rows", str(design["rows"]),
              "--cols", str(design["cols"]), "--no-progress", "--out", str(ck), "--json"])
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write('weight_mem = "sram"\nsram_kib = 1\n')
        base = f.name
    hw = ["--config", base, "--rows", str(design["rows"]), "--cols", str(design["cols"])]
    energy = run(["ffaccel.energy", "--checkpoint", str(ck), "--dataset", "ecg", *hw, "--json"])
    verify = None
    if args.verify:
        verify = run(["ffaccel.verify", "--checkpoint", str(ck), "--dataset", "ecg", *hw,
                      "--samples", str(args.verify), "--json"])
    Path(base).unlink()

    cfg_layers = list(energy["config"]["layers"])
    clock = energy["config"]["clock_mhz"] * 1e6
    cyc = energy["cycles_per_inference"]
    leak_pj = energy["components"]["leakage"]
    leak_w = leak_pj * 1e-12 / (cyc / clock)
    per_hour = 3600 / BEAT_S
    e_exit, e_full = energy["total_pj"], energy["full_depth_pj"]
    out = {
        "dataset": tr["float"].get("dataset", "ecg"),
        "network": f"192-{args.layers}-5 MP",
        "dse": {"designs": len(rows), "best_balanced_accuracy": best, "pick": design,
                "rule": f"least energy with balanced accuracy >= best - {args.tolerance}"},
        "float": {k: tr["float"][k] for k in ("accuracy", "accuracy_full", "balanced_accuracy", "balanced_accuracy_full",
                                              "per_class_recall", "per_class_recall_full", "mac_reduction")},
        "integer": {k: tr["integer"][k] for k in ("accuracy", "accuracy_full", "balanced_accuracy",
                                                  "balanced_accuracy_full", "per_class_recall",
                                                  "per_class_recall_full", "mac_reduction", "exit_histogram")},
        "energy_per_beat_pj": {"with_exit": e_exit, "full_depth": e_full},
        "energy_per_hour_uj": {"gated_with_exit": e_exit * per_hour / 1e6, "gated_full_depth": e_full * per_hour / 1e6,
                               "always_on_with_exit": ((e_exit - leak_pj) * per_hour * 1e-12 + leak_w * 3600) * 1e6},
        "leakage_uw": leak_w * 1e6,
        "weight_sram_bytes": sum(a * b for a, b in zip([192] + cfg_layers[:-1], cfg_layers)) * design["wbits"] // 8,
        "cycles_per_beat": cyc,
        "latency_per_beat_us": cyc / clock * 1e6,
        "beat_interval_s": BEAT_S,
        "clock_mhz": clock / 1e6,
        "verify": None if verify is None else {
            "beats": len(verify["samples"]), "mismatches": verify["mismatches"], "sim": verify["sim"],
            "stall": verify["stall"], "all_match": all(s["match"] for s in verify["samples"])},
    }
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
