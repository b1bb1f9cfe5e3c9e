"""Binary stochastic FF (issue #17) through the stack: training (the expected goodness and
its gradient), quantisation and QAT, checkpoints and the cache key, the command lines'
bad input, the energy model's multiplier-free PE and sampler, the study script's bad
input. The RTL's bit-exactness is in tests/test_engine.py (random configs), test_verify.py
(cocotb, both simulators, mutation faults), test_perf.py (activity == VCD) and test_rng.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ffaccel.config import AccelConfig
from ffaccel.model.recipe import TrainRecipe

# binary units learn slower than ReLU ones: digits needs a few thousand steps (docs/results.md)
RECIPE = dict(epochs=6, min_steps=3000, batch=32, score_layers="all")


def _cfg(digits, k: int = 1, **kw) -> AccelConfig:
    return AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(32, 32), mode="mp", neuron="bsff",
                       bsff_k=k, abits=k.bit_length(), **kw)


@pytest.fixture(scope="module")
def bsff_ckpt(tmp_path_factory, digits):
    """An MP 64-32-32-10 BSFF network (k = 3) trained on digits, quantised, calibrated."""
    from ffaccel.model.checkpoint import save_checkpoint
    from ffaccel.model.training import fit
    net, qcfg, meta = fit(digits, _cfg(digits, 3), TrainRecipe(**RECIPE), progress=False)
    path = tmp_path_factory.mktemp("bsff") / "digits-bsff.ckpt"
    save_checkpoint(path, net, qcfg, meta)
    return path, qcfg, meta


def test_training_learns_and_the_integer_model_follows(bsff_ckpt):
    """Far above chance (10%) on digits in a few epochs, float and integer alike."""
    _, qcfg, meta = bsff_ckpt
    assert qcfg.neuron == "bsff" and qcfg.bsff_k == 3 and qcfg.abits == 2
    assert meta["float"]["accuracy_full"] > 0.6
    assert meta["integer"]["accuracy_full"] > 0.6
    assert abs(meta["float"]["accuracy_full"] - meta["integer"]["accuracy_full"]) < 0.1


def test_expected_goodness_is_exact():
    """E[sum_j c_j^2] / (n k^2) of ``bsff_goodness`` equals the Monte Carlo mean of the
    sampled counts, and its gradient flows to the weights and the tied biases."""
    from ffaccel.model.ff import FFNet, bsff_goodness
    cfg = AccelConfig(inputs=12, layers=(5,), classes=3, neuron="bsff", bsff_k=3, abits=2)
    net = FFNet(cfg, seed=1)
    x = torch.rand(4, 12)
    g, h = bsff_goodness(net, 0, x)
    torch.manual_seed(0)
    mc = torch.stack([bsff_goodness(net, 0, x)[1].pow(2).mean(-1) / 9 for _ in range(4000)]).mean(0)
    assert torch.allclose(g.detach(), mc, atol=0.01)
    assert h.min() >= 0 and h.max() <= 3 and h.dtype == torch.float32
    g.sum().backward()
    assert net.layers[0].weight.grad.abs().sum() > 0 and net.layers[0].bias.grad.shape == (5, 3)


def test_qat_leaves_weights_on_the_grid(digits):
    from ffaccel.model.embed import input_codes
    from ffaccel.model.ff import FFNet, train_ff
    from ffaccel.model.qat import fine_tune
    from ffaccel.model.quant import choose_formats, quantize
    cfg = _cfg(digits, 1, wbits=4)
    net = FFNet(cfg)
    x = input_codes(digits.x_train, cfg)
    r = TrainRecipe(**RECIPE, qat_epochs=1).replace(epochs=1, min_steps=0)
    train_ff(net, x, digits.y_train, r, progress=False)
    fine_tune(net, x, digits.y_train, r, 4, progress=False)
    qm = quantize(net, choose_formats(net, x[:200], digits.y_train[:200]))
    for l, w, f in zip(net.layers, qm.weights, qm.cfg.wfrac):
        assert np.array_equal(w * 2.0 ** -f, l.weight.detach().double().numpy())
    assert qm.cfg.afrac == 4 and qm.biases[0].shape == (32, 1)


def test_cache_key_separates_neurons_and_keeps_relu_keys(digits):
    """A BSFF network and the ReLU network of the same shape are different trainings; a
    ReLU network's key is what it was before BSFF (no neuron fields in it)."""
    import hashlib
    from ffaccel.model.cache import cache_key
    relu = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(32, 32))
    r = TrainRecipe(qat_epochs=0)          # (fine-tuning adds the weight width to the key)
    assert cache_key(digits, relu, r) != cache_key(digits, _cfg(digits, 1), r)
    assert cache_key(digits, _cfg(digits, 1), r) != cache_key(digits, _cfg(digits, 3), r)
    blob = json.dumps({"net": {"inputs": 64, "layers": (32, 32), "classes": 10, "mode": "mp", "exit_head": "learned"},
                       "recipe": r.key(), "data": digits.provenance.get("sha256"), "name": digits.name,
                       "algorithm": TrainRecipe.algorithm("learned")}, sort_keys=True, default=list)
    assert cache_key(digits, relu, r) == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_checkpoint_runs_on_the_engine_and_refuses_relu(bsff_ckpt, digits, cli, tmp_path):
    path, qcfg, _ = bsff_ckpt
    r = cli("eval", "--checkpoint", str(path), "--dataset", "digits", "--json")
    assert r.returncode == 0, r.stderr
    bad = cli("energy", "--checkpoint", str(path), "--dataset", "digits", "--neuron", "relu")
    assert bad.returncode == 2 and "has neuron='bsff'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, \
        bad.stderr
    e = cli("energy", "--checkpoint", str(path), "--dataset", "digits", "--limit", "40", "--json")
    assert e.returncode == 0, e.stderr
    rep = json.loads(e.stdout)
    assert rep["components"]["sampler"] > 0 and rep["bsff"]["pbit_total_pj"] < rep["total_pj"]
    g = cli("gen", "--checkpoint", str(path), "--out", str(tmp_path / "rtl"))
    assert g.returncode == 0, g.stderr
    c = json.loads((tmp_path / "rtl" / "manifest.json").read_text())["config"]
    assert (c["neuron"], c["bsff_k"], c["abits"]) == ("bsff", 3, 2)


@pytest.mark.parametrize("args,fragment", [
    (["--neuron", "bsff", "--abits", "4"], "needs abits=1"),
    (["--bsff-k", "3"], "needs neuron='bsff'"),
    (["--neuron", "bsff", "--bsff-k", "9"], "bsff_k=9 is out of range"),
    (["--neuron", "bsff", "--bsff-seed", "0"], "bsff_seed=0 is out of range"),
    (["--neuron", "tanh"], "neuron='tanh' is not allowed"),
])
def test_bad_bsff_flags_are_one_line_exit_2(args, fragment, cli, tmp_path):
    r = cli("gen", "--layers", "2x16", "--inputs", "64", *args, "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "g").exists()


def test_neuron_flag_derives_the_count_width(cli, tmp_path):
    r = cli("gen", "--layers", "2x16", "--inputs", "64", "--neuron", "bsff", "--bsff-k", "3",
            "--out", str(tmp_path / "g"))
    assert r.returncode == 0, r.stderr
    c = json.loads((tmp_path / "g" / "manifest.json").read_text())["config"]
    assert (c["neuron"], c["bsff_k"], c["abits"]) == ("bsff", 3, 2)


def test_energy_model_counts_adds_not_multiplies():
    """The BSFF PE's product costs gates and (k > 1) adds, not a multiplier; the sampler
    costs the hash rounds and per tied unit a table read and a compare; p-bits 1/100."""
    from ffaccel.energy.coeffs import load_coeffs
    from ffaccel.energy.model import sampler_pj
    c = load_coeffs()
    assert c.select_add_pj(1, 8) == pytest.approx(8 * c["gate_pj"]) and c.select_add_pj(1, 8) < c.mult_pj(8, 8) / 10
    assert c.select_add_pj(2, 8) == pytest.approx(16 * c["gate_pj"] + c.add_pj(10))
    cfg = AccelConfig(inputs=20, layers=(8,), classes=3, neuron="bsff", bsff_k=2, abits=2)
    s = sampler_pj(cfg, c)
    assert s["cmos"] == pytest.approx(s["hash"] + 2 * s["per_unit"] + c.add_pj(2))
    assert s["pbit"] == pytest.approx(0.01 * (s["hash"] + 2 * s["per_unit"]) + c.add_pj(2))
    assert sampler_pj(AccelConfig(inputs=20, layers=(8,), classes=3), c)["cmos"] == 0


def _script(*args):
    return subprocess.run([sys.executable, "scripts/bsff_vs_relu.py", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,fragment", [
    (["--bsff-k", "7"], "--bsff-k '7' (allowed: 1..4)"),
    (["--dataset", "digits"], "needs 784 / 10"),
    (["--layers", "2y500"], "is not N or RxN"),
    (["--verify-samples", "0"], "--verify-samples=0 out of range"),
    (["--bsff-target", "1.5"], "bsff_target=1.5 out of range"),
    (["--bsff-target", "x"], "invalid number: 'x'"),
])
def test_study_refuses_bad_input_before_work(args, fragment, tmp_path):
    r = _script(*args, "--json", str(tmp_path / "o.json"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.json").exists()
