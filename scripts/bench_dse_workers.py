#!/usr/bin/env python3
"""Repeat the distributed DSE on fresh stores and count failures and double evaluations
(issue #13: ``--workers 2`` used to fail in 1 of 4 runs of dse_small and in 2 of 2 runs of
a 288-design grid with "Cannot tell a COMPLETE trial").

    python scripts/bench_dse_workers.py [--runs 20] [--workers 2] [--space small|grid288|FILE]
                                        [--json] [--out runs/bench_dse_workers]

``small`` is examples/dse_small.toml; ``grid288`` is a 288-design grid of fast designs on the
same digits network (rows x cols x wbits x k x weight memory). Each run uses a new SQLite
store and output folder; the trained network comes from the shared cache (trained once).
A run passes when the command exits 0, every design of the grid has exactly one completed
evaluation of its own, and the CSV is written.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ffaccel.cli import FFAccelError, make_parser, run_main, strict_int
from ffaccel.fsutil import atomic_write_text

PROG = "bench_dse_workers.py"
REPO = Path(__file__).resolve().parents[1]

GRID288 = """
[workload]
dataset = "digits"
layers = "2x64"
limit = 100
toggle_samples = 1

[base]
mode = "mp"

[axes]
rows = [2, 5, 10, 16]
cols = [4, 8, 16]
wbits = [4, 8]
k = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
weight_mem = ["sram", "dram"]

[strategy]
kind = "grid"
"""


def evaluated(db: Path) -> Counter:
    """point_key -> completed evaluations of its own (duplicates of another trial excluded)."""
    c = sqlite3.connect(db)
    try:
        rows = c.execute(
            "select a.value_json from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
            "and a.key = 'point_key' where t.state = 'COMPLETE' and t.trial_id not in "
            "(select trial_id from trial_user_attributes where key = 'duplicate_of')").fetchall()
    finally:
        c.close()
    return Counter(json.loads(v) for (v,) in rows)


def one_run(space: Path, designs: int, workers: int, work: Path) -> dict:
    db, out = work / "s.db", work / "out"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ffaccel.dse", "--no-progress", "--json", "--space", str(space),
                        "--store", str(db), "--out", str(out), "--workers", str(workers)],
                       capture_output=True, text=True, timeout=3600, cwd=REPO)
    counts = evaluated(db) if db.exists() else Counter()
    twice = sum(1 for v in counts.values() if v > 1)
    ok = (r.returncode == 0 and len(counts) == designs and twice == 0
          and any(p.suffix == ".csv" for p in out.glob("*")))
    return {"ok": ok, "rc": r.returncode, "designs": len(counts), "evaluated_twice": twice,
            "seconds": round(time.perf_counter() - t0, 1),
            "stderr": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""}


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--runs", type=strict_int, default=20)
    p.add_argument("--workers", type=strict_int, default=2)
    p.add_argument("--space", default="small", help="small, grid288, or a space file")
    p.add_argument("--out", default="runs/bench_dse_workers")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.runs < 1:
        raise FFAccelError(f"--runs={args.runs} out of range (allowed: >= 1)")
    from ffaccel.dse.space import load_space
    with tempfile.TemporaryDirectory(prefix="ffaccel-bench-dse-") as tmp:
        tmp = Path(tmp)
        if args.space == "small":
            space = REPO / "examples" / "dse_small.toml"
        elif args.space == "grid288":
            space = tmp / "grid288.toml"
            space.write_text(GRID288)
        else:
            space = Path(args.space)
        designs = len(load_space(space).grid())
        runs = []
        for i in range(args.runs):
            work = tmp / f"run{i}"
            work.mkdir()
            runs.append(one_run(space, designs, args.workers, work))
            if not args.json:
                r = runs[-1]
                print(f"run {i + 1}/{args.runs}: {'ok' if r['ok'] else 'FAIL'} rc {r['rc']} designs {r['designs']}/"
                      f"{designs} twice {r['evaluated_twice']} {r['seconds']} s {r['stderr'][:120]}", file=sys.stderr)
    doc = {"space": args.space, "designs": designs, "workers": args.workers, "runs": len(runs),
           "failures": sum(1 for r in runs if not r["ok"]), "evaluated_twice": sum(r["evaluated_twice"] for r in runs),
           "results": runs}
    atomic_write_text(Path(args.out) / f"bench_dse_workers_{Path(str(args.space)).stem}.json",
                      json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{doc['runs']} runs of {designs} designs with {args.workers} workers: {doc['failures']} failed, "
              f"{doc['evaluated_twice']} designs evaluated twice")
    return 1 if doc["failures"] else 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
