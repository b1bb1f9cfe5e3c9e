"""``python -m ffaccel.gen``: the RTL generator's command line.

The Amaranth engine lands with the RTL issue; until then this validates the config,
prints it with the derived widths, and lists the outputs it will write.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from .cli import add_config_args, config_from_args, make_parser, run_main

PROG = "ffaccel.gen"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--checkpoint", help="trained checkpoint: writes its weight images too")
    p.add_argument("-o", "--out", default="rtl", help="output folder")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def derived_widths(cfg) -> dict:
    return {"accbits": cfg.accbits, "goodness_bits": cfg.goodness_bits, "score_bits": cfg.score_bits,
            "product_bits": cfg.product_bits, "rsqrt_mant_bits": cfg.rsqrt_mant_bits,
            "rsqrt_shift_bits": cfg.rsqrt_shift_bits, "bias_bits": cfg.bias_bits,
            "weight_port_bits": cfg.weight_port_bits}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    cfg.check_float64_exact()
    planned = ["ffaccel_top.v", "ffaccel_rom_wrapper.v", "manifest.json"]
    if args.checkpoint:
        planned += [f"weights_l{i + 1}.{ext}" for i in range(cfg.n_layers) for ext in ("hex", "npy")]
    plan = {"config": cfg.to_dict(), "hash": cfg.hash(), "widths": derived_widths(cfg),
            "out": args.out, "planned_outputs": planned, "status": "rtl generation not implemented yet"}
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        print(f"config  {cfg.summary()}  (hash {cfg.hash()[:12]})")
        for k, v in plan["widths"].items():
            print(f"  {k:18s} {v}")
        print(f"planned outputs in {args.out}/: {', '.join(planned)}")
        print("RTL generation is not implemented yet: nothing was written.")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
