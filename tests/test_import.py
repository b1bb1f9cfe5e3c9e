"""Import of FF networks from other public code bases (ffaccel.model.importers and the
``python -m ffaccel.import`` CLI). The networks are built here, in each code base's layout."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ffaccel.errors import FFAccelError
from ffaccel.model.checkpoint import load_checkpoint
from ffaccel.model.importers import (convert, ffaccel_scores_on, label_code, parse_state, reference_scores,
                                     their_inputs)

ROOT = Path(__file__).resolve().parents[1]


def linears(dims, seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]


def mpezeshki_state(layers):
    # how its users save a network: its layers sit in a plain Python list
    return {f"layers.{i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.state_dict().items()}


def loewex_state(layers, classes=10):
    model = torch.nn.ModuleList(layers)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["linear_classifier.0.weight"] = torch.zeros(classes, sum(l.out_features for l in layers[1:]))
    return state


# -- the code bases' inference, written in their own style (modules, torch, one label at a time)
class MpLayer(torch.nn.Linear):
    def forward(self, x):
        return torch.relu(torch.mm(x / (x.norm(2, 1, keepdim=True) + 1e-4), self.weight.T) + self.bias)


def mp_predict_scores(layers, x, classes):
    mods = []
    for lin in layers:
        m = MpLayer(lin.in_features, lin.out_features).double()
        m.load_state_dict(lin.state_dict())
        mods.append(m)
    out = []
    for label in range(classes):
        h = x.clone()
        h[:, :classes] *= 0.0
        h[range(len(x)), label] = x.max()
        g = []
        for m in mods:
            h = m(h)
            g.append(h.pow(2).mean(1))
        out.append(sum(g))
    return torch.stack(out, 1)


def lx_multipass_scores(layers, x, classes):
    model = torch.nn.ModuleList([torch.nn.Linear(l.in_features, l.out_features) for l in layers]).double()
    model.load_state_dict(torch.nn.ModuleList(layers).state_dict())

    def norm(z):
        return z / (torch.sqrt(torch.mean(z ** 2, dim=-1, keepdim=True)) + 1e-8)
    out = []
    for label in range(classes):
        z = x.clone()
        z[:, :classes] = torch.nn.functional.one_hot(torch.tensor(label), classes).double()
        z = norm(z)
        ssq = 0
        for idx, lin in enumerate(model):
            z = lin(z).clamp(min=0)
            if idx >= 1:
                ssq = ssq + (z ** 2).sum(-1)
            z = norm(z)
        out.append(ssq)
    return torch.stack(out, 1)


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 64)).astype(np.uint8)
    x[rng.random(x.shape) < 0.6] = 0                       # mostly background, as MNIST
    return x


@pytest.mark.parametrize("fmt", ["mpezeshki", "loewex"])
def test_conversion_matches_their_inference(fmt, pixels):
    layers = linears([64, 24, 16, 16], seed=1)
    if fmt == "loewex":
        for l in layers:
            torch.nn.init.normal_(l.weight, 0, 1 / np.sqrt(l.out_features))
    state = mpezeshki_state(layers) if fmt == "mpezeshki" else loewex_state(layers)
    lay = parse_state(state, fmt)
    assert lay.layers == (24, 16, 16) and lay.inputs == 64
    x = their_inputs(pixels)
    ref = reference_scores(lay, x, 10)
    # the re-implementation equals the code base's own style of inference
    theirs = (mp_predict_scores if fmt == "mpezeshki" else lx_multipass_scores)(layers, torch.as_tensor(x), 10)
    mask = (1, 1, 1) if fmt == "mpezeshki" else (0, 1, 1)
    summed = (ref * np.array(mask)[None, :, None]).sum(1)
    np.testing.assert_allclose(summed, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    net, cfg, rec = convert(lay, 10)
    assert cfg.scored == tuple(bool(m) for m in mask)
    ours = ffaccel_scores_on(net, lay, x, 10)
    scale = np.abs(ref).max()
    assert scale > 0.01
    # their normalisation epsilon is the only difference: without it the conversion is exact
    exact = reference_scores(lay, x, 10, eps=0.0)
    np.testing.assert_allclose(ours, exact, rtol=1e-10, atol=1e-12 * scale)
    assert np.abs(ours - ref).max() <= 1e-2 * scale
    assert rec["label_value"] == label_code(fmt) == (255 if fmt == "mpezeshki" else 112)


def test_offset_fold_brings_layer1_closer(pixels):
    lay = parse_state(mpezeshki_state(linears([64, 32, 16], seed=2)), "mpezeshki")
    drop, cfg, _ = convert(lay, 10, offset="drop")
    fold, cfg_fold, rec = convert(lay, 10, offset="fold", calib_u8=pixels)
    assert rec["fold_weight_gain"] != 1.0
    assert (cfg.label_value, cfg_fold.label_value) == (255, label_code("mpezeshki", "fold")) == (255, 222)
    assert label_code("loewex", "fold") == 79
    # layer 1 pre-activation on their input (label 3) vs on ffaccel's unsigned codes
    x = their_inputs(pixels)
    v = x.copy()
    v[:, :10] = 0
    v[:, 3] = x.max()
    want = drop.layers[0](torch.as_tensor(v / np.linalg.norm(v, axis=1, keepdims=True))).detach().numpy()
    def unsigned(label):
        u = pixels.astype(np.float64)
        u[:, :10] = 0
        u[:, 3] = label
        return torch.as_tensor(u / np.linalg.norm(u, axis=1, keepdims=True))
    err_drop = np.abs(drop.layers[0](unsigned(cfg.label_value)).detach().numpy() - want).mean()
    err_fold = np.abs(fold.layers[0](unsigned(cfg_fold.label_value)).detach().numpy() - want).mean()
    assert err_fold < 0.5 * err_drop


@pytest.mark.parametrize("fmt, state, msg", [
    ("mpezeshki", {"layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(4), "extra": torch.zeros(1)},
     "'extra' is not part of the mpezeshki layout"),
    ("mpezeshki", {"model.0.weight": torch.zeros(4, 8), "model.0.bias": torch.zeros(4)}, "not part of the mpezeshki"),
    ("loewex", {"layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(4)}, "not part of the loewex"),
    ("mpezeshki", {"layers.0.weight": torch.zeros(4, 8)}, "layers.0.bias is missing"),
    ("mpezeshki", {"layers.1.weight": torch.zeros(4, 8), "layers.1.bias": torch.zeros(4)}, "numbered 0..0"),
    ("mpezeshki", {"layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(4),
                   "layers.1.weight": torch.zeros(4, 5), "layers.1.bias": torch.zeros(4)}, "takes 5 inputs"),
    ("mpezeshki", {"layers.0.weight": torch.zeros(4, 8), "layers.0.bias": torch.zeros(3)}, "not a Linear"),
    ("mpezeshki", {"layers.0.weight": torch.zeros(4, 8, dtype=torch.int64), "layers.0.bias": torch.zeros(4)},
     "real floating-point"),
    ("mpezeshki", {"layers.0.weight": torch.full((4, 8), float("nan")), "layers.0.bias": torch.zeros(4)}, "NaN"),
    ("loewex", {"model.0.weight": torch.zeros(4, 8), "model.0.bias": torch.zeros(4)}, "at least 2 layers"),
    ("mpezeshki", {}, "non-empty mapping"),
    ("keras", {"a": torch.zeros(1)}, "unknown format"),
])
def test_unknown_layouts_are_refused(fmt, state, msg):
    with pytest.raises(FFAccelError, match=msg) as ei:
        parse_state(state, fmt)
    assert "\n" not in str(ei.value)


def test_cli_imports_and_eval_reads_the_checkpoint(tmp_path):
    layers = linears([64, 32, 32], seed=3)
    sd = tmp_path / "net.pt"
    torch.save(mpezeshki_state(layers), sd)
    out = tmp_path / "net.ckpt"
    r = subprocess.run([sys.executable, "-m", "ffaccel.import", "--format", "mpezeshki", str(sd), "--classes", "10",
                        "--dataset", "digits", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "max abs diff" in r.stdout and "integer" in r.stdout
    net, cfg, meta = load_checkpoint(out)
    assert cfg.layers == (32, 32) and cfg.label_value == 222 and meta["import"]["format"] == "mpezeshki"   # fold
    assert meta["import"]["compare"]["max_abs_diff_per_layer"] < 1e-4
    r = subprocess.run([sys.executable, "-m", "ffaccel.eval", "--checkpoint", str(out), "--dataset", "digits",
                        "--integer"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args, msg", [
    (["--format", "loewex", "{sd}"], "not part of the loewex layout"),
    (["--format", "mpezeshki", "{tmp}/none.pt"], "does not exist"),
    (["--format", "mpezeshki", "{bad}"], "truncated or corrupt"),
    (["--format", "mpezeshki", "{obj}"], "objects other than tensors"),
    (["--format", "mpezeshki", "{sd}", "--compare", "0"], "--compare=0"),
    (["--format", "mpezeshki", "{sd}", "--dataset", "mnist-nope"], "unknown dataset"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, msg):
    sd = tmp_path / "net.pt"
    torch.save(mpezeshki_state(linears([64, 8])), sd)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    obj = tmp_path / "obj.pt"
    torch.save({"net": torch.nn.Linear(2, 2)}, obj)
    argv = [a.format(sd=sd, tmp=tmp_path, bad=bad, obj=obj) for a in args]
    extra = [] if "--dataset" in argv else ["--dataset", "digits"]
    r = subprocess.run([sys.executable, "-m", "ffaccel.import", *argv, "--classes", "10", *extra,
                        "--out", str(tmp_path / "o.ckpt")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0]
    assert not (tmp_path / "o.ckpt").exists()


def test_cli_module_is_importable():
    mod = importlib.import_module("ffaccel.import")
    assert mod.PROG == "ffaccel.import"


@pytest.mark.parametrize("kw, msg", [
    ({"classes": 64}, "out of range"), ({"classes": 1}, "out of range"),
    ({"classes": 10, "offset": "fold"}, "calibration pixels"), ({"classes": 10, "offset": "shift"}, "unknown offset"),
])
def test_convert_refuses_bad_arguments(kw, msg):
    lay = parse_state(mpezeshki_state(linears([64, 8])), "mpezeshki")
    classes = kw.pop("classes")
    with pytest.raises(FFAccelError, match=msg):
        convert(lay, classes, **kw)
