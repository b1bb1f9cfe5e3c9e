#!/usr/bin/env python3
"""The co-design study's Pareto front (issue #15) as a Markdown table and a PNG, with the
MNIST-class silicon that users compare with marked: read from the DSE's CSV
(``python -m ffaccel.dse --space examples/dse_codesign.toml`` writes
``runs/dse/dse_codesign/dse_codesign_points.csv``).

    python scripts/codesign_pareto.py [--csv FILE] [--png OUT] [--json OUT]

The front is over accuracy (max), energy per inference, area and latency (min). The
anchors are energies per MNIST-class image of published chips at their own node, and the
same scaled to 45 nm with ffaccel's first-order rule (energy ~ feature size at equal
supply; their supplies differ, so the scaled figure is a rough guide, not a comparison
at equal conditions).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ffaccel.cli import atomic_write_text, make_parser, path_arg, run_main
from ffaccel.dse.pareto import pareto
from ffaccel.errors import FFAccelError
from ffaccel.fsutil import atomic_write_bytes, check_writable

PROG = "codesign_pareto"
OBJECTIVES = ("accuracy:max", "energy_pj:min", "area_mm2:min", "latency_us:min")
#: (label, energy per image in nJ, node in nm): the figures issue #15 quotes
ANCHORS = (("JSSC 2024, 28 nm", 2340.0, 28), ("ISSCC 2019, 65 nm", 236.5, 65), ("VLSI 2017, 40 nm", 50.1, 40))
NUMERIC = ("accuracy", "energy_pj", "area_mm2", "latency_us", "latency_cycles", "cycles_per_sample",
           "macs_per_sample", "mean_exit_layer", "area_cells")


def anchors_at_45nm() -> list[dict]:
    return [{"chip": name, "nj": nj, "node_nm": nm, "nj_at_45nm": nj * 45.0 / nm} for name, nj, nm in ANCHORS]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FFAccelError(f"--csv {str(path)!r} does not exist (run python -m ffaccel.dse --space "
                           "examples/dse_codesign.toml first)")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows:
        raise FFAccelError(f"--csv {str(path)!r} holds no designs")
    missing = [k for k in NUMERIC[:4] if k not in rows[0]]
    if missing:
        raise FFAccelError(f"--csv {str(path)!r} has no {missing[0]!r} column: not a co-design study's CSV")
    for r in rows:
        for k in NUMERIC:
            if k in r and r[k] != "":
                r[k] = float(r[k])
    return rows


def plot(rows: list[dict], front: list[dict]) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.scatter([r["energy_pj"] / 1e3 for r in rows], [r["accuracy"] * 100 for r in rows], s=12, c="0.65",
               label="designs")
    fr = sorted(front, key=lambda r: r["energy_pj"])
    ax.scatter([r["energy_pj"] / 1e3 for r in fr], [r["accuracy"] * 100 for r in fr], s=28, c="C3",
               label="Pareto front (accuracy, energy, area, latency)")
    two = sorted(pareto(rows, ("energy_pj:min", "accuracy:max")), key=lambda r: r["energy_pj"])
    ax.plot([r["energy_pj"] / 1e3 for r in two], [r["accuracy"] * 100 for r in two], "C3--", lw=1)
    lo = min(r["accuracy"] for r in rows) * 100
    for i, a in enumerate(anchors_at_45nm()):
        ax.axvline(a["nj"], color=f"C{i}", lw=1, ls=":")
        ax.axvline(a["nj_at_45nm"], color=f"C{i}", lw=1, ls="-", alpha=0.5)
        ax.annotate(f"{a['chip']}: {a['nj']:g} nJ\n({a['nj_at_45nm']:.0f} nJ at 45 nm)", (a["nj_at_45nm"], lo),
                    fontsize=6, rotation=90, va="bottom", ha="right", color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (nJ, 45 nm model; anchors dotted at their node, solid at 45 nm)")
    ax.set_ylabel("MNIST accuracy with early exit (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Network and engine co-design: accuracy vs energy")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--csv", type=path_arg, default="runs/dse/dse_codesign/dse_codesign_points.csv")
    p.add_argument("--png", type=path_arg, default="runs/codesign/pareto.png")
    p.add_argument("--json", type=path_arg, metavar="OUT")
    args = p.parse_args(argv)
    for flag, path in (("--png", args.png), ("--json", args.json)):
        if path and (why := check_writable(Path(path), folder=False)):
            raise FFAccelError(f"{flag} {path!r} cannot be written: {why}")
    rows = read_rows(Path(args.csv))
    front = sorted(pareto(rows, OBJECTIVES), key=lambda r: r["energy_pj"])
    axes = [k for k in ("layers", "wbits", "k", "batch", "sram_bank_kib") if k in rows[0]]
    print("| " + " | ".join(axes) + " | accuracy | energy / inference | area | latency |")
    print("| --- " * (len(axes) + 4) + "|")
    for r in front:
        print("| " + " | ".join(str(r[k]) for k in axes) + f" | {r['accuracy']:.2%} | "
              f"{r['energy_pj'] / 1e3:,.1f} nJ | {r['area_mm2']:.2f} mm^2 | {r['latency_us']:,.1f} us |")
    print("\nanchors: " + "; ".join(f"{a['chip']} {a['nj']:g} nJ ({a['nj_at_45nm']:.0f} nJ at 45 nm)"
                                    for a in anchors_at_45nm()))
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.png), plot(rows, front))
    if args.json:
        atomic_write_text(args.json, json.dumps({"designs": len(rows), "front": front,
                                                 "anchors": anchors_at_45nm()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
