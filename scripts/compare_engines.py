#!/usr/bin/env python3
"""Before/after equivalence of two engine versions: the RTL of a git revision (default: the
last revision with the one-function engine) and the RTL of this working tree, simulated
on the same random configs, models and inputs, must give the same labels, exit layers,
scores, cycle and MAC counters, result rows and activation probe beats.

    python scripts/compare_engines.py [--ref 66b811a] [--configs 40] [--seed 0] [--json]

Each side runs in its own Python process (the reference from ``git archive REV``), on the
Amaranth simulator (``ffaccel.hw.simtop.run_engine``, the same API in both versions).
The configs cover both modes, label sharing on and off, copy groups (rows < classes) and
every exit policy; thresholds are spread so that samples exit at every layer.
Exit status 0 when every config agrees, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REF = "66b811a"        # the engine before the redesign into units (one 465-line elaborate)

# runs inside each side's interpreter: simulate every case, dump everything observable
WORKER = r"""
import json, sys
import numpy as np
from ffaccel.config import AccelConfig
from ffaccel.hw.simtop import run_engine
from ffaccel.model.golden import QuantModel
cases = json.load(open(sys.argv[1]))
out = []
import dataclasses
known = {f.name for f in dataclasses.fields(AccelConfig)} | {"schema"}
for c in cases:
    # fields newer than this side's config carry their defaults in these cases: drop them
    cfg = AccelConfig.from_dict({k: v for k, v in c["config"].items() if k in known})
    arr = lambda v: [np.asarray(a, dtype=np.int64) for a in v]
    qm = QuantModel(cfg, arr(c["weights"]), arr(c["biases"]), arr(c["heads"]), arr(c["head_biases"]))
    x = np.asarray(c["x"], dtype=np.int64)
    step = 1 if cfg.mode == "mp" else cfg.rows
    res, probes = run_engine(qm, [x[i:i + step] for i in range(0, len(x), step)])
    out.append({"results": [[r.label, r.exit_layer, list(map(int, r.scores)), r.cycles, r.macs, r.row] for r in res],
                "probes": [[int(a), int(b), int(t), list(map(int, v))] for a, b, t, v in probes]})
json.dump(out, open(sys.argv[2], "w"))
"""


def make_cases(n: int, seed: int) -> list[dict]:
    from ffaccel.model.golden import GoldenModel, QuantModel
    from ffaccel.workload import informative_config, sensitivity, spread_thresholds
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        # cycle through the structural classes so that every one is covered
        mode = ("mp", "op")[i % 2]
        share = bool((i // 2) % 2)
        policy = ("max", "margin", "none")[(i // 4) % 3]
        for _ in range(50):
            inputs = int(rng.integers(8, 24))
            classes = int(rng.integers(2, min(7, inputs - 1) + 1))
            rows = int(rng.integers(1, classes + 1)) if (mode == "mp" and i % 3 == 0) else int(rng.integers(1, 6))
            cfg = informative_config(
                rng, inputs=inputs, classes=classes, rows=rows, cols=int(rng.integers(1, 6)),
                layers=tuple(int(v) for v in rng.integers(1, 11, size=int(rng.integers(1, 4)))),
                abits=int(rng.integers(2, 8)), wbits=int(rng.integers(2, 8)), mode=mode, exit_policy=policy,
                label_share=share)
            qm = QuantModel.random(cfg, rng)
            x = rng.integers(0, cfg.amax + 1, size=(4 if mode == "mp" else cfg.rows + 2, cfg.inputs))
            x[0, cfg.classes:] = 0
            x[-1] = cfg.amax
            if sensitivity(qm, x) >= 0.2:
                break
        qm = spread_thresholds(qm, x)
        exits = GoldenModel(qm).run(x).exit_layer
        lst = lambda v: [a.tolist() for a in v]   # noqa: E731
        cases.append({"config": qm.cfg.to_dict(resolved=True), "weights": lst(qm.weights), "biases": lst(qm.biases),
                      "heads": lst(qm.heads), "head_biases": lst(qm.head_biases), "x": x.tolist(),
                      "exits": [int(e) for e in exits]})
    return cases


def run_side(tree: Path, cases_path: Path, out_path: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORKER, str(cases_path), str(out_path)], cwd=tree, env=env, check=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    from ffaccel.cli import make_parser
    ap = make_parser("compare_engines.py", __doc__.splitlines()[0])
    ap.add_argument("--ref", default=REF, help="git revision of the reference engine")
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.configs < 1:
        ap.error("--configs must be >= 1")
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{args.ref}^{{commit}}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        ap.error(f"--ref {args.ref!r} is not a commit of this repository")
    cases = make_cases(args.configs, args.seed)
    with tempfile.TemporaryDirectory(prefix="ffaccel-cmp-") as tmp:
        tmp = Path(tmp)
        ref_tree = tmp / "ref"
        ref_tree.mkdir()
        arch = tmp / "ref.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(arch), args.ref, "ffaccel"], check=True)
        with tarfile.open(arch) as t:
            t.extractall(ref_tree, filter="data")
        cpath = tmp / "cases.json"
        cpath.write_text(json.dumps(cases))
        t_ref = run_side(ref_tree, cpath, tmp / "ref.json")
        t_new = run_side(REPO, cpath, tmp / "new.json")
        ref = json.loads((tmp / "ref.json").read_text())
        new = json.loads((tmp / "new.json").read_text())
    bad = []
    for i, (c, a, b) in enumerate(zip(cases, ref, new)):
        if a != b:
            what = [k for k in ("results", "probes") if a[k] != b[k]]
            bad.append({"case": i, "config": c["config"], "differs": what})
    cfgs = [c["config"] for c in cases]
    cover = {
        "mp": sum(c["mode"] == "mp" for c in cfgs), "op": sum(c["mode"] == "op" for c in cfgs),
        "mp_share": sum(c["mode"] == "mp" and c["label_share"] for c in cfgs),
        "mp_no_share": sum(c["mode"] == "mp" and not c["label_share"] for c in cfgs),
        "mp_copy_groups": sum(c["mode"] == "mp" and c["rows"] < c["classes"] for c in cfgs),
        **{f"policy_{p}": sum(c["exit_policy"] == p for c in cfgs) for p in ("max", "margin", "none")},
        "samples": sum(len(c["x"]) for c in cases),
        "early_exits": sum(e < len(c["config"]["layers"]) for c in cases for e in c["exits"]),
        "probe_beats": sum(len(r["probes"]) for r in new),
        "results": sum(len(r["results"]) for r in new),
    }
    rep = {"ref": args.ref, "configs": len(cases), "mismatching_configs": len(bad), "coverage": cover,
           "seconds_ref": round(t_ref, 1), "seconds_new": round(t_new, 1), "mismatches": bad[:5]}
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{len(cases)} configs, {cover['samples']} samples, {cover['results']} results, "
              f"{cover['probe_beats']} probe beats: {len(bad)} configs differ from {args.ref}")
        print("coverage: " + ", ".join(f"{k} {v}" for k, v in cover.items()))
        for b in bad[:5]:
            print(f"  case {b['case']}: {', '.join(b['differs'])} differ; config {b['config']}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
