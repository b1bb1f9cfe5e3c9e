"""Generated RTL as bytes: the engine's Verilog, a $readmemh ROM wrapper, the weight and
bias images and the manifest (config, ports with their field layouts, widths, memory and
register maps, schedule, sha256 of every file). The same inputs give byte-identical
files. The command line is ``python -m ffaccel.gen``."""

from __future__ import annotations

import hashlib
import io
import json
import re

from typing import Callable

import numpy as np

from ..config import AccelConfig
from ..schedule import schedule

ENGINE = "ffaccel_engine"
TOP = "ffaccel_top"


def derived_widths(cfg: AccelConfig) -> dict:
    """Every width of the datapath, from the config (the RTL is built from the same numbers;
    a test checks each against the elaborated signal)."""
    regs = schedule(cfg).regs
    names = ("accbits", "drain_bits", "goodness_reg_bits", "score_bits", "product_bits",
             "rsqrt_mant_bits", "rsqrt_shift_bits", "shift_bits", "bias_lane_bits",
             "weight_word_bits", "bias_word_bits", "act_word_bits")
    return {**{n: getattr(cfg, n) for n in names}, "reg_data_bits": regs.data_bits, "reg_addr_bits": regs.addr_bits}


def layout_fields(shape, prefix: str = "") -> list[dict]:
    """Fields of a (nested) ``lib.data`` layout as flat bit ranges: name, offset, width, signed."""
    from amaranth.hdl import Shape
    from amaranth.lib import data
    if isinstance(shape, data.Layout):
        out = []
        for name, field in shape:
            out += [{**f, "offset": f["offset"] + field.offset}
                    for f in layout_fields(field.shape, f"{prefix}{name}.")]
        return out
    s = Shape.cast(shape)
    return [{"name": prefix.rstrip("."), "offset": 0, "width": s.width, "signed": s.signed}]


def verilog_ports(component) -> list[dict]:
    """Flat Verilog ports of an Amaranth component (``iface__member``), plus clk/rst; a
    struct-typed port lists its fields (bit offsets), so a bench can pack and unpack it."""
    from amaranth.hdl import Shape
    from amaranth.lib import data, wiring
    ports = [{"name": "clk", "dir": "input", "width": 1}, {"name": "rst", "dir": "input", "width": 1}]
    for path, member, _ in component.signature.flatten(component):
        port = {"name": "__".join(str(p) for p in path), "dir": "input" if member.flow == wiring.In else "output",
                "width": Shape.cast(member.shape).width}
        if isinstance(member.shape, data.Layout):
            port["fields"] = layout_fields(member.shape)
        ports.append(port)
    return ports


MEMORY_PORTS = ("wmem", "bmem")


def _is_memory_port(port: dict) -> bool:
    return port["name"].split("__")[0] in MEMORY_PORTS


# Yosys' Verilog back end (used by Amaranth) makes every `always @*` block read a dummy
# register declared `reg \$auto$verilog_backend...$1 = 0;`, counting on the initialiser to
# wake the blocks at time 0. Icarus 11 applies declaration initialisers without an event,
# so a combinational block whose inputs never change keeps X (seen: the weight address
# muxed by `layer` stayed X for the whole first layer). For Icarus only (`__ICARUS__`),
# the generator adds `initial #0 <that register> = 1;`: one event at time 0 after every
# process waits; the register's value is never used otherwise.
_YOSYS_KICK = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*dump_module\$\d+) += 0;$", re.M)
# Yosys also writes one-statement blocks ``always @*\n    lhs = rhs;`` (a part of a vector
# driven on its own, e.g. a field of a struct port) that do not read the dummy register:
# Icarus leaves their lhs X until rhs first changes. Each gets an Icarus-only copy of its
# assignment at time 0.
_ONE_LINE_ALWAYS = re.compile(r"^(\s*)always @\*\n\s*([^\n=]+?) = ([^\n]+);$", re.M)


def icarus_time0_fix(verilog: str) -> str:
    verilog = _YOSYS_KICK.sub(lambda m: f"{m.group(0)}\n`ifdef __ICARUS__\n{m.group(1)}initial #0 {m.group(2)} = 1'h1;"
                              f"\n`endif", verilog)
    return _ONE_LINE_ALWAYS.sub(lambda m: f"{m.group(0)}\n`ifdef __ICARUS__\n{m.group(1)}initial #0 {m.group(2)} = "
                                f"{m.group(3)};\n`endif", verilog)


def engine_verilog(cfg: AccelConfig, units: dict | None = None, target=None) -> tuple[str, list[dict]]:
    """Verilog of the engine (``units``: substitute units, verification only; ``target``:
    an ``hw.dsp.FPGATarget``, the FPGA flow's choices of blocks) and its ports."""
    from amaranth.back import verilog
    from .engine import Engine
    eng = Engine(cfg, units=units)
    text = icarus_time0_fix(verilog.convert(eng, name=ENGINE, emit_src=False, platform=target))
    return text, verilog_ports(eng)


def top_verilog(cfg: AccelConfig, ports: list[dict]) -> str:
    """The stand-alone wrapper: engine + $readmemh ROMs (paths relative to the simulator's
    working directory, overridable through the WEIGHTS_HEX / BIASES_HEX parameters)."""
    mm = schedule(cfg).memory
    ext = [p for p in ports if not _is_memory_port(p)]
    decl = []
    for p in ext:
        rng = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
        decl.append(f"    {p['dir']} wire {rng}{p['name']}")
    conns = [f"        .{p['name']}({p['name']})" for p in ext]
    ww, bw = mm.weight_word_bits, mm.bias_word_bits
    conns += ["        .wmem__en(w_en)", "        .wmem__addr(w_addr)", "        .wmem__data(w_q)",
              "        .bmem__en(b_en)", "        .bmem__addr(b_addr)", "        .bmem__data(b_q)"]
    return f"""// Generated by ffaccel.gen: do not edit. Hardware hash {cfg.hardware_hash()}.
// Stand-alone wrapper: the engine plus $readmemh weight / bias ROMs with a
// one-cycle synchronous read (the engine's memory-port contract).
module {TOP} #(
    parameter WEIGHTS_HEX = "weights.hex",
    parameter BIASES_HEX = "biases.hex"
) (
{(","+chr(10)).join(decl)}
);
    localparam WWORDS = {mm.weight_words};
    localparam BWORDS = {mm.bias_words};
    reg [{ww - 1}:0] wrom [0:WWORDS-1];
    reg [{bw - 1}:0] brom [0:BWORDS-1];
    initial begin
        $readmemh(WEIGHTS_HEX, wrom);
        $readmemh(BIASES_HEX, brom);
    end
    wire w_en, b_en;
    wire [{mm.waddr_bits - 1}:0] w_addr;
    wire [{mm.baddr_bits - 1}:0] b_addr;
    reg [{ww - 1}:0] w_q = {ww}'d0;
    reg [{bw - 1}:0] b_q = {bw}'d0;
    always @(posedge clk) begin
        if (w_en) w_q <= wrom[w_addr];
        if (b_en) b_q <= brom[b_addr];
    end
    {ENGINE} u_engine (
{(","+chr(10)).join(conns)}
    );
endmodule
"""


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def generate(cfg: AccelConfig, qm=None, units: dict | None = None,
             progress: Callable[[str], None] | None = None, target=None) -> tuple[dict[str, bytes], dict]:
    """All output files (name -> bytes) and the manifest (also among the files).
    ``units`` (verification only) substitutes engine units, see ``Engine``. ``progress``
    is told each phase as it starts (a large engine takes minutes in the first).
    ``target`` (an ``hw.dsp.FPGATarget``): the engine as the FPGA flow elaborates it, with
    the simulation model of each block it instantiates among the files."""
    progress = progress or (lambda phase: None)
    from .images import image_lanes, to_hex_lines

    cfg.check_float64_exact()
    if qm is not None:
        qm.validate()
    sched = schedule(cfg)
    mm = sched.memory
    files: dict[str, bytes] = {}
    progress(f"elaborating the engine and converting it to Verilog ({cfg.summary()})")
    eng_v, ports = engine_verilog(cfg, units, target)
    files[f"{ENGINE}.v"] = eng_v.encode()
    block = getattr(target, "mult_block", None)
    if block is not None and f"{block} " in eng_v:
        from .dsp import SIM_MODELS
        files[f"{block}.v"] = SIM_MODELS[block].encode()
    files[f"{TOP}.v"] = top_verilog(cfg, ports).encode()
    if qm is not None:
        progress("weight and bias images")
        w, b = image_lanes(qm)
        files["weights.hex"] = to_hex_lines(w, cfg.wbits)
        files["biases.hex"] = to_hex_lines(b, mm.bias_lane_bits)
        dt = np.int8 if cfg.wbits <= 8 else np.int16
        for i, (wl, bl) in enumerate(zip(qm.weights, qm.biases)):
            files[f"layer{i + 1}_weights.npy"] = _npy(wl.astype(dt))
            files[f"layer{i + 1}_bias.npy"] = _npy(bl.astype(np.int32))
        for i, (hl, hb) in enumerate(zip(qm.heads, qm.head_biases) if cfg.exit_head == "learned" else ()):
            files[f"head{i + 1}_weights.npy"] = _npy(hl.astype(dt))
            files[f"head{i + 1}_bias.npy"] = _npy(hb.astype(np.int64))
    manifest = {
        "generator": "ffaccel.gen",
        "top": TOP,
        "engine": ENGINE,
        "config": cfg.to_dict(resolved=True),
        "config_hash": cfg.hash(),
        "hardware_hash": cfg.hardware_hash(),
        "widths": derived_widths(cfg),
        "ports": [p for p in ports if not _is_memory_port(p)],
        "engine_ports": ports,
        "memory_map": mm.as_dict(),
        "registers": sched.regs.as_dict(),
        "schedule": sched.as_dict(),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files, manifest
