#!/usr/bin/env python3
"""Zero skipping and batching on trained networks (issue #14): the same checkpoint, exit
knob and memory with ``zero_skip`` off and on, for each MP batch size B (``--batches``;
B samples share every weight read). Per data set and setting: integer accuracy with exit,
cycles per sample (throughput) and latency per sample (a batch's results leave together:
the batch's cycles), exact for every test sample; weight reads per sample (exact); energy
per sample (45 nm model; the batch's energy over its samples) with its largest
components, and again with the weight memory's energy from the exact reads (the report
profiles a few inferences at full depth and scales each later layer by the share of copy
groups an inference streams); per layer the weight reads skipped and the cycle reduction.

A batch needs a row per sample in the shared layer 1: a batch larger than the config's
rows runs on an array with the next multiple of the classes above B as its rows (the
table says which).

    python scripts/bench_zero_skip.py [--cells mnist:runs/mnist_4x2000_mp_r3.ckpt,...]
                                      [--batches 1] [--skip both|off|on] [--k 1.5]
                                      [--weight-mem sram] [--limit N]
                                      [--toggle-samples 16] [--json OUT]

Prints Markdown tables; ``--json`` writes every figure to OUT.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ffaccel.cli import (atomic_write_text, dataset_matching, make_parser, path_arg, run_main, strict_float,
                         strict_int)
from ffaccel.energy.coeffs import load_coeffs
from ffaccel.energy.report import report
from ffaccel.errors import FFAccelError
from ffaccel.fixedpoint import ceil_div
from ffaccel.fsutil import check_writable
from ffaccel.model.checkpoint import checkpoint_config
from ffaccel.perf.report import analyse, load_workload

PROG = "bench_zero_skip"
DEFAULT_CELLS = "mnist:runs/mnist_4x2000_mp_r3.ckpt,fashion-mnist:runs/fmnist_4x2000_mp_r3.ckpt"


def parse_cells(text: str) -> list[tuple[str, str]]:
    cells = []
    for item in text.split(","):
        ds, sep, ckpt = item.partition(":")
        if not sep or not ds or not ckpt:
            raise FFAccelError(f"--cells {item!r}: expected DATASET:CHECKPOINT")
        if not Path(ckpt).is_file():
            raise FFAccelError(f"--cells {item!r}: checkpoint {ckpt!r} does not exist")
        # the data set must exist and match the network: checked before any cell runs
        _, cfg = checkpoint_config(ckpt, {})
        dataset_matching(ds, cfg.inputs, cfg.classes, f"--cells {item!r}")
        cells.append((ds, ckpt))
    return cells


def parse_batches(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise FFAccelError(f"--batches {text!r}: expected batch sizes like 1,2,4,8") from None
    if not out or any(not 1 <= b <= 64 for b in out):
        raise FFAccelError(f"--batches {text!r}: each batch size must be in 1..64")
    return out


def measure(dataset: str, ckpt: str, skip: bool, batch: int, args) -> dict:
    t0 = time.perf_counter()
    _, base = checkpoint_config(ckpt, {})
    over = {"weight_mem": args.weight_mem, "zero_skip": skip, "batch": batch}
    if batch > base.rows:
        # the shared layer 1 needs a row per sample; rows a multiple of the classes keep
        # a copy group to whole samples (a group that straddles two samples re-reads its
        # weights for either)
        over["rows"] = ceil_div(batch, base.classes) * base.classes
    wl = load_workload(over, checkpoint=ckpt, dataset=dataset, limit=args.limit, k=args.k)
    perf = analyse(wl, 0)
    s = perf["summary"]
    labels = np.array([r["label"] for r in perf["samples"]])
    energy = report(wl, load_coeffs(tech=wl.cfg.tech), args.toggle_samples)
    e_word = set(energy["e_weight_word_pj"])
    assert len(e_word) == 1, "the bench's weights share one memory (no on-chip budget)"
    out = {"dataset": dataset, "checkpoint": ckpt, "zero_skip": skip, "batch": batch,
           "array": f"{wl.cfg.rows}x{wl.cfg.cols}", "samples": s["samples"],
           "accuracy": float((labels == np.asarray(wl.y)).mean()),
           "cycles_per_sample": s["cycles_per_sample"], "latency_us": s["latency_us"],
           "latency_cycles": s["cycles_per_inference"],
           "weight_reads_per_inference": s["weight_reads_per_inference"],
           "weight_reads_per_sample": s["weight_reads_per_sample"],
           "energy_uj": energy["total_pj"] / 1e6, "full_depth_uj": energy["full_depth_pj"] / 1e6,
           # the weight memory's energy from the exact reads of every sample (the report's
           # comes from the profiled inferences, each later layer scaled by its share of
           # copy groups) and the total with it
           "weight_mem_exact_uj": s["weight_reads_per_sample"] * e_word.pop() / 1e6,
           "energy_components_uj": {k: v / 1e6 for k, v in energy["components"].items()},
           "exit_histogram": s["exit_histogram"], "per_layer": s.get("zero_skip"),
           "seconds": round(time.perf_counter() - t0, 1)}
    out["energy_exact_reads_uj"] = out["energy_uj"] - out["energy_components_uj"]["weight_mem"] + out["weight_mem_exact_uj"]
    return out


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--cells", default=DEFAULT_CELLS, help=f"DATASET:CHECKPOINT,... (default {DEFAULT_CELLS})")
    p.add_argument("--skip", choices=("both", "off", "on"), default="both", help="zero skipping settings to run")
    p.add_argument("--batches", default="1", help="MP batch sizes B (config field batch), comma-separated (default 1)")
    p.add_argument("--k", type=strict_float, default=1.5, help="exit knob (default 1.5)")
    p.add_argument("--weight-mem", choices=("sram", "dram"), default="sram")
    p.add_argument("--limit", type=strict_int, default=None, help="first N test samples (default: all)")
    p.add_argument("--toggle-samples", type=strict_int, default=16, help="inferences whose toggles are exact")
    p.add_argument("--json", type=path_arg, metavar="OUT")
    args = p.parse_args(argv)
    if args.json and (why := check_writable(args.json, folder=False)):
        raise FFAccelError(f"--json {args.json!r} cannot be written: {why}")
    cells = parse_cells(args.cells)
    batches = parse_batches(args.batches)
    if args.toggle_samples < 1:
        raise FFAccelError(f"--toggle-samples={args.toggle_samples} out of range (allowed: >= 1)")
    if args.limit is not None and args.limit < 1:
        raise FFAccelError(f"--limit={args.limit} out of range (allowed: >= 1)")
    rows = []
    print("| data set | zero skip | B | array | accuracy | cycles / sample | latency / sample (us) | "
          "weight reads / sample | energy / sample (uJ) | weight memory (uJ) | with the exact reads (uJ) | s |")
    print("| --- " * 12 + "|")
    for ds, ckpt in cells:
        for skip in {"both": (False, True), "off": (False,), "on": (True,)}[args.skip]:
            for batch in batches:
                r = measure(ds, ckpt, skip, batch, args)
                rows.append(r)
                print(f"| {ds} | {'on' if skip else 'off'} | {batch} | {r['array']} | {r['accuracy']:.2%} | "
                      f"{r['cycles_per_sample']:,.0f} | {r['latency_us']:,.1f} | {r['weight_reads_per_sample']:,.0f} | "
                      f"{r['energy_uj']:.2f} | {r['energy_components_uj']['weight_mem']:.2f} | "
                      f"{r['energy_exact_reads_uj']:.2f} | {r['seconds']:.0f} |",
                      flush=True)
    print("\n| data set | zero skip | B | layer | inferences | weight reads skipped | cycles / inference | "
          "streaming every input | reduction |")
    print("| --- " * 9 + "|")
    for r in rows:
        for lay in r["per_layer"] or []:
            print(f"| {r['dataset']} | on | {r['batch']} | {lay['layer']} | {lay['inferences']:,d} | "
                  f"{lay['weight_reads_skipped']:.1%} | {lay['cycles_per_inference']:,.0f} | "
                  f"{lay['cycles_streaming_every_input']:,.0f} | {lay['cycle_reduction']:.2f}x |")
    print("\n| data set | zero skip | B | largest energy components per sample (uJ) |")
    print("| --- " * 4 + "|")
    for r in rows:
        top = sorted(r["energy_components_uj"].items(), key=lambda kv: -kv[1])[:4]
        print(f"| {r['dataset']} | {'on' if r['zero_skip'] else 'off'} | {r['batch']} | "
              + ", ".join(f"{k} {v:.3f}" for k, v in top) + " |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"k": args.k, "weight_mem": args.weight_mem, "batches": batches,
                                                 "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
