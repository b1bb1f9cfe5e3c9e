"""ECG beats on a wearable-sized engine (issue #20): LightFF's application, end to end.

1. Data: the MIT-BIH records of ``make data-ecg`` (``--dataset ecg``), beats per class per split.
2. Network: the space's ``layers`` (MP, default recipe), float and integer accuracy, balanced accuracy,
   per-class recall, MAC cut with exit.
3. Engine: the DSE (``examples/dse_ecg.toml``: array shape, weight width, exit knob, weights
   in an SRAM sized to the weight set) picks the design with the least energy among those
   whose balanced accuracy is within ``--tolerance`` of the best.
4. That design trained at its weight width, its RTL simulated on ``--verify`` beats (bit-exact
   against the golden model, cycles against the cycle model), and its energy on every test
   beat: per beat with and without exit, per hour at 72 beats per minute (power-gated
   between beats, and always on: leakage for the whole hour), latency per beat at the
   nominal clock against the 0.83 s between beats (and the slowest clock at which a beat
   that runs every layer still keeps up).

    make data-ecg && python scripts/ecg_wearable.py --json OUT.json    # about a minute
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ffaccel.config import AccelConfig  # noqa: E402
from ffaccel.data import DataError, load_dataset  # noqa: E402
from ffaccel.fsutil import atomic_write_text  # noqa: E402
from ffaccel.schedule import schedule  # noqa: E402
BPM = 72
BEAT_S = 60.0 / BPM


def run(cmd: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"{cmd[0]} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(r.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ecg_wearable", description=__doc__.splitlines()[0])
    p.add_argument("--space", default=str(ROOT / "examples" / "dse_ecg.toml"),
                   help="DSE space of the ECG network (its [workload] names the data set and layers)")
    p.add_argument("--tolerance", type=float, default=0.01, help="balanced accuracy below the best allowed")
    p.add_argument("--verify", type=int, default=4, help="test beats simulated on the RTL (0: none)")
    p.add_argument("--work", default=str(ROOT / "build" / "ecg"))
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    if not 0 <= args.tolerance < 1 or args.verify < 0:
        print("ecg_wearable: --tolerance must lie in [0, 1) and --verify be >= 0", file=sys.stderr)
        return 2
    try:
        with open(args.space, "rb") as f:
            wl = tomllib.load(f)["workload"]
        dataset, layers = str(wl["dataset"]), str(wl["layers"])
        ds = load_dataset(dataset)
    except (OSError, KeyError, tomllib.TOMLDecodeError, DataError) as e:
        print(f"ecg_wearable: --space {args.space}: {e}", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    # the DSE sizes the engine
    run(["ffaccel.dse", "--space", args.space, "--workers", "1", "--store", str(work / "dse.db"),
               "--out", str(work / "dse"), "--no-progress", "--json"])
    name = Path(args.space).stem
    with open(work / "dse" / f"{name}_points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = max(float(r["balanced_accuracy"]) for r in rows)
    ok = [r for r in rows if float(r["balanced_accuracy"]) >= best - args.tolerance]
    pick = min(ok, key=lambda r: (float(r["energy_pj"]), float(r["area_cells"])))
    design = {k: (float(pick[k]) if k == "k" else int(pick[k])) for k in ("rows", "cols", "wbits", "k")}

    # the network at the chosen weight width, with the chosen exit knob
    ck = work / f"{name}_{layers}_w{design['wbits']}.ckpt"
    tr = run(["ffaccel.train", "--dataset", dataset, "--inputs", str(ds.inputs), "--classes", str(ds.classes),
              "--layers", layers, "--mode", "mp", "--wbits", str(design["wbits"]), "--k", str(design["k"]),
              "--rows", str(design["rows"]), "--cols", str(design["cols"]), "--no-progress", "--out", str(ck),
              "--json"])
    base = work / "sram.toml"
    base.write_text('weight_mem = "sram"\nsram_kib = 1\n')
    hw = ["--config", str(base), "--rows", str(design["rows"]), "--cols", str(design["cols"])]
    energy = run(["ffaccel.energy", "--checkpoint", str(ck), "--dataset", dataset, *hw, "--json"])
    verify = None
    if args.verify:
        verify = run(["ffaccel.verify", "--checkpoint", str(ck), "--dataset", dataset, *hw,
                      "--samples", str(args.verify), "--json"])

    cfg = AccelConfig.from_dict({k: v for k, v in energy["config"].items() if k != "schema"})
    cfg_layers = list(cfg.layers)
    cyc_full = schedule(cfg).inference_cycles(cfg.n_layers, 1)["total"]
    clock = energy["config"]["clock_mhz"] * 1e6
    cyc = energy["cycles_per_inference"]
    leak_pj = energy["components"]["leakage"]
    leak_w = leak_pj * 1e-12 / (cyc / clock)
    per_hour = 3600 / BEAT_S
    e_exit, e_full = energy["total_pj"], energy["full_depth_pj"]
    out = {
        "dataset": dataset,
        "network": f"{ds.inputs}-{layers}-{ds.classes} MP",
        "beats_per_class": ds.provenance.get("beats_per_class"),
        "records": ds.provenance.get("records"),
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
        "weight_sram_bytes": sum(a * b for a, b in zip(cfg.fan_in, cfg_layers)) * design["wbits"] // 8,
        "cycles_per_beat": cyc,
        "cycles_per_beat_full_depth": cyc_full,
        "latency_per_beat_us": cyc / clock * 1e6,
        "latency_per_beat_full_depth_us": cyc_full / clock * 1e6,
        "slowest_clock_hz_full_depth": cyc_full / BEAT_S,
        "beat_interval_s": BEAT_S,
        "clock_mhz": clock / 1e6,
        "verify": None if verify is None else {
            "beats": len(verify["samples"]), "mismatches": verify["mismatches"], "sim": verify["sim"],
            "stall": verify["stall"], "all_match": all(s["match"] for s in verify["samples"])},
    }
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
