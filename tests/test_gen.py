"""ffaccel.gen: outputs, manifest, determinism, atomic failure, lint and compile."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ffaccel.config import AccelConfig
from ffaccel.gen import generate, verilog_ports
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
    assert ports["in_data"]["width"] == 8 and ports["res_scores__9"]["dir"] == "output"
    assert man["widths"]["accbits"] == 8 + 8 + 5 + 1


@pytest.mark.parametrize("args,fragment", [
    (("--layers", "4x0"), "--layers '4x0'"),
    (("--rows", "0"), "rows=0"),
    (("--wbits", "99"), "wbits=99"),
    (("--checkpoint", "missing.ckpt"), "does not exist"),
])
def test_gen_bad_input_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "rtl"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    r = _gen(*args, "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_gen_with_checkpoint_writes_images(tmp_path):
    ck = tmp_path / "d.ckpt"
    r = subprocess.run([sys.executable, "-m", "ffaccel.train", "--dataset", "digits", "--layers", "2x20",
                        "--epochs", "1", "--out", str(ck), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rtl"
    r = _gen("--checkpoint", str(ck), "--rows", "5", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "weights.hex").is_file() and (out / "layer2_weights.npy").is_file()
    w = np.load(out / "layer1_weights.npy")
    assert w.shape == (20, 64) and w.dtype == np.int8
    man = json.loads((out / "manifest.json").read_text())
    assert len((out / "weights.hex").read_text().split()) == man["memory_map"]["weight_words"]
    # a checkpoint fixes the network: asking for another one is refused
    r = _gen("--checkpoint", str(ck), "--layers", "3x20", "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and "layers" in r.stderr and not (tmp_path / "x").exists()


def test_hex_images_pack_lanes_low_first():
    lanes = np.array([[1, -1, 0], [-8, 7, 3]])
    text = to_hex_lines(lanes, 4).decode().split()
    assert text == ["0f1", "378"]
    cfg = AccelConfig(inputs=12, layers=(5,), classes=3, cols=2, abits=4, afrac=1)
    qm = QuantModel.random(cfg, np.random.default_rng(0))
    w, b = image_lanes(qm)
    assert w.shape == (3 * 12, 2) and (w[12 * 2:, 1] == 0).all()        # padded neuron 5 of tile 2
    assert (w[:12, 0] == qm.weights[0][0]).all() and (w[12:24, 1] == qm.weights[0][3]).all()


def test_ports_flatten_arrays():
    ports = verilog_ports(Engine(AccelConfig(inputs=12, layers=(5,), classes=3, cols=2, abits=4, afrac=1)))
    names = [p["name"] for p in ports]
    assert names[:2] == ["clk", "rst"] and "res_scores__2" in names and "res_scores__3" not in names


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
