"""Bad input on every tool: one line on stderr, exit status 2, before any work, nothing
written (issue #13's classes 4-6). Each case runs the tool in process (the ``cli``
fixture) inside an empty working folder that must stay empty but for the files the case
made itself."""

import pytest

pytestmark = pytest.mark.fault

SPACE = """
[workload]
dataset = "digits"
layers = "2x8"
{workload}
[recipe]
{recipe}
[axes]
rows = [2]
[strategy]
{strategy}
"""


class Evil:
    """A pickled object whose loading would run code (a forbidden global for weights_only)."""
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


CASES = [
    # train: values the recipe refuses, outputs that cannot be written (before training)
    ("train", ["--dataset", "digits", "--theta", "inf", "--out", "c.ckpt"], "invalid number: 'inf'"),
    ("train", ["--dataset", "digits", "--theta", "nan", "--out", "c.ckpt"], "invalid number: 'nan'"),
    ("train", ["--dataset", "digits", "--lr", "-1", "--out", "c.ckpt"], "lr=-1.0 out of range"),
    ("train", ["--dataset", "digits", "--epochs", "1_0", "--out", "c.ckpt"], "invalid integer value: '1_0'"),
    ("train", ["--dataset", "digits", "--out", "afile/c.ckpt"], "afile' is not a folder"),
    ("train", ["--dataset", "digits", "--out", "adir"], "is a folder; give a file name"),
    # gen: flags in other scripts' digits, outputs under a file
    ("gen", ["--layers", "2x8", "--inputs", "16", "--rows", "\u0663", "-o", "r"], "invalid integer value"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "--cols", "1_0", "-o", "r"], "invalid integer value: '1_0'"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "--k", "nan", "-o", "r"], "invalid number: 'nan'"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "-o", "afile"], "exists and is not a folder"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "-o", "adir"], "holds files gen did not write (mine.txt)"),
    # eval / energy / verify
    ("eval", ["--checkpoint", "CKPT", "--dataset", "digits", "--k", "inf"], "invalid number: 'inf'"),
    ("energy", ["--checkpoint", "CKPT", "--dataset", "digits", "--ks", "nan,inf"], "finite numbers"),
    ("energy", ["--layers", "2x8", "--inputs", "16", "--plots", "afile/p"], "afile' is not a folder"),
    ("verify", ["--layers", "2x8", "--inputs", "16", "--vcd", "afile/w.vcd"], "afile' is not a folder"),
    # messages in the user's terms
    ("eval", ["--checkpoint", "adir", "--dataset", "digits"], "is a folder, not a file"),
    ("gen", ["--checkpoint", "CKPT", "--layers", "3x16", "-o", "r"], "has layers=(16, 16); the command asks for (16, 16, 16)"),
    ("perf", ["--checkpoint", "CKPT", "--dataset", "digits", "--mode", "op"], "has mode='mp'; the command asks for 'op'"),
    ("eval", ["--checkpoint", "EVIL", "--dataset", "digits"], "refused (loading them could run code)"),
    ("dse", ["--space", "SPACE:::objectives = []"], "objectives is empty"),
    ("dse", ["--space", "SPACE:::objectives = 'accuracy:max'"], "must be a list of METRIC:min|max"),
    ("dse", ["--space", "SPACE:::kind = 'nsga2'\ntrials = 'x'"], "trials='x' must be a positive integer"),
    ("lint", ["badmanifest"], "is not a manifest written by ffaccel.gen"),
    # sizes the config accepts but memory cannot hold: refused before allocation
    ("perf", ["--inputs", "1048576", "--layers", "64x65536"], "GiB (weights 339,302,416,384)"),
    ("energy", ["--inputs", "1048576", "--layers", "64x65536"], "GiB (weights 339,302,416,384)"),
    ("perf", ["--layers", "2x16", "--inputs", "32", "--samples", "1000000000"], "1000000000 samples need"),
    # dse: flags and spaces checked before a store is made
    ("dse", ["--space", "SPACE", "--trials", "0"], "--trials=0 out of range"),
    ("dse", ["--space", "SPACE", "--workers", "0"], "--workers=0 out of range"),
    ("dse", ["--space", "SPACE", "--workers", "9999"], "--workers=9999 out of range"),
    ("dse", ["--space", "SPACE", "--out", "afile"], "--out 'afile' cannot be written: exists and is not a folder"),
    ("dse", ["--space", "SPACE:toggle_samples = 0"], "toggle_samples=0 out of range"),
    ("dse", ["--space", "SPACE:limit = 0"], "limit=0 out of range"),
    ("dse", ["--space", "SPACE::epochs = 0"], "epochs=0 out of range"),
    ("dse", ["--space", "SPACE::lr = -1"], "lr=-1.0 out of range"),
    ("dse", ["--space", "SPACE::theta = nan"], "theta=nan out of range"),
    ("dse", ["--space", "SPACE:lr = 0.1"], "put it in the [recipe] section"),
    ("dse", ["--space", "SPACE:checkpoint = 'missing.ckpt'"], "does not exist"),
    ("dse", ["--space", "SPACE:checkpoint = 'CKPTPATH'"], "has layers=(16, 16), but the command asks for (8, 8)"),
    # the second sweep (668 cases): parsers, huge numbers, empty values, mixed workload flags
    ("perf", ["--config", "WRITE:d.json=" + '{"layers": ' + "[" * 50000 + "]" * 50000 + "}"], "nested too deeply"),
    ("perf", ["--config", "WRITE:c.json=" + '{"inputs": 16, "layers": [4], "clock_mhz": 1' + "0" * 400 + "}"],
     "clock_mhz=1000"),
    ("perf", ["--config", "WRITE:e.json=" + '{"inputs": 16, "layers": [4], "schema": true}'], "schema True"),
    ("perf", ["--config", "WRITE:a.json=" + '{"inputs": 16, "layers": [4], "accbits": 0.0}'], "accbits=0.0"),
    ("energy", ["--layers", "2x8", "--inputs", "16", "--coeffs", "WRITE:k.json=" + '{"dram_64b_pj": 1' + "0" * 400 + "}"],
     "must be a positive number"),
    ("perf", ["--config", ""], "empty path"),
    ("perf", ["--layers", "2x8", "--inputs", "16", "--seed", "-1"], "--seed=-1 out of range"),
    ("perf", ["--layers", "2x8", "--inputs", "16", "--limit", "5"], "--limit chooses test samples"),
    ("perf", ["--checkpoint", "CKPT", "--dataset", "digits", "--samples", "5"], "--samples draws a random workload"),
    ("energy", ["--checkpoint", "CKPT", "--dataset", "digits", "--ks", "100"], "k=100 out of range"),
    ("eval", ["--checkpoint", "CKPT", "--dataset", "digits", "--threads", "0"], "--threads=0 out of range"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "-o", "a" * 300], "is not a usable path (File name too long)"),
    ("gen", ["--layers", "2x8", "--inputs", "16", "-o", "."], "holds the working folder"),
    ("dse", ["--space", "SPACE::lr = 1" + "0" * 400], "out of range"),
    ("dse", ["--space", "SPACE:::objective = ['accuracy:max']"], "unknown strategy key 'objective'"),
    ("dse", ["--space", "SPACE:::trials = 5"], "trials applies to kind"),
    ("dse", ["--space", "SPACE", "--trials", "5"], "--trials applies to kind"),
    ("dse", ["--space", "WRITE:w.toml=workload = 'digits'\n[axes]\nrows = [4]\n"], "must be a [workload] table"),
    ("dse", ["--space", "WRITE:g.toml=[workload]\ndataset = 'digits'\n[axes]\n" +
             "".join(f"{k} = [{', '.join(str(v) for v in range(2, 12))}]\n" for k in ("rows", "cols", "wbits", "abits", "sram_kib", "rsqrt_index"))],
     "a grid of 1,000,000 designs"),
    ("dse", ["--space", "SPACE", "--store", ""], "empty path"),
]


@pytest.mark.parametrize("tool,argv,fragment", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, cli, digits_ckpt, tool, argv,
                                                         fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFACCEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "mine.txt").write_text("mine")
    (tmp_path / "badmanifest").mkdir()
    (tmp_path / "badmanifest" / "manifest.json").write_text('{"files": 5}')
    args = []
    for a in argv:
        if a == "CKPT":
            a = str(digits_ckpt)
        elif a == "EVIL":
            import torch
            torch.save({"format": "ffaccel-checkpoint-1", "config": "{}", "meta": "{}", "state": Evil()},
                       tmp_path / "evil.ckpt")
            a = "evil.ckpt"
        elif a.startswith("WRITE:"):
            name, _, text = a[len("WRITE:"):].partition("=")
            (tmp_path / name).write_text(text)
            a = name
        elif a.startswith("SPACE"):
            a = a.replace("CKPTPATH", str(digits_ckpt))
            parts = (a.split(":", 3)[1:] + ["", "", ""])[:3]
            (tmp_path / "s.toml").write_text(SPACE.format(workload=parts[0], recipe=parts[1], strategy=parts[2]))
            a = "s.toml"
        args.append(a)
    before = _files(tmp_path)
    r = cli(tool, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert _files(tmp_path) == before                     # nothing written, nothing removed


def _consistent_set(out):
    import hashlib
    import json
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([*man["files"], "manifest.json"])
    for name, digest in man["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    return man["config"]["layers"]


def test_gen_killed_at_random_points_leaves_one_consistent_set(tmp_path):
    """gen into a folder holding an earlier run's outputs, stopped by SIGINT, SIGTERM or
    SIGKILL at random moments: the folder always holds one run's complete, consistent set
    (the old or the new), and no temporary is left once the next run has passed."""
    import random
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "rtl"
    base = [sys.executable, "-m", "ffaccel.gen", "--inputs", "64", "--rows", "4", "--cols", "8", "-o", str(out)]
    assert subprocess.run(base + ["--layers", "2x64"], capture_output=True).returncode == 0
    rng = random.Random(13)
    seen = set()
    for i, sig in enumerate([signal.SIGINT, signal.SIGTERM, signal.SIGKILL] * 2):
        layers = "3x48" if i % 2 == 0 else "2x64"
        p = subprocess.Popen(base + ["--layers", layers], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 3.0))
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        # 130: interrupted in run_main; -SIGINT/-SIGTERM: stopped while Python was still
        # importing (before any work); -SIGKILL: no clean-up at all
        assert p.returncode in (0, 130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL), err
        if p.returncode == 130:
            assert err.decode().strip().splitlines() == ["ffaccel.gen: interrupted"]
        seen.add(p.returncode)
        got = _consistent_set(out)
        assert got in ([64, 64], [48, 48, 48])
        # this run's temporaries (named after its pid) are gone unless it was SIGKILLed
        mine = [q.name for q in tmp_path.iterdir() if f"-{p.pid}-" in q.name]
        assert sig == signal.SIGKILL or not mine, mine
    assert subprocess.run(base + ["--layers", "2x64"], capture_output=True).returncode == 0
    assert [q.name for q in tmp_path.iterdir()] == ["rtl"]          # SIGKILL leftovers cleaned
    assert len(seen) >= 2                                           # some runs were really cut short


def test_an_error_quoting_a_newline_stays_one_line(capsys):
    """A path (or a parser's text) with a newline in it cannot split the error line."""
    from ffaccel.cli import run_main
    from ffaccel.errors import FFAccelError

    def main(argv):
        raise FFAccelError("-o 'f\ng/x' cannot be written: 'f\ng' is not a folder\r")
    assert run_main(main, "ffaccel.gen", []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'f\\ng'" in err and "\r" not in err
