#!/usr/bin/env python3
"""Model-free FF with emulated physical layers against all-digital FF (issue #19): on each
data set, with the default recipe, cached trainings:

* digital, sum-of-squares goodness (ffaccel's FF), ``784-2xW``
* digital, cosine goodness (PhyLL's digital baseline), ``784-2xW``
* physical: an emulated P in front of each layer, P's width = its input's (the same digital
  parameters as the two above); and with P only between layers 1 and 2 (layer 1 then
  keeps Multi-Pass's shared image product)
* physical, compressive: P narrows each block's input to ``--compress`` outputs, so the
  digital layers are smaller
* digital with about the compressive design's digital parameters (``784-2xV``)
* the two designs with P in front of each layer again with |z| units (``--neuron abs``)
  instead of ReLU

and reports integer (golden model) accuracy at full depth and with LightFF's exit, float
accuracy, digital parameters, digital MACs per sample (with exit), P's calls per
sample, and the engine's energy per sample with exit (``ffaccel.energy``, the default
engine; P's own energy 0, the port's converters priced). The emulator is ``--physical``
(default: random transform, |.| detection, 2% measurement noise).

    python scripts/phyff_study.py [--dataset mnist,fashion-mnist] [--width 500]
        [--compress 196] [--physical random:seed=3,noise=0.02] [--threads 2] [--energy-samples 1000]
        [--json OUT]
"""

from __future__ import annotations

import json
import math
import sys

from ffaccel.cli import atomic_write_text, check_threads, make_parser, path_arg, run_main, strict_int
from ffaccel.config import AccelConfig
from ffaccel.errors import FFAccelError
from ffaccel.fsutil import check_writable

PROG = "phyff_study"
DEFAULT_SPEC = "random:seed=3,noise=0.02"


def digital_params(cfg: AccelConfig) -> int:
    return sum(n_in * n + n for n_in, n in zip(cfg.fan_in, cfg.layers))


def energy(checkpoint: str, dataset: str, samples: int) -> dict:
    """The engine's energy per sample with LightFF's exit on the first ``samples`` test
    samples (the default engine: 10 x 16 array, weights in DRAM, 45 nm; P's own energy 0
    unless the config says, the port's converters priced by the coefficients)."""
    from ffaccel.energy.coeffs import load_coeffs
    from ffaccel.energy.report import report
    from ffaccel.workload import dataset_workload
    wl = dataset_workload(checkpoint, dataset, samples)
    rep = report(wl, load_coeffs(None, wl.cfg.tech), toggle_samples=4)
    return {"energy_uj": rep["total_pj"] / 1e6, "energy_full_uj": rep["full_depth_pj"] / 1e6,
            "physical_uj": rep["components"]["physical"] / 1e6,
            "weight_mem_uj": rep["components"]["weight_mem"] / 1e6,
            "cycles_per_inference": rep["cycles_per_inference"], "energy_samples": wl.source["limit"]}


def designs(ds, width: int, compress: int, spec: str) -> list[tuple[str, AccelConfig]]:
    base = {"inputs": ds.inputs, "classes": ds.classes}
    phy = spec + ("" if spec.endswith(":") else ",") + f"out={compress}"
    comp = AccelConfig(**base, layers=(width, width), physical=phy, goodness="cos")
    # an all-digital 784-2xV with about the compressive design's digital parameters:
    # inputs V + V^2 + V (layer 2) + V ... ~ params  ->  V^2 + (inputs + 2) V - params = 0
    p = digital_params(comp)
    b = ds.inputs + 2
    v = max(1, round((-b + math.sqrt(b * b + 4 * p)) / 2))
    return [
        ("digital sq", AccelConfig(**base, layers=(width, width))),
        ("digital cos", AccelConfig(**base, layers=(width, width), goodness="cos")),
        ("physical", AccelConfig(**base, layers=(width, width), physical=spec, goodness="cos")),
        ("physical after layer 1", AccelConfig(**base, layers=(width, width), goodness="cos",
                                               physical=spec + ("" if spec.endswith(":") else ",") + "at=2-2")),
        (f"physical, P to {compress}", comp),
        ("digital cos, same params", AccelConfig(**base, layers=(v, v), goodness="cos")),
        # |z| units instead of ReLU behind P (ReLU units die there under the cosine loss)
        ("physical, |z| units", AccelConfig(**base, layers=(width, width), physical=spec, goodness="cos",
                                            neuron="abs")),
        (f"physical, P to {compress}, |z| units", comp.replace(neuron="abs")),
    ]


def main(argv=None) -> int:
    p = make_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist,fashion-mnist", help="data sets, comma-separated")
    p.add_argument("--width", type=strict_int, default=500, help="digital layer width W")
    p.add_argument("--compress", type=strict_int, default=196, help="P's output width in the compressive design")
    p.add_argument("--physical", default=DEFAULT_SPEC, help=f"the emulated physical layers (default {DEFAULT_SPEC})")
    p.add_argument("--threads", type=strict_int, default=2)
    p.add_argument("--energy-samples", type=strict_int, default=1000,
                   help="test samples of the energy estimate (the engine's energy per sample with exit; 0: none)")
    p.add_argument("--json", type=path_arg, metavar="OUT")
    args = p.parse_args(argv)
    # every input checked before any work starts
    check_threads(args.threads)
    for flag, v in (("--width", args.width), ("--compress", args.compress)):
        if not 1 <= v <= 1 << 16:
            raise FFAccelError(f"{flag}={v} out of range (allowed: 1..65536)")
    if not 0 <= args.energy_samples <= 10000:
        raise FFAccelError(f"--energy-samples={args.energy_samples} out of range (allowed: 0..10000)")
    if args.json and (why := check_writable(args.json, folder=False)):
        raise FFAccelError(f"--json {args.json!r} cannot be written: {why}")
    from ffaccel.physical_spec import parse_spec
    spec = parse_spec(args.physical)
    if spec.out or spec.concat or spec.at:
        raise FFAccelError(f"--physical {args.physical!r}: the study sets out, concat and at itself")
    from ffaccel.data import DataError, load_dataset
    try:
        sets = [load_dataset(name.strip()) for name in args.dataset.split(",") if name.strip()]
    except DataError as e:
        raise FFAccelError(str(e)) from None
    if not sets:
        raise FFAccelError("--dataset: empty")
    plans = [(ds, designs(ds, args.width, args.compress, spec.canonical())) for ds in sets]

    from ffaccel.model.cache import cached_fit
    from ffaccel.model.recipe import TrainRecipe
    recipe = TrainRecipe()
    rows = []
    for ds, plan in plans:
        for name, cfg in plan:
            net, qcfg, meta, path = cached_fit(ds, cfg, recipe, progress=True, threads=args.threads)
            fl, it = meta["float"], meta["integer"]
            # MP: every label copy drives the P in front of every layer it runs
            hist = {int(k): v for k, v in it["exit_histogram"].items()}
            calls = qcfg.classes * sum(v * sum(qcfg.physical_at[:e]) for e, v in hist.items()) / sum(hist.values())
            row = {"dataset": ds.name, "design": name, "network": qcfg.summary(), "layers": list(qcfg.layers),
                   "fan_in": list(qcfg.fan_in), "physical": qcfg.physical, "goodness": qcfg.goodness,
                   "float_full": fl["accuracy_full"], "int_full": it["accuracy_full"], "int_exit": it["accuracy"],
                   "scored_layers": it["scored_layers"], "digital_params": digital_params(qcfg),
                   "macs_per_sample": it["macs_per_sample"], "macs_full": it["macs_full"],
                   "mean_exit_layer": it["mean_exit_layer"], "p_calls_per_sample": calls,
                   "train_seconds": meta["train"]["seconds"], "checkpoint": path}
            if args.energy_samples:
                row.update(energy(path, ds.name, args.energy_samples))
            rows.append(row)
            print(f"{ds.name} {name}: integer {row['int_full']:.2%} full depth, {row['int_exit']:.2%} with exit "
                  f"(float {row['float_full']:.2%}); {row['digital_params']:,} digital parameters, "
                  f"{row['macs_per_sample']:,.0f} MACs / sample; trained in {row['train_seconds']:.0f} s"
                  + (f"; {row['energy_uj']:.2f} uJ / sample ({row['physical_uj']:.3f} at the port)"
                     if "energy_uj" in row else ""), flush=True)
    print("\n| data | design | digital layers (fan-in -> width) | digital params | integer full depth | with exit | "
          "float | MACs / sample (exit) | P calls / sample | scored layers | uJ / sample (exit) | of it at the port |")
    print("| --- " * 12 + "|")
    for r in rows:
        shape = ", ".join(f"{a}->{b}" for a, b in zip(r["fan_in"], r["layers"]))
        en = f"{r['energy_uj']:.2f} | {r['physical_uj']:.3f}" if "energy_uj" in r else "- | -"
        print(f"| {r['dataset']} | {r['design']} | {shape} | {r['digital_params']:,} | {r['int_full']:.2%} | "
              f"{r['int_exit']:.2%} | {r['float_full']:.2%} | {r['macs_per_sample']:,.0f} | {r['p_calls_per_sample']:.1f} | "
              f"{r['scored_layers']} | {en} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"physical": spec.canonical(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
