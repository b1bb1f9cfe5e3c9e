"""``python -m ffaccel.gen``: Verilog of the FF engine, a $readmemh ROM wrapper, a manifest
and (with a checkpoint) the weight images.

Outputs (in ``-o DIR``, default ``rtl/``):
  ffaccel_engine.v   the Amaranth engine (weights are not in it: they come through ports)
  ffaccel_top.v      wrapper: engine + $readmemh weight and bias ROMs (synchronous read)
  manifest.json      config, top module, ports, widths, memory and register maps, sha256 of every file
  weights.hex, biases.hex, layer<i>_weights.npy, layer<i>_bias.npy (+ head<i>_* in OP)   with --checkpoint

Everything is built in memory first and the folder is replaced as a whole
(``fsutil.atomic_write_dir``): a reader sees the earlier set of files or the new one, never
a mix, and an error, a signal or a full disk leaves the folder as it was. A folder holding
files gen did not write (not in its manifest) is refused. The same inputs give
byte-identical files.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Sequence


from .cli import (path_arg, FFAccelError, PhaseStatus, add_config_args, config_from_args, config_overrides, make_parser,
                  run_main)
from .fsutil import OutputError, atomic_write_dir, check_writable, foreign_files
from .hw.generate import generate

PROG = "ffaccel.gen"


def build_parser():
    p = make_parser(PROG, __doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--checkpoint", type=path_arg, help="trained checkpoint: its config, and its weight images")
    p.add_argument("-o", "--out", type=path_arg, default="rtl", help="output folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--no-progress", action="store_true",
                   help="no status line on a terminal (the phase and its seconds, for large engines)")
    return p


def _owned(out: Path) -> set[str]:
    """The files an earlier gen run wrote into ``out`` (its manifest's list), checked before
    any work: a file, a link, or a folder of someone else's files is refused."""
    why = check_writable(out, folder=True)    # first: a name too long, a link, under a file
    if why:
        raise FFAccelError(f"-o {str(out)!r} cannot be written: {why}")
    if not out.exists():
        return set()
    try:
        listed = set(json.loads((out / "manifest.json").read_text())["files"]) | {"manifest.json"}
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    why = foreign_files(out, listed)
    if why:
        raise FFAccelError(f"-o {str(out)!r} {why.replace('this tool', 'gen')}")
    return listed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    qm = None
    if args.checkpoint:
        from .model.checkpoint import checkpoint_config
        from .model.quant import quantize
        net, cfg = checkpoint_config(args.checkpoint, config_overrides(args))
        qm = quantize(net, cfg)
    else:
        cfg = config_from_args(args)
    out = Path(args.out)
    owned = _owned(out)
    with PhaseStatus(PROG, not args.no_progress) as status:
        files, manifest = generate(cfg, qm, progress=status)
        status(f"writing {sum(len(d) for d in files.values()):,d} bytes to {out}/")
        try:
            atomic_write_dir(out, files, owned)
        except FileExistsError as e:
            raise FFAccelError(f"-o: {e}") from None
        except OutputError as e:
            raise FFAccelError(f"-o {e}") from None
    dt = time.perf_counter() - t0
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        print(f"{cfg.summary()} -> {out}/ in {dt:.1f} s")
        for name in sorted(files):
            print(f"  {name:24s} {len(files[name]):>12,d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, PROG))
