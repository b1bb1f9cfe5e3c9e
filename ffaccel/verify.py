"""``python -m ffaccel.verify``: the generated RTL, simulated with cocotb (Verilator or Icarus),
against the bit-exact golden model, sample by sample and cycle for cycle.

Without ``--checkpoint`` the network has random integer weights and the inputs are random
codes, all drawn from ``--seed`` by :func:`verify_samples` (the same workload as
``python -m ffaccel.perf`` with the same flags); thresholds are chosen so that samples
exit at different layers. With ``--checkpoint CKPT --dataset D`` the checkpoint is
quantised, its exit thresholds calibrated on the validation split, and the first
``--samples`` test images are verified.

The thresholds are in the config, so they are the registers' reset values in the RTL;
the bench also writes them (and the exit enable) through the cfg port before streaming.
Inputs stream with random idle cycles and results are accepted with random back-pressure
(``--stall P``). Each sample passes when label, exit layer, scores, every activation the
probe shows and ``res_cycles`` (against ``ffaccel.perf.cycles``) all match. Physical layers
(``--physical``): the bench plays P behind the external-layer port with the golden model's
recorded answers (``--port-stall P``: P stalls and answers after random latencies; the
cycles are then at least the model's) and checks every block input P gets.

Exit status: 0 when nothing mismatches, 1 on a mismatch (or a failed build / run),
2 on bad input. ``--json`` prints ``{"config", "samples": [{"label", "exit_layer",
"cycles", "match"}], "mismatches", ...}`` and nothing else on stdout.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .fsutil import check_writable
from .cli import path_arg, check_seed, FFAccelError, add_config_args, config_from_args, config_overrides, make_parser, run_main, strict_float, strict_int
from .config import AccelConfig
from .sim.faults import FAULTS, unbuilt_unit
from .sim.runner import DEFAULT_BUILD_DIR, SIMS

PROG = "ffaccel.verify"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    g = p.add_argument_group("verification")
    g.add_argument("--sim", choices=SIMS, default="verilator",
                   help="simulator (Verilator: ~20 s build, fast; Icarus: 1 s build, slower)")
    g.add_argument("--samples", type=strict_int, default=8, help="samples to verify")
    g.add_argument("--seed", type=strict_int, default=0, help="random weights, inputs and stalls")
    g.add_argument("--checkpoint", type=path_arg, help="trained checkpoint (then --dataset is needed)")
    g.add_argument("--dataset", type=path_arg, help="with --checkpoint: mnist, fashion-mnist, digits or a path")
    g.add_argument("--stall", type=strict_float, default=0.25,
                   help="probability of an idle input cycle and of result back-pressure per cycle")
    g.add_argument("--port-stall", type=strict_float, default=0.0,
                   help="physical layers: P stalls the port and pauses its answers with this probability, "
                        "after a latency drawn from 1-4x --port-latency (default 0: a fixed latency, "
                        "the cycles exact)")
    g.add_argument("--vcd", type=path_arg, metavar="FILE",
                   help="write a VCD of the simulation to FILE (Verilator: a separate --trace build)")
    g.add_argument("--build-dir", type=path_arg, default="build/sim", help="simulator builds (cached)")
    g.add_argument("--fault", choices=tuple(FAULTS), default=None,
                   help="inject a deliberate RTL bug (checks that the bench catches it)")
    g.add_argument("--json", action="store_true", help="print a JSON report only")
    return p


# ---------------------------------------------------------------------------- samples

def verify_samples(cfg: AccelConfig, seed: int, n: int):
    """The (QuantModel, inputs) that ``python -m ffaccel.verify --seed SEED --samples N``
    verifies without a checkpoint. It is :func:`ffaccel.workload.random_workload`, the
    workload ``python -m ffaccel.perf`` / ``ffaccel.energy`` use for the same flags, so the
    cycle model and the RTL see exactly the same model and samples:
    ``rng = np.random.default_rng(seed)``; ``QuantModel.random(cfg, rng)``; inputs
    ``rng.integers(0, amax + 1, (n, inputs))``; then, unless ``cfg`` already holds
    thresholds, ``workload.spread_thresholds`` (per layer, the median exit metric of the
    samples still running, so samples exit at different layers). The thresholds are in
    the returned ``qm.cfg``."""
    from .workload import random_workload
    wl = random_workload(cfg, seed, n)
    return wl.qm, np.asarray(wl.x, dtype=np.int64)


def checkpoint_samples(args, n: int):
    """(qm, x, labels) from a checkpoint: :func:`ffaccel.workload.dataset_workload` (the
    checkpoint quantised, thresholds calibrated on the validation split with the integer
    golden model, the first ``n`` test images). Flags override the checkpoint's config
    (array shape, exit rule, ...) but not its network or formats."""
    from .model.checkpoint import checkpoint_config
    from .workload import dataset_workload
    if not args.dataset:
        raise FFAccelError("--checkpoint needs --dataset (the test images to verify)")
    _, cfg = checkpoint_config(args.checkpoint, config_overrides(args))
    wl = dataset_workload(args.checkpoint, args.dataset, n, overrides=cfg, k=getattr(args, "exit_k", None))
    return wl.qm, np.asarray(wl.x, dtype=np.int64), wl.y


# ---------------------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.samples < 1:
        raise FFAccelError(f"--samples={args.samples} out of range (allowed: >= 1)")
    check_seed(args.seed)
    if args.vcd:
        why = check_writable(Path(args.vcd), folder=False)
        if why:
            raise FFAccelError(f"--vcd {args.vcd!r} cannot be written: {why}")
    build_dir = Path(args.build_dir) if args.build_dir else DEFAULT_BUILD_DIR
    why = check_writable(build_dir, folder=True, whole=False)       # a cache: a link is fine
    if why:
        raise FFAccelError(f"build folder {str(build_dir)!r} cannot be written: {why}")
    if not 0.0 <= args.stall < 1.0:
        raise FFAccelError(f"--stall={args.stall} out of range (allowed: 0 <= P < 1)")
    if not 0.0 <= args.port_stall < 1.0:
        raise FFAccelError(f"--port-stall={args.port_stall} out of range (allowed: 0 <= P < 1)")
    if args.dataset and not args.checkpoint:
        raise FFAccelError("--dataset is only used with --checkpoint")
    if args.sim == "icarus" and shutil.which("iverilog") is None:
        raise FFAccelError("--sim icarus: iverilog is not installed (apt-get install iverilog), or use --sim verilator")
    truth = None
    if args.checkpoint:
        qm, x, truth = checkpoint_samples(args, args.samples)
    else:
        cfg = config_from_args(args)
        cfg.check_float64_exact()
        qm, x = verify_samples(cfg, args.seed, args.samples)
    cfg = qm.cfg
    if args.fault and unbuilt_unit(args.fault, cfg):
        raise FFAccelError(f"--fault {args.fault} changes nothing: this engine has no {unbuilt_unit(args.fault, cfg)}")
    if args.fault == "score_mask_ignored" and not cfg.score_mask:
        raise FFAccelError("--fault score_mask_ignored changes nothing when every layer is scored: give a "
                           "config that leaves a layer out (score_mask in --config, or a checkpoint that does)")

    from .sim.runner import SimError, verify
    try:
        out = verify(qm, x, sim=args.sim, build_dir=args.build_dir, fault=args.fault,
                     in_stall=args.stall, out_stall=args.stall, seed=args.seed, vcd=args.vcd,
                     port_stall=args.port_stall)
    except SimError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    rep, run, info = out["report"], out["run"], out["build"]
    dt = time.perf_counter() - t0
    cps = rep.sim_cycles / rep.sim_seconds if rep.sim_seconds > 0 else None
    doc = {
        "config": cfg.to_dict(resolved=True),
        "samples": [s.to_dict() for s in rep.samples],
        "mismatches": rep.mismatches,
        "sim": args.sim,
        "seed": args.seed,
        "stall": args.stall,
        "port_stall": args.port_stall,
        "fault": args.fault,
        "seconds": round(dt, 3),
        "build_seconds": round(info.seconds, 3),
        "rebuilt": info.rebuilt,
        "run_seconds": round(run.seconds, 3),
        "sim_cycles": rep.sim_cycles,
        "cycles_per_s": round(cps) if cps else None,
        "errors": ([f"run: {e}" for e in rep.run_errors]
                   + [f"sample {s.index}: {e}" for s in rep.samples for e in s.errors])[:50],
    }
    if args.vcd:
        doc["vcd"] = str(Path(args.vcd).resolve())
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{cfg.summary()} on {args.sim}, seed {args.seed}, stall {args.stall}"
              + (f", fault {args.fault}" if args.fault else ""))
        print(f"{'sample':>6} {'label':>5} {'exit':>4} {'cycles':>8}  match")
        for s in rep.samples:
            extra = "" if s.match else f"  expected label {s.expected['label']} exit {s.expected['exit_layer']}"
            if truth is not None:
                extra += f"  (true {int(truth[s.index])})"
            print(f"{s.index:>6} {str(s.label):>5} {str(s.exit_layer):>4} {str(s.cycles):>8}  "
                  f"{'ok' if s.match else 'MISMATCH'}{extra}")
        for e in doc["errors"][:10]:
            print(f"  {e}")
        rate = f"{cps:,.0f} simulated cycles/s" if cps else "n/a"
        print(f"{len(rep.samples)} samples, {rep.mismatches} mismatches; {dt:.1f} s wall "
              f"(build {info.seconds:.1f} s{'' if info.rebuilt else ', cached'}, simulator {run.seconds:.1f} s); "
              f"{rep.sim_cycles:,} cycles, {rate}")
        if args.vcd:
            print(f"VCD: {doc['vcd']}")
    return 0 if rep.mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
