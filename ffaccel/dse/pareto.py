"""Pareto front of the DSE's designs, and its outputs: a CSV of every design and Pareto plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..fsutil import atomic_write_dir
from .space import Space


def pareto(rows: list[dict], objectives: tuple) -> list[dict]:
    """The rows no other row dominates on ``objectives`` (``"metric:max"`` / ``"metric:min"``)."""
    def better_eq(a, b, o):
        name, d = o.split(":")
        return a[name] >= b[name] if d == "max" else a[name] <= b[name]

    def strictly(a, b, o):
        name, d = o.split(":")
        return a[name] > b[name] if d == "max" else a[name] < b[name]
    front = []
    for r in rows:
        dominated = any(all(better_eq(s, r, o) for o in objectives) and any(strictly(s, r, o) for o in objectives)
                        for s in rows if s is not r)
        if not dominated:
            front.append(r)
    return front


def write_outputs(space: Space, rows: list[dict], front: list[dict], out: Path) -> list[str]:
    """``<space>_points.csv`` (every design, marked if on ``front``) and two Pareto plots in
    ``out``; returns the paths written."""
    keys = ["trial", *sorted(space.axes), *space.metrics, "pareto", "point_key", "worker"]
    keys_front = {r["point_key"] for r in front}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "pareto": r["point_key"] in keys_front})
    # rendered in memory first, then swapped in as one set: a failure leaves the folder as it was
    data = {f"{space.name}_points.csv": buf.getvalue().encode()}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for xk, yk, fname in (("energy_pj", "accuracy", "pareto_energy_accuracy.png"),
                          ("area_cells", "latency_us", "pareto_latency_area.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([r[xk] for r in rows], [r[yk] for r in rows], s=14, c="0.6", label="designs")
        fr = sorted(front, key=lambda r: r[xk])
        ax.scatter([r[xk] for r in fr], [r[yk] for r in fr], s=30, c="C3", label="Pareto front (all objectives)")
        two = pareto(rows, (f"{xk}:min", f"{yk}:{'max' if yk == 'accuracy' else 'min'}"))
        two = sorted(two, key=lambda r: r[xk])
        ax.plot([r[xk] for r in two], [r[yk] for r in two], "C3--", lw=1, label=f"front of {yk} vs {xk}")
        ax.set_xlabel(xk)
        ax.set_ylabel(yk)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{space.name}: {yk} vs {xk}")
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        data[f"{space.name}_{fname}"] = png.getvalue()
    assert set(data) == output_names(space)
    atomic_write_dir(out, data, output_names(space))
    return [str(out / name) for name in data]


#: Bytes the CSV and plots of a sweep take (about 150 kB for a few hundred designs), checked
#: before the sweep starts.
OUTPUT_BYTES = 1 << 19


def output_names(space: Space) -> set[str]:
    """The files of ``--out``: the folder is the sweep's output set (replaced as a whole), so
    it may hold these names only."""
    return {f"{space.name}_points.csv", f"{space.name}_pareto_energy_accuracy.png",
            f"{space.name}_pareto_latency_area.png"}
