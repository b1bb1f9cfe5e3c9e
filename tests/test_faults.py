"""Fault injection on real file systems (issue #13): every tool that writes, on a full file
system and on a read-only one, gives one line and exit status 2, and what an earlier run
wrote there is intact (same bytes) with no temporaries left; a DSE whose store fills up
mid-sweep keeps what it finished and goes on when run again.

The file systems are tmpfs mounts made by the test (size limits make a real ENOSPC, a
read-only remount a real EROFS). Where the machine does not allow mounting (not root, no
CAP_SYS_ADMIN) the tests skip; tests/test_gen.py and tests/test_fsutil.py inject the same
faults in process (ENOSPC from fsync, interrupts) so the rules are still checked there."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.fault

HAVE_ICARUS = shutil.which("iverilog") is not None

SPACE = """
[workload]
dataset = "digits"
layers = "2x8"
limit = 50
toggle_samples = 1
[recipe]
epochs = 1
min_steps = 0
[axes]
rows = [2, 4, 5]
cols = [2, 4, 8, 16]
k = [0.5, 1.0, 2.0, 3.0]
weight_mem = ["sram", "dram"]
"""


def _mount(path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", f"ffaccel-{uuid.uuid4().hex[:8]}",
                        str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def fs(tmp_path):
    """``fs(size)``: a fresh tmpfs of ``size`` (mount syntax: 512k, 4m); ``.fill(path)``
    fills it up, ``.readonly(path)`` remounts it read-only, ``.grow(path, size)`` resizes."""
    mounted = []

    class FS:
        def __call__(self, size):
            p = tmp_path / f"fs{len(mounted)}"
            if not _mount(p, size):
                pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
            mounted.append(p)
            return p

        @staticmethod
        def fill(p):
            import os
            fd = os.open(p / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            finally:
                os.close(fd)

        @staticmethod
        def readonly(p):
            assert subprocess.run(["mount", "-o", "remount,ro", str(p)]).returncode == 0

        @staticmethod
        def grow(p, size):
            assert subprocess.run(["mount", "-o", f"remount,size={size}", str(p)]).returncode == 0
    yield FS()
    for p in mounted:
        _umount(p)


def _snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if p.name != "filler"}


def _one_line_2(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def _earlier_outputs(cli, d, digits_ckpt):
    """An earlier run of every writing tool into folder ``d``; returns the argv that write
    there again (a different config, so that an unguarded write would change bytes)."""
    assert cli("gen", "--layers", "2x8", "--inputs", "16", "-o", str(d / "rtl")).returncode == 0
    shutil.copy(digits_ckpt, d / "c.ckpt")
    assert cli("energy", "--layers", "2x8", "--inputs", "16", "--plots", str(d / "plots")).returncode == 0
    return {
        "gen": ["gen", "--layers", "3x8", "--inputs", "16", "-o", str(d / "rtl")],
        "train": ["train", "--dataset", "digits", "--layers", "2x8", "--epochs", "1", "--min-steps", "0",
                  "--no-progress", "--out", str(d / "c.ckpt")],
        "energy": ["energy", "--layers", "3x8", "--inputs", "16", "--plots", str(d / "plots")],
        "dse-out": ["dse", "--space", str(d.parent / "s.toml"), "--store", str(d.parent / "s.db"),
                    "--out", str(d / "dse"), "--no-progress"],
        "dse-store": ["dse", "--space", str(d.parent / "s.toml"), "--store", str(d / "s.db"),
                      "--out", str(d.parent / "dse"), "--no-progress"],
    }


# (the read-only variant under -m slow: the full one goes through the same writers)
@pytest.mark.parametrize("fault", ["full", pytest.param("readonly", marks=pytest.mark.slow)])
def test_every_writer_on_a_full_or_read_only_fs(tmp_path, fs, cli, digits_ckpt, monkeypatch, fault):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFACCEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "s.toml").write_text(SPACE)
    d = fs("4m")
    runs = _earlier_outputs(cli, d, digits_ckpt)
    before = _snapshot(d)
    (fs.fill if fault == "full" else fs.readonly)(d)
    for name, argv in runs.items():
        r = cli(*argv)
        if fault == "readonly":
            want = "not writable"
        else:      # known sizes are checked before the work; gen's set is sized once made
            want = "free" if name != "gen" else "No space left on device"
        _one_line_2(r, want)
        assert _snapshot(d) == before, name                  # earlier outputs intact, no temporaries


@pytest.mark.skipif(not HAVE_ICARUS, reason="iverilog not installed")
@pytest.mark.parametrize("fault", ["full", "readonly"])
def test_verify_build_folder_full_or_read_only(tmp_path, fs, cli, fault):
    d = fs("256k")
    (fs.fill if fault == "full" else fs.readonly)(d)
    r = cli("verify", "--layers", "2x8", "--inputs", "16", "--sim", "icarus", "--build-dir", str(d / "b"))
    _one_line_2(r, "No space left on device" if fault == "full" else "build folder")


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_dse_store_full_mid_sweep_keeps_designs_and_resumes(tmp_path, fs, cli, monkeypatch, workers):
    """The store's file system fills up during the sweep: one line naming the storage and
    the database's reason, exit 2; with room again, the same command evaluates only the
    designs that were not finished and completes the grid (96 designs, each once)."""
    monkeypatch.setenv("FFACCEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "s.toml").write_text(SPACE)
    d = fs("216k")              # the schema (176 kB) and some of the 96 designs (250 kB)
    argv = ["dse", "--space", str(tmp_path / "s.toml"), "--store", str(d / "s.db"), "--out", str(tmp_path / "o"),
            "--no-progress", "--workers", workers, "--json"]
    r = cli(*argv)
    _one_line_2(r, "failed during the sweep", "database or disk is full", "run the same command again")
    assert not (tmp_path / "o").exists()
    fs.grow(d, "4m")
    r = cli(*argv)
    assert r.returncode == 0, r.stderr
    import json
    doc = json.loads(r.stdout)
    assert doc["points"] == 96 and 0 < doc["new"] < 96
    import sqlite3
    con = sqlite3.connect(d / "s.db")
    keys = [k for (k,) in con.execute("SELECT value_json FROM trial_user_attributes WHERE key='point_key' AND "
                                      "trial_id IN (SELECT trial_id FROM trials WHERE state='COMPLETE')")]
    dup = con.execute("SELECT COUNT(*) FROM trial_user_attributes WHERE key='duplicate_of'").fetchone()[0]
    con.close()
    assert len(set(keys)) == 96 and len(keys) - dup == 96        # every design evaluated once
