"""Float FF training on digits, quantisation, float vs integer agreement, checkpoints, CLIs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ffaccel.config import AccelConfig
from ffaccel.errors import FFAccelError
from ffaccel.model.checkpoint import load_checkpoint, save_checkpoint
from ffaccel.model.evaluation import evaluate
from ffaccel.model.embed import embed_all, embed_labels, embed_neutral, input_codes
from ffaccel.model.exits import apply_exit, calibrate, layer_macs
from ffaccel.model.ff import FFNet, layer_optimizers, train_ff, train_heads
from ffaccel.model.recipe import TrainRecipe
from ffaccel.model.golden import GoldenModel
from ffaccel.model.quant import calibrate_integer, choose_formats, quantize


def _train(ds, mode):
    torch.set_num_threads(1)
    cfg = AccelConfig(inputs=ds.inputs, classes=ds.classes, layers=(128, 128), mode=mode)
    x = input_codes(ds.x_train, cfg)
    net = FFNet(cfg, seed=0)
    recipe = TrainRecipe(epochs=30, min_steps=0, lr=0.03, theta=2.0, batch=32, hard_negatives=0.5)
    train_ff(net, x, ds.y_train, recipe, progress=False)
    if mode == "op":
        train_heads(net, x, ds.y_train, recipe, progress=False)
    qcfg = choose_formats(net, x[:500], ds.y_train[:500])
    qm = calibrate_integer(quantize(net, qcfg), input_codes(ds.x_val, qcfg), ds.y_val)
    return net, qm


@pytest.fixture(scope="module")
def mp_model(digits):
    return _train(digits, "mp")


@pytest.fixture(scope="module")
def op_model(digits):
    return _train(digits, "op")


@pytest.mark.parametrize("which", ["mp_model", "op_model"])
def test_float_and_integer_models_agree_on_digits(which, request, digits):
    net, qm = request.getfixturevalue(which)
    cfg = qm.cfg
    f = evaluate(net, cfg, digits, k=1.0, policy=cfg.exit_policy, integer=False, limit=None)
    i = evaluate(net, cfg, digits, k=1.0, policy=cfg.exit_policy, integer=True, limit=None)
    assert f["accuracy_full"] > 0.80, f
    # 360 test samples: 1.5 points is 5 samples
    assert abs(f["accuracy_full"] - i["accuracy_full"]) <= 0.015, (f, i)
    assert abs(f["accuracy"] - i["accuracy"]) <= 0.03, (f, i)
    # the integer model's predictions mostly coincide with the float model's
    xte = input_codes(digits.x_test, cfg)
    fl = net.scores(xte)[:, -1].argmax(1)
    gl = GoldenModel(qm).run(xte).label_full
    assert (fl == gl).mean() > 0.95


def test_exit_saves_macs_and_k_is_a_knob(mp_model, digits):
    net, qm = mp_model
    reps = [evaluate(net, qm.cfg, digits, k=k, policy="max", integer=True, limit=None) for k in (-1.0, 1.0, 3.0)]
    macs = [r["macs_per_sample"] for r in reps]
    assert macs[0] >= macs[1] >= macs[2]          # lower thresholds -> earlier exits
    assert reps[2]["mac_reduction"] > 1.0
    assert sum(reps[1]["exit_histogram"].values()) == reps[1]["samples"]


def test_mac_counting():
    # docs/architecture.md, MAC accounting: 784-2000x4 MP costs 10 x 13.568 M MACs without sharing
    macs = layer_macs((784, 2000, 2000, 2000), (2000,) * 4, 10, "mp", share=False)
    assert sum(macs) == 135_680_000
    shared = layer_macs((784, 2000, 2000, 2000), (2000,) * 4, 10, "mp", share=True)
    assert shared[0] == 784 * 2000 and sum(shared) == 135_680_000 - 9 * 784 * 2000
    assert layer_macs((784, 100), (100, 100), 10, "op", share=False) == [78400 + 1000, 10000 + 1000]


def test_label_embedding():
    cfg = AccelConfig(inputs=16, classes=4, layers=(3,), abits=8)
    x = np.arange(32).reshape(2, 16) + 100
    allc = embed_all(x, cfg)
    assert allc.shape == (2, 4, 16)
    assert (allc[1, 2, :4] == [0, 0, 255, 0]).all() and (allc[:, :, 4:] == x[:, None, 4:]).all()
    assert (embed_labels(x, np.array([3, 0]), cfg)[:, :4] == [[0, 0, 0, 255], [255, 0, 0, 0]]).all()
    assert (embed_neutral(x, cfg)[:, :4] == 26).all()       # round-half-up of 25.5
    assert (input_codes(np.array([[0, 255] * 8]), cfg.replace(abits=4, afrac=0))[0, :2] == [0, 15]).all()


def test_float_exit_rule_matches_integer_rule():
    # the same calibrated thresholds give the same decisions on integer scores
    rng = np.random.default_rng(0)
    sc = np.cumsum(rng.integers(0, 100, size=(200, 3, 5)), axis=1)
    y = rng.integers(0, 5, size=200)
    th = calibrate(sc, y, "max", 0.5, 5)
    el, lab = apply_exit(sc, "max", th, (True,) * 3)
    from ffaccel.model.quant import integer_thresholds
    el2, lab2 = apply_exit(sc, "max", integer_thresholds(th, AccelConfig(inputs=20, classes=5, layers=(4, 4, 4))),
                           (True,) * 3)
    assert (el == el2).all() and (lab == lab2).all()


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path, mp_model):
    net, qm = mp_model
    p = tmp_path / "m.ckpt"
    save_checkpoint(p, net, qm.cfg, {"hello": 1})
    net2, cfg2, meta = load_checkpoint(p)
    assert cfg2 == qm.cfg and meta == {"hello": 1}
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["m.ckpt"]      # no temporary left behind


@pytest.mark.fault
def test_bad_checkpoints_are_refused(tmp_path, mp_model):
    net, qm = mp_model
    good = tmp_path / "good.ckpt"
    save_checkpoint(good, net, qm.cfg, {})
    data = good.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(FFAccelError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    with pytest.raises(FFAccelError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FFAccelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    # shapes that disagree with the stored config
    wrong = FFNet(qm.cfg.replace(layers=(128, 64), wfrac=(), hfrac=(), thresholds=()))
    save_checkpoint(tmp_path / "shape.ckpt", wrong, qm.cfg, {})
    with pytest.raises(FFAccelError, match="shape"):
        load_checkpoint(tmp_path / "shape.ckpt")
    torch.save({"format": "other"}, tmp_path / "other.ckpt")
    with pytest.raises(FFAccelError, match="not an ffaccel checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")


def test_checkpoint_cache_trains_once_per_recipe(tmp_path, monkeypatch, digits, digits_ckpt):
    """cached_fit: train and store on a miss, load on a hit, a new recipe is a new entry; a
    given checkpoint is used as is, if its network matches."""
    from ffaccel.model import cache
    net, qcfg, meta = load_checkpoint(digits_ckpt)
    calls = []

    def fake_fit(ds, cfg, recipe, threads=1, progress=False):     # stands for training: count the calls
        calls.append(recipe)
        return net, qcfg, meta
    monkeypatch.setattr(cache, "fit", fake_fit)
    monkeypatch.setenv("FFACCEL_CACHE", str(tmp_path / "cache"))
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=qcfg.layers)
    hyper = TrainRecipe(epochs=2)
    _, cfg1, _, p1 = cache.cached_fit(digits, cfg, hyper)
    net2, cfg2, meta2, p2 = cache.cached_fit(digits, cfg, hyper)
    assert len(calls) == 1 and p1 == p2 and os.path.dirname(p1) == str(tmp_path / "cache")
    assert cfg1 == cfg2 == qcfg and meta2 == meta
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    _, _, _, p3 = cache.cached_fit(digits, cfg, hyper.replace(epochs=3))
    assert len(calls) == 2 and p3 != p1
    _, _, _, p4 = cache.cached_fit(digits, cfg, hyper.replace(score_layers="all"))   # any recipe field
    assert len(calls) == 3 and p4 not in (p1, p3)
    assert cache.cached_fit(digits, cfg, hyper, given=str(digits_ckpt))[3] == str(digits_ckpt)
    with pytest.raises(FFAccelError, match="layers"):
        cache.cached_fit(digits, cfg.replace(layers=(16, 16, 16)), hyper, given=str(digits_ckpt))
    assert len(calls) == 3


# ---------------------------------------------------------------- command lines
def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_train_cli(tmp_path, digits_ckpt):
    """The one subprocess run of python -m ffaccel.train: continue the shared checkpoint's
    network for one short epoch, write a new checkpoint, print JSON."""
    ck = tmp_path / "d2.ckpt"
    r = _run("ffaccel.train", "--dataset", "digits", "--layers", "2x16", "--epochs", "1", "--limit", "200",
             "--min-steps", "0", "--init", str(digits_ckpt), "--out", str(ck), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["config"]["layers"] == [16, 16] and summary["checkpoint"] == str(ck)
    net, cfg, meta = load_checkpoint(ck)
    assert meta["train"]["init"] == str(digits_ckpt) and meta["train"]["train_samples"] == 200
    assert cfg.thresholds and summary["integer"]["samples"] == 359
    old, _, _ = load_checkpoint(digits_ckpt)
    assert not torch.equal(net.layers[0].weight, old.layers[0].weight)        # it trained


def test_eval_cli(digits_ckpt):
    """The one subprocess run of python -m ffaccel.eval."""
    r = _run("ffaccel.eval", "--checkpoint", str(digits_ckpt), "--dataset", "digits", "--mode", "mp",
             "--integer", "--k", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("accuracy", "accuracy_full", "macs_per_sample", "macs_full", "exit_histogram",
                "macs_per_sample_noshare", "macs_full_noshare"):
        assert key in rep
    assert rep["model"] == "integer" and rep["k"] == 0.5 and rep["samples"] == 359
    # 64-16-16-10 MP with layer-1 sharing: 64*16 + 10*16*16 MACs at full depth; 10 x that without
    assert rep["macs_full"] == 64 * 16 + 10 * 16 * 16 and rep["macs_full_noshare"] == 10 * (64 * 16 + 16 * 16)


@pytest.mark.fault
def test_train_refuses_to_continue_another_network(tmp_path, cli, digits_ckpt):
    r = cli("train", "--dataset", "digits", "--layers", "3x16", "--epochs", "1", "--init", str(digits_ckpt),
            "--out", str(tmp_path / "d3.ckpt"), "--no-progress")
    assert r.returncode == 2 and "layers" in r.stderr and not (tmp_path / "d3.ckpt").exists()


@pytest.mark.parametrize("args,fragment", [
    (("train", "--dataset", "banana", "--out", "x.ckpt"), "unknown dataset 'banana'"),
    (("train", "--dataset", "digits", "--epochs", "0", "--out", "x.ckpt"), "epochs=0 out of range"),
    (("train", "--dataset", "digits", "--layers", "4x0", "--out", "x.ckpt"), "--layers '4x0'"),
    (("train", "--dataset", "digits", "--inputs", "784", "--out", "x.ckpt"), "has 64 inputs"),
    (("eval", "--checkpoint", "missing.ckpt", "--dataset", "digits"), "does not exist"),
    (("eval", "--checkpoint", "junk.ckpt", "--dataset", "digits"), "truncated or corrupt"),
    (("eval", "--checkpoint", "missing.ckpt", "--dataset", "digits", "--mode", "zz"), "invalid choice"),
])
@pytest.mark.fault
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, monkeypatch, cli, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04broken")
    r = cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.fault
def test_eval_refuses_mismatched_mode(cli, digits_ckpt):
    r = cli("eval", "--checkpoint", str(digits_ckpt), "--dataset", "digits", "--mode", "op")
    assert r.returncode == 2 and "trained for mp" in r.stderr


def _adam_gap(fan_in: int, fan_in_lr: bool) -> tuple[float, float]:
    """Largest weight and bias gap between the unit-length layer trained by
    layer_optimizers and an RMS-input layer trained by plain Adam, after 5 steps."""
    torch.manual_seed(fan_in)
    cfg = AccelConfig(inputs=fan_in, classes=2, layers=(16,))
    net = FFNet(cfg, seed=1).double()
    lin = net.layers[0]
    ref = torch.nn.Linear(fan_in, 16).double()
    with torch.no_grad():
        ref.weight.copy_(lin.weight / fan_in ** 0.5)
        ref.bias.copy_(lin.bias)
    (opt,) = layer_optimizers(net, 0.01, fan_in_lr=fan_in_lr)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for grp in opt.param_groups + ref_opt.param_groups:
        grp["eps"] = 1e-30          # Adam's eps is the one term that sees the gradient's scale
    for _ in range(5):
        x = torch.rand(32, fan_in, dtype=torch.float64)
        unit = x / x.norm(dim=1, keepdim=True)
        rms = x / x.pow(2).mean(1, keepdim=True).sqrt()
        for o, h in ((opt, torch.relu(lin(unit))), (ref_opt, torch.relu(ref(rms)))):
            loss = torch.nn.functional.softplus(1.0 - h.pow(2).mean(1)).mean()
            o.zero_grad()
            loss.backward()
            o.step()
    with torch.no_grad():
        return (float((lin.weight / fan_in ** 0.5 - ref.weight).abs().max()),
                float((lin.bias - ref.bias).abs().max()))


@pytest.mark.parametrize("fan_in", [7, 64, 784])
def test_fan_in_adam_step_is_the_rms_input_layer(fan_in):
    """Unit-length input + weight step sqrt(fan_in)*lr == RMS input + plain Adam (lr)."""
    dw, db = _adam_gap(fan_in, True)
    assert dw < 1e-9 and db < 1e-9, (dw, db)
    # plain Adam on the unit-length form is a different (slower) trajectory
    dw_plain, _ = _adam_gap(fan_in, False)
    assert dw_plain > 1e-3, dw_plain


@pytest.mark.parametrize("bad,fragment", [
    (float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"), ("complex", "real floating point"),
    ("int", "real floating point"), ("list", "not a tensor")])
@pytest.mark.fault
def test_checkpoint_refuses_non_finite_or_odd_weights(tmp_path, digits_ckpt, bad, fragment):
    """A checkpoint whose weights are NaN, infinite, complex, integer or not tensors is
    refused with one line (it used to give weight images of -128 and an accuracy)."""
    blob = torch.load(digits_ckpt, weights_only=True)
    w = blob["state"]["layers.0.weight"]
    if bad == "complex":
        w = w.to(torch.complex64)
    elif bad == "int":
        w = w.to(torch.int32)
    elif bad == "list":
        w = w.tolist()
    else:
        w = w.clone()
        w[0, 0] = bad
    blob["state"]["layers.0.weight"] = w
    torch.save(blob, tmp_path / "bad.ckpt")
    with pytest.raises(FFAccelError, match=fragment) as e:
        load_checkpoint(tmp_path / "bad.ckpt")
    assert "\n" not in str(e.value)


@pytest.mark.fault
def test_checkpoint_claiming_a_huge_network_is_refused_before_allocation(tmp_path, digits_ckpt):
    """A small file whose config claims 64 layers of 65536 (16 GiB of float32 weights) is
    refused from the shapes alone: the network is never built."""
    import resource
    blob = torch.load(digits_ckpt, weights_only=True)
    cfg = json.loads(blob["config"])
    cfg.update(layers=[65536] * 64, wfrac=[], hfrac=[], thresholds=[])
    blob["config"] = json.dumps(cfg)
    torch.save(blob, tmp_path / "huge.ckpt")
    assert (tmp_path / "huge.ckpt").stat().st_size < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FFAccelError, match="does not match its config|has shape"):
        load_checkpoint(tmp_path / "huge.ckpt")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000      # KiB: no 16 GiB


def _denormal_survives() -> bool:
    """Does a float32 denormal (1e-40) survive a multiplication by one on this thread?"""
    return float(torch.tensor([1e-40], dtype=torch.float32).mul(1.0)[0]) != 0.0


def test_trainers_flush_denormals_while_they_run_and_restore_the_default(digits):
    """Adam's moments of weights with zero gradient go denormal after ~800 steps and slowed
    a 4x2000 training 1.8x; every trainer flushes them while it runs, and only then."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    torch.set_flush_denormal(False)
    assert _denormal_survives()
    cfg = AccelConfig(inputs=digits.inputs, classes=digits.classes, layers=(8,), mode="mp")
    net, seen = FFNet(cfg), []
    recipe = TrainRecipe(epochs=2, min_steps=0, batch=256, qat_epochs=0)
    train_ff(net, input_codes(digits.x_train, cfg), digits.y_train, recipe, progress=False,
             on_epoch=lambda e, n: seen.append(_denormal_survives()))
    assert seen == [False, False]
    assert _denormal_survives()                       # the default is back

    from ffaccel.model.ff import flushes_denormals

    @flushes_denormals
    def outer():
        inner()                                       # a nested trainer leaves it on
        seen.append(_denormal_survives())
        raise RuntimeError("boom")

    @flushes_denormals
    def inner():
        seen.append(_denormal_survives())

    with pytest.raises(RuntimeError):
        outer()
    assert seen[2:] == [False, False]
    assert _denormal_survives()                       # restored after an exception too
