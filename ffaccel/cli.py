"""Shared command-line plumbing for every ``python -m ffaccel.<tool>``.

* :func:`make_parser` gives an argparse parser whose errors are one line, no usage dump.
* :func:`add_config_args` adds the shared config flags; :func:`config_overrides` turns
  them into a plain dict of config keys (file first, flags override), the form the library
  takes; :func:`config_from_args` builds the :class:`~ffaccel.config.AccelConfig`.
* :func:`run_main` turns any :class:`FFAccelError` into ``prog: error: ...`` on stderr
  and exit status 2, with no traceback.

This is the top layer: library modules never import it. :class:`FFAccelError`
(``ffaccel.errors``) and the atomic writes (``ffaccel.fsutil``) live below and are
re-exported here for the command-line tools.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from .config import AccelConfig, ConfigError, load_config_file, parse_layers
from .errors import FFAccelError
from .fsutil import atomic_write_bytes, atomic_write_text, check_writable

__all__ = ["FFAccelError", "dataset_matching", "recall_text", "atomic_write_bytes", "atomic_write_text", "make_parser", "add_config_args",
           "config_overrides", "config_from_args", "workload_from_args", "run_main", "add_recipe_args",
           "recipe_from_args"]


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # pragma: no cover - exercised through CLI tests
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def path_arg(text: str) -> str:
    """A file or folder argument: not empty (an empty value is not "absent")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    if "\0" in text:
        raise argparse.ArgumentTypeError("a path cannot hold a NUL character")
    return text


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _OneLineParser(prog=prog, description=description,
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def strict_int(text: str) -> int:
    """An integer flag value in ASCII digits only (``int`` would take '١٢' or '1_0', which
    ``--layers`` refuses): one rule for every integer flag."""
    import re
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise argparse.ArgumentTypeError(f"invalid integer value: {text!r}")
    return int(text)


def strict_float(text: str) -> float:
    """A finite float flag value in ASCII (no nan, inf, '1_0')."""
    import math
    import re
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text.strip()):
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}")
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}")
    return v


# flag -> (config key, type, help)
_CONFIG_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--inputs": ("inputs", strict_int, "network inputs (default 784)"),
    "--classes": ("classes", strict_int, "classes (default 10)"),
    "--rows": ("rows", strict_int, "systolic array rows: the reuse dimension (default 10)"),
    "--cols": ("cols", strict_int, "systolic array columns: output neurons per tile (default 16)"),
    "--wbits": ("wbits", strict_int, "weight bits, signed (default 8)"),
    "--abits": ("abits", strict_int, "activation bits, unsigned (default 8)"),
    "--mode": ("mode", str, "inference mode: mp (multi-pass) or op (one-pass)"),
    "--exit-policy": ("exit_policy", str, "early exit rule: max, margin or none"),
    "--exit-head": ("exit_head", str, "OP exit heads: learned, lls (sin basis) or lls-square (generated on chip)"),
    "--neuron": ("neuron", str, "units: relu (default), abs (|z|, saturated like relu) or bsff (binary "
                                "stochastic; abits follows --bsff-k "
                                "unless given)"),
    "--bsff-k": ("bsff_k", strict_int, "BSFF: units tied to one weight row, 1..4 (default 1)"),
    "--bsff-seed": ("bsff_seed", strict_int, "BSFF: seed of the engine's random source, 1..2**32-1 (default 1)"),
    "--physical": ("physical", str, "physical layers in front of the digital layers (PhyLL): "
                                    "random:seed=S,noise=N,drift=D[,out=N,concat=1,at=2-3,act=abs|square|relu,gain=G], "
                                    "file:path=P.npz[,noise=N], or exec:[out=N,]cmd=COMMAND (docs/architecture.md, "
                                    "'Physical layers'); implies --goodness cos unless given"),
    "--goodness": ("goodness", str, "layer goodness: sq (sum of h^2, default) or cos (PhyLL's cosine with a "
                                    "fixed random vector per layer)"),
    "--port-latency": ("port_latency", strict_int, "physical layers: P's latency in cycles, last input word to "
                                                   "first answer word (cycle and energy models; default 16)"),
    "--physical-pj": ("physical_pj", strict_float, "physical layers: P's own energy per copy it transforms, in pJ "
                                                   "(default 0; the port's converters are priced apart)"),
    "--k": ("exit_k", strict_float, "LightFF threshold knob: T = mu - k*sigma"),
    # (not --batch: the training recipe's mini-batch, on ffaccel.train with these flags)
    "--infer-batch": ("batch", strict_int, "MP: samples per inference sharing each weight read (default 1)"),
    "--weight-mem": ("weight_mem", str, "weight memory level: sram or dram"),
    "--sram-bank-kib": ("sram_bank_kib", strict_int, "weight SRAM bank size in KiB, a power of two (0: one memory)"),
    "--onchip-kib": ("onchip_kib", strict_int, "on-chip weight SRAM budget in KiB; layers beyond it in DRAM (0: none)"),
    "--clock-mhz": ("clock_mhz", strict_float, "clock frequency in MHz"),
    "--tech": ("tech", str, "technology node, e.g. 45nm"),
}


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainRecipe`` field (``--min-steps`` for min_steps); absent flags take
    the recipe's defaults, which live only in ``ffaccel.model.recipe``."""
    from .model.recipe import SCORE_LAYERS, TrainRecipe
    g = parser.add_argument_group("training recipe (defaults: ffaccel.model.recipe.TrainRecipe)")
    for name, default, text, unit in TrainRecipe.describe():
        flag = "--" + name.replace("_", "-")
        help_ = f"{text}{' [' + unit + ']' if unit else ''} (default {default})".replace("%", "%%")   # argparse
        if isinstance(default, bool):
            g.add_argument(flag, dest=f"recipe_{name}", action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_)
        else:
            typ = {int: strict_int, float: strict_float}.get(type(default), type(default))
            g.add_argument(flag, dest=f"recipe_{name}", type=typ, default=argparse.SUPPRESS,
                           metavar="{" + ",".join(SCORE_LAYERS) + "}" if name == "score_layers" else name.upper(),
                           choices=SCORE_LAYERS if name == "score_layers" else None, help=help_)


def recipe_from_args(args: argparse.Namespace):
    """The ``TrainRecipe`` of the flags given (a bad value: one line, exit 2)."""
    from .model.recipe import TrainRecipe
    given = {k[len("recipe_"):]: v for k, v in vars(args).items() if k.startswith("recipe_")}
    return TrainRecipe.from_dict(given, where="training recipe")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("accelerator configuration (flags override --config)")
    # absent flags stay absent (SUPPRESS): the file or the config defaults decide
    g.add_argument("--config", type=path_arg, metavar="FILE", default=argparse.SUPPRESS, help="config file (.json or .toml)")
    g.add_argument("--layers", metavar="SPEC", default=argparse.SUPPRESS,
                   help="hidden layers: 4x2000, or a list 2000,1000,500 (default 4x2000)")
    for flag, (key, typ, hlp) in _CONFIG_FLAGS.items():
        g.add_argument(flag, dest=key, type=typ, default=argparse.SUPPRESS, help=hlp)
    g.add_argument("--no-label-share", dest="label_share", action="store_false", default=argparse.SUPPRESS,
                   help="MP: run every label copy of layer 1 in full (no W1 x_img sharing)")
    g.add_argument("--zero-skip", dest="zero_skip", action="store_true", default=argparse.SUPPRESS,
                   help="stream only the inputs that are non-zero (data-dependent cycles, fewer weight reads)")
    g.add_argument("--fpga-regs", dest="fpga_regs", action="store_true", default=argparse.SUPPRESS,
                   help="registers beside the multipliers and block RAMs for FPGA timing (two cycles more per pass)")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the command line sets, as a plain dict: the ``--config`` file's
    keys, then the flags given (absent flags are absent)."""
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        data.update(load_config_file(args.config))
    if getattr(args, "layers", None) is not None:
        data["layers"] = parse_layers(args.layers)
    for key in [k for k, _, _ in _CONFIG_FLAGS.values()] + ["label_share", "fpga_regs", "zero_skip"]:
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    if data.get("physical") and "goodness" not in data:
        data["goodness"] = "cos"                              # PhyLL's goodness with its blocks
    if data.get("neuron") == "bsff" and "abits" not in data and isinstance(data.get("bsff_k", 1), int):
        data["abits"] = data.get("bsff_k", 1).bit_length()    # a unit's output: the count 0..k
    return data


def config_from_args(args: argparse.Namespace, base: AccelConfig | None = None,
                     **overrides: Any) -> AccelConfig:
    """Build the config: ``base`` (or defaults) < ``--config`` file < flags < ``overrides``."""
    data: dict[str, Any] = base.to_dict() if base is not None else {}
    data.pop("schema", None)
    data.update(config_overrides(args))
    data.update(overrides)
    return AccelConfig.from_dict(data)


#: Random workloads: samples and seed when the flags are not given.
DEFAULT_SAMPLES, DEFAULT_SEED = 8, 0
SEED_MAX = 2**63 - 1


def add_workload_args(p: argparse.ArgumentParser) -> None:
    """The workload flags of ``ffaccel.perf`` and ``ffaccel.energy``: a random model
    (``--samples --seed``) or a checkpoint with its data set (``--checkpoint --dataset
    --limit``); :func:`workload_from_args` refuses a mix."""
    p.add_argument("--samples", type=strict_int, default=None,
                   help=f"random samples (without --checkpoint; default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=strict_int, default=None,
                   help=f"seed of the random model and samples (without --checkpoint; default {DEFAULT_SEED})")
    p.add_argument("--checkpoint", type=path_arg, help="trained checkpoint (with --dataset)")
    p.add_argument("--dataset", type=path_arg, help="data set of the test samples (with --checkpoint)")
    p.add_argument("--limit", type=strict_int, default=None, help="first N test samples (with --checkpoint)")


def add_design_args(p: argparse.ArgumentParser, verify_samples: int) -> None:
    """The flags of a study script that measures designs (``ffaccel.design.measure_design``)."""
    p.add_argument("--limit", type=strict_int, default=None, help="first N test samples (default: all)")
    p.add_argument("--verify-samples", type=strict_int, default=verify_samples, help="test images checked on the RTL")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--toggle-samples", type=strict_int, default=16, help="inferences whose toggles are exact")
    p.add_argument("--threads", type=strict_int, default=2, help="torch threads for training")
    p.add_argument("--json", type=path_arg, metavar="OUT")


def check_design_args(args: argparse.Namespace) -> None:
    """:func:`add_design_args`'s values, checked before any work starts (one line, exit 2)."""
    for flag, v in (("--limit", args.limit), ("--verify-samples", args.verify_samples),
                    ("--toggle-samples", args.toggle_samples), ("--threads", args.threads)):
        if v is not None and v < 1:
            raise FFAccelError(f"{flag}={v} out of range (allowed: >= 1)")
    if args.json and (why := check_writable(args.json, folder=False)):
        raise FFAccelError(f"--json {args.json!r} cannot be written: {why}")


def design_kwargs(args: argparse.Namespace) -> dict:
    """``measure_design``'s keyword arguments from :func:`add_design_args`'s flags."""
    return {"limit": args.limit, "verify_samples": args.verify_samples, "sim": args.sim,
            "toggle_samples": args.toggle_samples, "threads": args.threads}


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise FFAccelError(f"{flag}={seed} out of range (allowed: 0..{SEED_MAX})")


def check_threads(n: int) -> None:
    """torch threads: 1..256 (more than the machine's cores only slows)."""
    if not 1 <= n <= 256:
        raise FFAccelError(f"--threads={n} out of range (allowed: 1..256)")


def workload_from_args(args: argparse.Namespace):
    """The workload of the flags shared by ``ffaccel.perf`` and ``ffaccel.energy``
    (``--checkpoint --dataset --limit`` or ``--samples --seed``, and the config flags)."""
    from .perf.report import load_workload       # lazy: gen and lint need none of it
    if args.checkpoint is not None:
        given = [f for f, v in (("--samples", args.samples), ("--seed", args.seed)) if v is not None]
        if given:
            raise FFAccelError(f"{given[0]} draws a random workload; with --checkpoint the samples are the "
                               "data set's (choose them with --limit)")
        if args.limit is not None and args.limit < 1:
            raise FFAccelError(f"--limit={args.limit} out of range (allowed: >= 1)")
    else:
        if args.limit is not None:
            raise FFAccelError("--limit chooses test samples of --checkpoint --dataset (a random workload "
                               "takes --samples)")
        check_seed(args.seed)
        if args.samples is not None and args.samples < 1:
            raise FFAccelError(f"--samples={args.samples} out of range (allowed: >= 1)")
    return load_workload(config_overrides(args), checkpoint=args.checkpoint, dataset=args.dataset,
                         limit=args.limit, seed=DEFAULT_SEED if args.seed is None else args.seed,
                         samples=DEFAULT_SAMPLES if args.samples is None else args.samples,
                         k=getattr(args, "exit_k", None))


def dataset_matching(spec: str, inputs: int, classes: int, who: str):
    """The data set ``spec``, checked against the ``inputs`` and ``classes`` that ``who``
    (a checkpoint, an imported network) needs; a problem is one line."""
    from .data import DataError, load_dataset
    try:
        ds = load_dataset(spec)
    except DataError as e:
        raise FFAccelError(str(e)) from None
    if ds.inputs != inputs or ds.classes != classes:
        raise FFAccelError(f"dataset {ds.name!r} has {ds.inputs} inputs / {ds.classes} classes; "
                           f"{who} needs {inputs} / {classes}")
    return ds


def recall_text(rep: dict, class_names=None) -> str:
    """One line: balanced accuracy and per-class recall (with exit; full depth in brackets)
    of an ``exit_report``; classes without a test sample are marked ``-``."""
    rec, full = rep["per_class_recall"], rep["per_class_recall_full"]
    names = list(class_names or rec)

    def pct(v):
        return "-" if v is None else f"{v * 100:.1f}%"
    parts = [f"{n} {pct(rec[c])} ({pct(full[c])})" for n, c in zip(names, rec)]
    return (f"balanced accuracy {rep['balanced_accuracy'] * 100:.2f}% with exit, "
            f"{rep['balanced_accuracy_full'] * 100:.2f}% full depth; recall " + ", ".join(parts))


def run_main(main: Callable[[Sequence[str] | None], int], prog: str,
             argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and map user errors to one line on stderr and exit status 2. SIGTERM is
    handled like SIGINT (an interrupt: outputs being written are cleaned up, exit 130); a
    reader that closes the pipe (``| head -1``) ends the run quietly (exit 141)."""
    import signal
    import threading
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _term_as_interrupt)
    try:
        return int(main(argv) or 0)
    except (FFAccelError, ConfigError) as e:
        # one line whatever the message quotes (a path with a newline in it, a parser's text)
        msg = str(e).replace("\r", "\\r").replace("\n", "\\n")
        _quiet_half_built()
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _quiet_half_built()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:                                  # no second error when Python flushes stdout at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _quiet_half_built() -> None:
    """A run stopped in the middle of elaborating hardware leaves unit objects that were
    never elaborated; Amaranth warns about each when it is collected. They say nothing
    about the run's result: the one line is the message."""
    import warnings
    warnings.filterwarnings("ignore", message=r".* created but never used")


def _term_as_interrupt(signum, frame):
    raise KeyboardInterrupt


class PhaseStatus:
    """``status(phase)`` names the phase a long command is in; on a terminal, one status
    line on stderr shows it with the seconds spent so far (refreshed every second, erased
    at the end), so a run of minutes is visibly alive. Not on a terminal (logs, pipes,
    tests) it prints nothing: stderr stays for the one error line."""

    def __init__(self, prog: str, enabled: bool = True, stream=None) -> None:
        import threading
        import time
        self._stream = stream if stream is not None else sys.stderr
        self._on = enabled and hasattr(self._stream, "isatty") and self._stream.isatty()
        self._prog, self._phase, self._t0 = prog, "", time.monotonic()
        self._clock = time.monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True) if self._on else None

    def __enter__(self) -> "PhaseStatus":
        if self._thread is not None:
            self._thread.start()
        return self

    def __call__(self, phase: str) -> None:
        self._phase = phase
        self._draw()

    def _draw(self) -> None:
        if self._on and self._phase:
            self._stream.write(f"\r\x1b[K{self._prog}: {self._phase} ({self._clock() - self._t0:.0f} s)")
            self._stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.write("\r\x1b[K")
            self._stream.flush()
