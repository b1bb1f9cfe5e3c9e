"""``python -m ffaccel.perf``: cycles, utilisation, MACs, memory accesses and bit toggles of
the engine for a workload, without simulating RTL.

    python -m ffaccel.perf <config flags> [--samples N --seed S | --checkpoint CKPT --dataset D --limit N]
                           [--toggle-samples M] [--json]

Cycles, MACs and accesses are exact for every sample; toggles are exact for the first M
samples and extrapolated layer by layer (see ``ffaccel.perf.report``, the library behind
this command).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

from ..cli import FFAccelError, add_config_args, add_workload_args, make_parser, run_main, strict_int, workload_from_args
from .report import analyse, load_workload, summarise

# analyse, load_workload, summarise: re-exported from the library, ffaccel.perf.report
__all__ = ["build_parser", "main", "analyse", "load_workload", "summarise"]

PROG = "ffaccel.perf"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    add_workload_args(p)
    p.add_argument("--toggle-samples", type=strict_int, default=64, help="inferences whose toggles are computed exactly")
    p.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.toggle_samples < 0:
        raise FFAccelError(f"--toggle-samples={args.toggle_samples} out of range (allowed: >= 0)")
    t0 = time.perf_counter()
    wl = workload_from_args(args)
    rep = analyse(wl, args.toggle_samples)
    rep["timing"]["total_s"] = round(time.perf_counter() - t0, 3)
    out = {"config": wl.cfg.to_dict(resolved=True), "workload": wl.source, **rep}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = rep["summary"]
    print(f"{wl.cfg.summary()}  {s['samples']} samples, {s['inferences']} inferences")
    print(f"  cycles/inference {s['cycles_per_inference']:.0f} ({s['latency_us']:.1f} us at "
          f"{wl.cfg.clock_mhz:g} MHz); full depth {s['full_depth']['cycles']}")
    print(f"  MACs/sample {s['macs_per_sample'] / 1e6:.3f} M; utilisation useful {s['utilisation_useful'] * 100:.1f}%, "
          f"PE busy {s['utilisation_pe_busy'] * 100:.1f}%")
    print(f"  per inference: weight reads {s['weight_reads_per_inference']:.0f}, activation reads "
          f"{s['act_reads_per_inference']:.0f}, writes {s['act_writes_per_inference']:.0f}")
    print("  toggles/inference: " + ", ".join(f"{k} {v:.3g}" for k, v in s["toggles_per_inference"].items()))
    for lay in s.get("zero_skip", []):
        print(f"  zero skip, layer {lay['layer']}: weight reads skipped {lay['weight_reads_skipped'] * 100:.1f}%, "
              f"cycles {lay['cycles_per_inference']:.0f} ({lay['cycle_reduction']:.2f}x fewer)")
    print(f"  exit histogram {s['exit_histogram']}; wall {rep['timing']['total_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
