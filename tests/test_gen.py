"""ffaccel.gen: outputs, manifest, determinism, atomic failure, lint and compile."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.hw.generate import generate, verilog_ports
from ffaccel.hw.engine import Engine
from ffaccel.hw.images import image_lanes, to_hex_lines
from ffaccel.model.golden import QuantModel


def _gen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ffaccel.gen", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_gen_writes_manifest_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        r = _gen("--layers", "2x16", "--inputs", "32", "--rows", "4", "--cols", "4", "-o", str(out))
        assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in a.iterdir())
    assert names == ["ffaccel_engine.v", "ffaccel_top.v", "manifest.json"]
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes()
    man = json.loads((a / "manifest.json").read_text())
    assert man["top"] == "ffaccel_top" and man["config"]["layers"] == [16, 16]
    for name, digest in man["files"].items():
        assert hashlib.sha256((a / name).read_bytes()).hexdigest() == digest
    ports = {p["name"]: p for p in man["ports"]}
    assert ports["pixels__payload"]["width"] == 8 + 1 and ports["result__payload"]["dir"] == "output"
    fields = {f["name"]: f for f in ports["result__payload"]["fields"]}
    assert fields["scores.9"]["signed"] and fields["scores.9"]["width"] == man["widths"]["score_bits"]
    assert man["widths"]["accbits"] == 8 + 8 + 5 + 1
    assert man["hardware_hash"] in (a / "ffaccel_top.v").read_text().splitlines()[0]


@pytest.mark.parametrize("args,fragment", [
    (("--layers", "4x0"), "--layers '4x0'"),
    (("--rows", "0"), "rows=0"),
    (("--wbits", "99"), "wbits=99"),
    (("--checkpoint", "missing.ckpt"), "does not exist"),
])
@pytest.mark.fault
def test_gen_bad_input_writes_nothing(tmp_path, args, fragment, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rtl"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    r = cli("gen", *args, "-o", str(out))
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_gen_with_checkpoint_writes_images(tmp_path, digits_ckpt, cli):
    out = tmp_path / "rtl"
    r = cli("gen", "--checkpoint", str(digits_ckpt), "--rows", "5", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "weights.hex").is_file() and (out / "layer2_weights.npy").is_file()
    w = np.load(out / "layer1_weights.npy")
    assert w.shape == (16, 64) and w.dtype == np.int8
    man = json.loads((out / "manifest.json").read_text())
    assert len((out / "weights.hex").read_text().split()) == man["memory_map"]["weight_words"]
    # a checkpoint fixes the network: asking for another one is refused
    r = cli("gen", "--checkpoint", str(digits_ckpt), "--layers", "3x16", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "layers" in r.stderr and not (tmp_path / "x").exists()


def _consistent(out):
    """Every file of ``out`` is in its manifest with the right sha256, and nothing else is there."""
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([*man["files"], "manifest.json"])
    for name, digest in man["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    return man


@pytest.mark.fault
def test_gen_replaces_the_whole_output_set(tmp_path, digits_ckpt, cli):
    """A run without a checkpoint into a folder of a run with one leaves no stale weight
    images; a folder holding someone else's file is refused and left alone; a stale
    temporary folder of a killed run is removed; outputs are readable by others."""
    out = tmp_path / "rtl"
    assert cli("gen", "--checkpoint", str(digits_ckpt), "--rows", "5", "-o", str(out)).returncode == 0
    assert "weights.hex" in _consistent(out)["files"]
    from ffaccel.fsutil import _HOST
    dead = tmp_path / f".rtl.tmp-{2 ** 22 + 17}-{_HOST}-abc"   # a pid of this host that does not run
    other = tmp_path / f".rtl.tmp-{2 ** 22 + 17}-0other00-abc"  # another host's: not ours to judge
    other.mkdir()
    dead.mkdir()
    r = cli("gen", "--layers", "2x8", "--inputs", "16", "--rows", "2", "--cols", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    man = _consistent(out)
    assert "weights.hex" not in man["files"] and man["config"]["layers"] == [8, 8]
    assert not dead.exists() and other.exists()
    other.rmdir()
    assert (out / "manifest.json").stat().st_mode & 0o044              # not 0600
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli("gen", "--layers", "2x8", "--inputs", "16", "-o", str(out))
    assert r.returncode == 2 and "did not write (notes.txt)" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.fault
# (the interrupt variant under -m slow: tests/test_reliability.py kills gen at random points by default)
@pytest.mark.parametrize("fault", ["enospc", pytest.param("interrupt", marks=pytest.mark.slow)])
def test_gen_fault_mid_write_leaves_the_folder_as_it_was(tmp_path, cli, monkeypatch, fault):
    """Out of space (ENOSPC on the second file) or an interrupt half-way: the earlier output
    set is intact and consistent, no temporary folder is left, one line and exit 2 (130 for
    the interrupt)."""
    import errno
    import os
    out = tmp_path / "rtl"
    assert cli("gen", "--layers", "2x8", "--inputs", "16", "-o", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            if fault == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise KeyboardInterrupt
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    r = cli("gen", "--layers", "3x8", "--inputs", "16", "-o", str(out))
    assert r.returncode == (2 if fault == "enospc" else 130)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    if fault == "enospc":
        assert "No space left on device" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    _consistent(out)
    assert [p.name for p in tmp_path.iterdir()] == ["rtl"]


def test_hex_images_pack_lanes_low_first():
    lanes = np.array([[1, -1, 0], [-8, 7, 3]])
    text = to_hex_lines(lanes, 4).decode().split()
    assert text == ["0f1", "378"]
    cfg = AccelConfig(inputs=12, layers=(5,), classes=3, cols=2, abits=4, afrac=1)
    qm = QuantModel.random(cfg, np.random.default_rng(0))
    w, b = image_lanes(qm)
    assert w.shape == (3 * 12, 2) and (w[12 * 2:, 1] == 0).all()        # padded neuron 5 of tile 2
    assert (w[:12, 0] == qm.weights[0][0]).all() and (w[12:24, 1] == qm.weights[0][3]).all()


def test_ports_flatten_interfaces_and_list_struct_fields():
    ports = verilog_ports(Engine(AccelConfig(inputs=12, layers=(5,), classes=3, cols=2, abits=4, afrac=1)))
    names = [p["name"] for p in ports]
    assert names[:2] == ["clk", "rst"]
    assert {"pixels__valid", "pixels__ready", "wmem__addr", "bmem__data", "regs__we", "probe__valid"} <= set(names)
    res = next(p for p in ports if p["name"] == "result__payload")
    fields = [f["name"] for f in res["fields"]]
    assert "scores.2" in fields and "scores.3" not in fields
    # fields tile the port without gaps or overlaps
    spans = sorted((f["offset"], f["width"]) for f in res["fields"])
    assert all(a + w == b for (a, w), (b, _) in zip(spans, spans[1:])) and sum(w for _, w in spans) == res["width"]


@pytest.mark.parametrize("kw", [dict(), dict(mode="op", rows=3), dict(label_share=False, rows=2, cols=3, abits=5, wbits=6),
                                dict(inputs=3, classes=2, layers=(1,), abits=1, afrac=0, rows=1, cols=1)])
def test_manifest_widths_are_the_elaborated_widths(kw):
    """Every width the manifest publishes is the width of the signal that carries it."""
    from amaranth.hdl import Fragment
    from amaranth.lib import data
    from ffaccel.hw.generate import derived_widths
    base = dict(inputs=40, layers=(20, 17), classes=10, rows=4, cols=5)
    cfg = AccelConfig(**{**base, **kw})
    eng = Engine(cfg)
    Fragment.get(eng, None)
    u = eng.elaborated
    w = lambda sig: len(sig.as_value()) if isinstance(sig, data.View) else len(sig)   # noqa: E731
    got = {
        "accbits": w(u["array"].result[0][0]), "drain_bits": w(u["drain"].row.acc[0]),
        "goodness_reg_bits": w(u["accum"].g[0]), "score_bits": w(u["accum"].scores[0]),
        "product_bits": w(u["postproc"].prod[0]), "rsqrt_mant_bits": w(u["accum"].m),
        "rsqrt_shift_bits": w(u["accum"].s), "shift_bits": w(u["postproc"].shift),
        "bias_lane_bits": w(eng.bmem.data) // cfg.cols, "weight_word_bits": w(eng.wmem.data),
        "bias_word_bits": w(eng.bmem.data), "act_word_bits": w(eng.probe.payload.data),
        "reg_data_bits": w(eng.regs.data), "reg_addr_bits": w(eng.regs.addr),
    }
    assert got == derived_widths(cfg)
    # and the widths the arithmetic itself produces fit them: the normalisation product of
    # a drained sum and m, the shift amount (a 6-bit base plus the rsqrt exponent)
    assert len(u["drain"].row.acc[0] * u["accum"].m) == cfg.product_bits
    assert len(u["postproc"].shift_base + u["accum"].s) <= cfg.shift_bits + 1
    assert (1 << cfg.shift_bits) > 63 + (1 << cfg.rsqrt_shift_bits) - 1
    # the register port holds every register's reset value (was: 5 bits for a shift of 19)
    regs = eng.sched.regs
    for r in regs.registers:
        assert -(1 << (regs.data_bits - 1)) <= r.reset < (1 << (regs.data_bits - 1)), r


def test_hardware_hash_ignores_clock_tech_k_and_memory():
    cfg = AccelConfig(inputs=20, layers=(9, 7), classes=4, rows=3, cols=4, abits=5, afrac=2)
    other = cfg.replace(clock_mhz=15.0, tech="7nm", exit_k=2.5, weight_mem="sram", sram_kib=64)
    assert cfg.hardware_hash() == other.hardware_hash() and cfg.hash() != other.hash()
    assert cfg.replace(rows=4).hardware_hash() != cfg.hardware_hash()
    assert cfg.replace(thresholds=(5,)).hardware_hash() != cfg.hardware_hash()     # reset values


@pytest.mark.rtl
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_simulator_build_is_reused_across_clock_tech_k_and_thresholds(tmp_path):
    from ffaccel.sim.runner import build
    cfg = AccelConfig(inputs=20, layers=(9, 7), classes=4, rows=3, cols=4, abits=5, afrac=2)
    first = build(cfg, sim="icarus", build_dir=tmp_path)
    again = build(cfg.replace(clock_mhz=15.0, tech="7nm", exit_k=2.5, weight_mem="sram", thresholds=(40,)),
                  sim="icarus", build_dir=tmp_path)
    assert first.rebuilt and not again.rebuilt and again.build_dir == first.build_dir
    changed = build(cfg.replace(rows=2), sim="icarus", build_dir=tmp_path)
    assert changed.rebuilt and changed.build_dir != first.build_dir


@pytest.mark.rtl
@pytest.mark.parametrize("mode", ["mp", "op"])
def test_generated_rtl_lints_and_compiles(tmp_path, mode):
    from ffaccel.lint import lint
    cfg = AccelConfig(inputs=20, layers=(9, 7), classes=4, rows=3, cols=4, abits=5, afrac=2, mode=mode)
    files, man = generate(cfg, QuantModel.random(cfg, np.random.default_rng(1)))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    rep = lint(tmp_path, man["top"])
    assert rep["verilator_errors"] == 0 and rep["verilator_rc"] == 0
    assert rep["unwaived"] == {}, rep["unwaived"]
    if shutil.which("iverilog"):
        assert rep["icarus_rc"] == 0, rep["icarus_errors"]


@pytest.mark.rtl
def test_lint_fails_on_an_unwaived_warning(tmp_path, capsys):
    from ffaccel.lint import main
    (tmp_path / "manifest.json").write_text(json.dumps({"top": "t"}))
    (tmp_path / "t.v").write_text("module t(input wire a, output wire [1:0] y);\nassign y[0] = a;\nendmodule\n")
    assert main([str(tmp_path), "--json"]) == 1          # UNDRIVEN y[1] is not waived
    rep = json.loads(capsys.readouterr().out)
    assert "UNDRIVEN" in rep["unwaived"] and rep["verilator_errors"] == 0
    (tmp_path / "t.v").write_text("module t(input wire a, output wire y);\nassign y = a;\nendmodule\n")
    assert main([str(tmp_path)]) == 0


def test_gen_names_its_phases_on_a_terminal_and_prints_nothing_elsewhere(tmp_path):
    """A large engine takes minutes to elaborate: on a terminal gen shows the phase and its
    seconds on one status line (erased at the end); a log or pipe gets nothing."""
    import io
    import time

    from ffaccel.cli import PhaseStatus

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty, log = Tty(), io.StringIO()
    for stream in (tty, log):
        with PhaseStatus("ffaccel.gen", stream=stream) as status:
            files, _ = generate(AccelConfig(inputs=16, layers=(8,), classes=3, cols=2), progress=status)
            time.sleep(1.2)                   # one refresh of the seconds
    text = tty.getvalue()
    assert "ffaccel.gen: elaborating the engine and converting it to Verilog (" in text
    assert text.count("elaborating") >= 2 and text.endswith("\r\x1b[K")
    assert log.getvalue() == ""
    with PhaseStatus("ffaccel.gen", enabled=False, stream=Tty()) as status:
        status("x")
