"""Physical (black-box) layers: the spec, the plug-ins, model-free training and the tools.

The golden model with physical layers and the cosine goodness is checked against the
plain-integer reference in tests/test_golden.py.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ffaccel.config import AccelConfig, ConfigError
from ffaccel.model.golden import GoldenModel, QuantModel
from ffaccel.model.physical import (ExternalPhysical, MatrixPhysical, PhysicalError, RandomPhysical, build_stack,
                                    prepare, quantise_response)
from ffaccel.physical_spec import blocks, parse_spec, pin_files


# ---------------------------------------------------------------- the spec
def test_spec_round_trips_canonically_and_leaves_defaults_out():
    s = parse_spec("random: noise=0.02 ,seed=3,drift=0.001,act=abs")
    assert s.canonical() == "random:drift=0.001,noise=0.02,seed=3"
    assert parse_spec(s.canonical()) == s
    assert parse_spec("random:").canonical() == "random:"
    e = parse_spec("exec:out=5,cmd=python3 -c 'a,b'")
    assert e.get("cmd") == "python3 -c 'a,b'" and e.out == 5        # cmd takes the rest, commas included
    assert parse_spec(e.canonical()) == e


@pytest.mark.parametrize("text,fragment", [
    ("random", "expected KIND:key=value"), ("laser:seed=1", "unknown kind 'laser'"),
    ("random:seed", "not key=value"), ("random:colour=3", "not key=value"),
    ("random:seed=1,seed=2", "seed given twice"), ("random:noise=nan", "not a valid float"),
    ("random:noise=-1", "noise=-1.0 out of range"), ("random:drift=2", "drift=2.0 out of range"),
    ("random:act=tanh", "act='tanh'"), ("random:at=x", "at='x'"), ("random:at=-2", "at='-2'"),
    ("random:at=2-", "at='2-'"), ("random:at=\u00b2", "at="), ("file:noise=0.1", "file needs path"),
    ("exec:out=3", "exec needs cmd"), ("random:out=-1", "out=-1 out of range"), ("random:concat=2", "concat='2'"),
])
def test_bad_specs_are_refused_with_the_reason(text, fragment):
    with pytest.raises(PhysicalError, match=None) as e:
        parse_spec(text)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_blocks_derive_the_fan_ins():
    b = blocks("random:out=7,concat=1,at=2-3", 20, (5, 6, 4))
    assert [x.physical for x in b] == [False, True, True]
    assert [x.fan_in for x in b] == [20, 7 + 5, 7 + 6]
    assert [x.fan_in for x in blocks("random:at=1+3", 20, (5, 6, 4))] == [20, 5, 6]
    with pytest.raises(PhysicalError, match="layers are 1..3"):
        blocks("random:at=2-5", 20, (5, 6, 4))


def test_config_carries_the_spec_and_old_configs_keep_their_hash():
    plain = AccelConfig(inputs=20, layers=(5, 4), classes=3)
    assert "physical" not in plain.to_dict() and "goodness" not in plain.to_dict()
    c = plain.replace(physical="random:seed=2,concat=1,out=6", goodness="cos")
    assert c.physical == "random:concat=1,out=6,seed=2" and c.fan_in == (6 + 20, 6 + 5)
    assert not c.share_layer1 and plain.share_layer1
    assert AccelConfig.from_dict(json.loads(c.to_json())) == c
    assert c.hash() != plain.hash()
    with pytest.raises(ConfigError, match="unknown kind"):
        plain.replace(physical="laser:")
    with pytest.raises(ConfigError, match="goodness"):
        plain.replace(goodness="l2")
    with pytest.raises(ConfigError, match="BSFF with physical layers"):
        AccelConfig(inputs=20, layers=(5,), classes=3, abits=1, neuron="bsff", physical="random:")


def test_the_engine_runs_the_cosine_and_physical_layers():
    from ffaccel.schedule import schedule
    assert schedule(AccelConfig(inputs=20, layers=(5,), classes=3, physical="random:")).ports[0] is not None
    s = schedule(AccelConfig(inputs=20, layers=(5, 4), classes=3, goodness="cos"))
    assert [p for p, _ in s.layer_phases(0)] == ["norm", "stream", "flush", "cos", "exit"]
    assert [p for p, _ in s.layer_phases(1)] == ["stream", "flush", "cos", "exit"]
    assert dict(s.layer_phases(1))["cos"] == s.banks - 1 + s.latency.cos


# ---------------------------------------------------------------- the plug-ins
def test_emulator_is_homogeneous_reproducible_and_noisy_as_asked():
    rng = np.random.default_rng(0)
    u = rng.random((50, 30))
    p = RandomPhysical(30, 40, seed=3, block=1)
    y = p(u)
    assert y.shape == (50, 40) and (y >= 0).all()
    assert np.allclose(p(3.5 * u), 3.5 * y)                     # P(c u) = c P(u): units do not matter
    wide = RandomPhysical(30, 2000, seed=3, block=1)(u)          # each output ~ |N(0, rms(u)^2)|
    assert np.allclose(wide.mean(), np.sqrt(2 / np.pi) * np.sqrt((u * u).mean()), rtol=0.05)
    assert not np.allclose(RandomPhysical(30, 40, seed=3, block=2)(u), y)   # each block its own transform
    noisy = RandomPhysical(30, 40, seed=3, block=1, noise=0.05)
    a = noisy(u)
    rel = (a - y).std() / np.sqrt((u * u).mean())
    assert 0.035 < rel < 0.06                                  # noise is relative to the drive (clipped at 0)
    assert not np.array_equal(noisy(u), a)                     # fresh at every call
    noisy.reset()
    assert np.array_equal(noisy(u), a)                         # reproducible from reset


def test_drift_is_a_random_walk_of_the_stated_size():
    p = RandomPhysical(64, 64, seed=1, block=0, drift=0.01)
    a0 = p.a.copy()
    p.advance(100)
    moved = np.linalg.norm(p.a - a0) / np.linalg.norm(a0)
    assert 0.08 < moved < 0.12                                 # 0.01 * sqrt(100)
    p.reset()
    assert np.array_equal(p.a, a0) and p.time == 0
    with pytest.raises(PhysicalError, match="back in time"):
        p.advance(-1)


def test_measured_model_file_and_its_refusals(tmp_path):
    w = np.random.default_rng(1).standard_normal((6, 4))
    f = tmp_path / "p.npz"
    np.savez(f, weight=w, act=np.array("relu"))
    m = MatrixPhysical(4, 6, path=str(f), block=0)
    u = np.random.default_rng(2).random((3, 4))
    assert np.allclose(m(u), np.maximum(u @ w.T, 0))
    with pytest.raises(PhysicalError, match=r"matrix is \(6, 4\); the network needs \(5, 4\)"):
        MatrixPhysical(4, 5, path=str(f), block=0)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PhysicalError, match="cannot be read as .npz"):
        MatrixPhysical(4, 6, path=str(tmp_path / "bad.npz"), block=0)
    with pytest.raises(PhysicalError, match="cannot be read"):
        pin_files(parse_spec(f"file:path={tmp_path / 'missing.npz'}"))
    pinned = pin_files(parse_spec(f"file:path={f}"))
    np.savez(f, weight=w * 2)
    with pytest.raises(PhysicalError, match="has changed since the network was trained"):
        pin_files(pinned)


EXTERNAL = textwrap.dedent("""
    import sys, numpy as np
    w = np.random.default_rng(7).standard_normal((3, 4))
    while True:
        head = sys.stdin.buffer.readline()
        if not head:
            break
        _, block, rows, n_in, n_out = head.split()
        rows, n_in = int(rows), int(n_in)
        if rows == 0:
            continue                                  # advance: nothing to answer
        u = np.frombuffer(sys.stdin.buffer.read(rows * n_in * 8), dtype="<f8").reshape(rows, n_in)
        sys.stdout.buffer.write(np.abs(u @ w.T).astype("<f8").tobytes())
        sys.stdout.buffer.flush()
""")


def test_external_process_answers_over_the_protocol(tmp_path):
    script = tmp_path / "p.py"
    script.write_text(EXTERNAL)
    p = ExternalPhysical(4, 3, cmd=f"{sys.executable} {script}", block=0)
    try:
        u = np.random.default_rng(3).random((5, 4))
        w = np.random.default_rng(7).standard_normal((3, 4))
        assert np.allclose(p(u), np.abs(u @ w.T))
        p.advance(3)
        assert np.allclose(p(u[:2]), np.abs(u[:2] @ w.T))
    finally:
        p.close()
    short = ExternalPhysical(4, 3, cmd=f"{sys.executable} -c pass", block=0)
    with pytest.raises(PhysicalError, match="exited|answered 0 bytes"):
        short(u)
    with pytest.raises(PhysicalError, match="cannot be started"):
        ExternalPhysical(4, 3, cmd=str(tmp_path / "no-such-program"), block=0)


def test_responses_are_read_on_the_block_inputs_grid():
    assert quantise_response(np.array([[0.49, 0.5, 1.26, 99.0, -1.0]]), 2, 15).tolist() == [[2, 2, 5, 15, 0]]


# ---------------------------------------------------------------- model-free training
@pytest.fixture(scope="module")
def trained():
    from ffaccel.data import load_dataset
    from ffaccel.model.recipe import TrainRecipe
    from ffaccel.model.training import fit
    ds = load_dataset("digits")
    cfg = AccelConfig(inputs=64, layers=(64, 64), physical="random:seed=3,noise=0.02,concat=1", goodness="cos")
    net, qcfg, meta = fit(ds, cfg, TrainRecipe(min_steps=1500), progress=False)
    return ds, net, qcfg, meta


def test_training_learns_and_the_integer_model_follows(trained):
    ds, net, qcfg, meta = trained
    assert meta["float"]["accuracy_full"] > 0.85 and meta["integer"]["accuracy_full"] > 0.85
    assert abs(meta["float"]["accuracy_full"] - meta["integer"]["accuracy_full"]) < 0.03
    assert qcfg.physical == "random:concat=1,noise=0.02,seed=3" and qcfg.goodness == "cos"


@pytest.mark.parametrize("kw", [dict(), dict(mode="op", exit_head="lls"), dict(mode="op")])
def test_every_training_drives_the_physical_layers_with_plain_arrays(kw, monkeypatch):
    """FF, LLS and head training run every layer on P's response (model-free: P gets
    numpy arrays, never a tensor that could carry a gradient)."""
    from ffaccel.model.ff import FFNet, train_ff, train_heads, train_lls
    from ffaccel.model.recipe import TrainRecipe
    cfg = AccelConfig(inputs=20, layers=(6, 5), classes=3, physical="random:out=9,seed=1", goodness="cos", **kw)
    net = FFNet(cfg)
    calls = []
    for i, p in enumerate(net.physical.layers):
        orig = p.forward
        monkeypatch.setattr(p, "forward", lambda u, i=i, orig=orig: (calls.append((i, type(u))), orig(u))[1])
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, size=(40, 20)), rng.integers(0, 3, size=40)
    r = TrainRecipe(epochs=1, min_steps=0, batch=20, hard_negatives=0.0)
    train = train_lls if cfg.exit_head != "learned" else train_ff
    train(net, x, y, r, progress=False)
    if cfg.mode == "op" and cfg.exit_head == "learned":
        train_heads(net, x, y, r, progress=False)
    assert {i for i, _ in calls} == {0, 1} and {t for _, t in calls} == {np.ndarray}


def test_responses_are_read_on_the_block_inputs_grid_in_the_golden_model():
    """Recomputed outside the golden model: layer 1's P is driven with the image codes and
    read back at frac 0, layer 2's with the activations' values and read back at afrac."""
    cfg = AccelConfig(inputs=20, layers=(8, 6), classes=3, abits=6, afrac=3, physical="random:out=7,seed=4,act=relu",
                      goodness="cos")
    stack = build_stack(cfg.physical, cfg.inputs, cfg.layers)
    qm = QuantModel.random(cfg, np.random.default_rng(1))
    qm = QuantModel(cfg, qm.weights, qm.biases, physical=stack)
    x = np.random.default_rng(2).integers(0, cfg.amax + 1, size=(4, 20))
    res = GoldenModel(qm).run(x, probe=True)
    from ffaccel.model.embed import embed_all
    u1 = embed_all(x, cfg).reshape(-1, 20).astype(float)
    want1 = np.clip(np.floor(stack.layers[0].forward(u1) + 0.5), 0, cfg.amax)
    assert (res.responses[0].reshape(-1, 7) == want1).all()
    h1 = res.activations[0].reshape(-1, 8) * 2.0 ** -cfg.afrac
    want2 = np.clip(np.floor(stack.layers[1].forward(h1) * 2 ** cfg.afrac + 0.5), 0, cfg.amax)
    assert (res.responses[1].reshape(-1, 7) == want2).all()


def test_float_goodness_is_the_cosine_and_the_integer_one_follows(trained):
    ds, net, qcfg, _ = trained
    from ffaccel.model.quant import quantize
    x = ds.x_test[:20].reshape(20, -1)
    from ffaccel.model.embed import input_codes
    codes = input_codes(x, qcfg)
    net.physical.reset()
    fl = net.layer_scores(codes)                                 # (B, L, classes), cosines
    assert np.abs(fl).max() <= 1 + 1e-6
    net.physical.reset()
    res = GoldenModel(quantize(net, qcfg)).run(codes)
    per_layer = np.diff(np.concatenate([np.zeros_like(res.layer_scores[:, :1]), res.layer_scores], 1), axis=1)
    scored = [i for i, s in enumerate(qcfg.scored) if s]
    assert np.abs(per_layer[:, scored] / 2 ** qcfg.lfrac - fl[:, scored]).mean() < 0.05


def test_checkpoint_records_the_physical_layers_and_eval_uses_them(trained, tmp_path, cli):
    ds, net, qcfg, meta = trained
    from ffaccel.model.checkpoint import load_checkpoint, save_checkpoint
    path = tmp_path / "phy.ckpt"
    save_checkpoint(path, net, qcfg, meta)
    net2, cfg2, _ = load_checkpoint(path)
    assert cfg2.physical == qcfg.physical and net2.physical is not None
    r = cli("eval", "--checkpoint", str(path), "--dataset", "digits", "--integer", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy_full"] > 0.85


# ---------------------------------------------------------------- command lines
def test_train_cli_with_a_file_model_and_bad_inputs(tmp_path, cli):
    f = tmp_path / "p.npz"
    np.savez(f, weight=np.random.default_rng(0).standard_normal((32, 32)))    # in front of layer 2
    out = tmp_path / "c.ckpt"
    r = cli("train", "--dataset", "digits", "--layers", "2x32", "--physical", f"file:path={f},at=2",
            "--min-steps", "200", "--epochs", "1", "--no-progress", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)["config"]
    assert cfg["goodness"] == "cos" and "sha256=" in cfg["physical"]      # derived, and the file pinned
    for args, fragment in [
        (["--physical", "laser:"], "unknown kind 'laser'"),
        (["--physical", f"file:path={tmp_path / 'none.npz'}"], "cannot be read"),
        (["--physical", f"file:path={f},at=2", "--layers", "2x40"], "needs (40, 40)"),
    ]:
        r = cli("train", "--dataset", "digits", "--layers", "2x32", "--no-progress", "--out",
                str(tmp_path / "x.ckpt"), *args)
        assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "x.ckpt").exists()
    np.savez(f, weight=np.ones((32, 32)))                      # the file changes after training
    r = cli("eval", "--checkpoint", str(out), "--dataset", "digits")
    assert r.returncode == 2 and "has changed since the network was trained" in r.stderr
    r = cli("gen", "--checkpoint", str(out), "-o", str(tmp_path / "rtl"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_a_checkpoints_exec_command_runs_only_when_allowed(tmp_path, monkeypatch, cli):
    from ffaccel.model.checkpoint import load_checkpoint, save_checkpoint
    from ffaccel.model.ff import FFNet
    marker = tmp_path / "ran"
    cfg = AccelConfig(inputs=64, layers=(8,), classes=10, goodness="cos",
                      physical=f"exec:cmd={sys.executable} -c \"open('{marker}', 'w')\"")
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, FFNet(cfg), cfg, {})
    monkeypatch.delenv("FFACCEL_ALLOW_EXEC", raising=False)
    net, _, _ = load_checkpoint(path)                           # loading starts nothing
    with pytest.raises(PhysicalError, match="set FFACCEL_ALLOW_EXEC=1"):
        net.physical
    r = cli("eval", "--checkpoint", str(path), "--dataset", "digits")
    assert r.returncode == 2 and "FFACCEL_ALLOW_EXEC" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("gen", "--checkpoint", str(path), "-o", str(tmp_path / "rtl"))
    assert r.returncode == 2
    assert not marker.exists()


def test_dse_space_refuses_physical_layers_before_any_work_and_takes_the_cosine(tmp_path):
    from ffaccel.dse.space import load_space
    from ffaccel.errors import FFAccelError
    sp = tmp_path / "s.toml"
    sp.write_text('[workload]\ndataset = "digits"\n[base]\nphysical = "random:"\n[axes]\nk = [1.0]\n')
    with pytest.raises(FFAccelError, match="explores digital designs"):
        load_space(sp)
    sp.write_text('[workload]\ndataset = "digits"\n[base]\nmode = "mp"\n[axes]\ngoodness = ["sq", "cos"]\n')
    assert load_space(sp).axes["goodness"] == ["sq", "cos"]


def test_a_saved_config_keeps_its_goodness_through_the_command_line(tmp_path):
    import argparse
    from ffaccel.cli import add_config_args, config_from_args
    c = AccelConfig(inputs=20, layers=(5,), classes=3, physical="random:", goodness="sq")
    f = tmp_path / "c.json"
    f.write_text(c.to_json())
    p = argparse.ArgumentParser()
    add_config_args(p)
    assert config_from_args(p.parse_args(["--config", str(f)])) == c
    assert config_from_args(p.parse_args(["--physical", "random:"])).goodness == "cos"     # derived


def test_stack_built_from_the_config_matches_its_blocks():
    cfg = AccelConfig(inputs=20, layers=(5, 6), classes=3, physical="random:out=9,at=2")
    st = build_stack(cfg.physical, cfg.inputs, cfg.layers)
    assert st.layers[0] is None and (st.layers[1].n_in, st.layers[1].n_out) == (5, 9)
    assert prepare(cfg) == cfg
    qm = QuantModel.random(cfg, np.random.default_rng(0))
    assert qm.physical.layers[1].n_out == 9                 # a random model runs with its config's P
    bare = QuantModel(cfg, qm.weights, qm.biases, qm.heads, qm.head_biases)
    with pytest.raises(ValueError, match="needs `physical`"):
        GoldenModel(bare).run(np.zeros((1, 20), dtype=np.int64))


# ---------------------------------------------------------------- the studies
def _script(name, *args):
    return subprocess.run([sys.executable, f"scripts/{name}", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name,args,fragment", [
    ("phyff_drift.py", ["--drift", "0"], "--drift=0.0 out of range"),
    ("phyff_drift.py", ["--steps", "0"], "--steps=0 out of range"),
    ("phyff_drift.py", ["--physical", "random:drift=0.1"], "without drift"),
    ("phyff_drift.py", ["--physical", "exec:cmd=x"], "random emulator"),
    ("phyff_drift.py", ["--dataset", "nosuch"], "nosuch"),
    ("phyff_study.py", ["--compress", "0"], "--compress=0 out of range"),
    ("phyff_study.py", ["--physical", "random:out=5"], "sets out, concat and at itself"),
    ("phyff_study.py", ["--physical", "laser:"], "unknown kind"),
])
def test_studies_refuse_bad_input_before_work(name, args, fragment, tmp_path):
    r = _script(name, *args, "--json", str(tmp_path / "o.json"))
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.json").exists()


def test_drift_hurts_the_frozen_network_and_retraining_follows(trained):
    from ffaccel.model.insitu import drift_run
    from ffaccel.model.recipe import TrainRecipe
    ds, net, qcfg, _ = trained
    res = drift_run(net, qcfg, ds, TrainRecipe(), drift=0.3, steps=2, step_size=4, retrain_steps=60, samples=300)
    rows = res["rows"]
    assert [r["drift_steps"] for r in rows] == [0, 4, 8]
    assert rows[0]["frozen"] == rows[0]["retrained"]                 # same network, same system at time 0
    assert rows[-1]["frozen"]["int_full"] < rows[0]["frozen"]["int_full"] - 0.05   # a 0.3 x sqrt(8) walk hurts
    assert rows[-1]["retrained"]["int_full"] > rows[-1]["frozen"]["int_full"]
    assert net.physical.layers[0].time == 0                          # the trained network's system is untouched
