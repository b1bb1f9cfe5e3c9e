"""fsutil: atomic files and output sets, stale temporaries, signals held during a swap,
writability checks."""

import os
import signal

import pytest

pytestmark = pytest.mark.fault

from ffaccel import fsutil


def _read(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_output_set_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "o"
    fsutil.atomic_write_dir(out, {"a": b"1", "b": b"2"})
    fsutil.atomic_write_dir(out, {"a": b"3"}, owned={"a", "b"})
    assert _read(out) == {"a": b"3"}
    assert [p.name for p in tmp_path.iterdir()] == ["o"]
    (out / "x").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="did not write"):
        fsutil.atomic_write_dir(out, {"a": b"4"}, owned={"a"})
    assert _read(out) == {"a": b"3", "x": b"mine"}


def test_a_signal_during_the_swap_is_delivered_after_it(tmp_path, monkeypatch):
    """SIGINT arriving while the set is written: the new set is complete, then the
    interrupt is raised (not in the middle, which could orphan a temporary)."""
    out = tmp_path / "o"
    fsutil.atomic_write_dir(out, {"a": b"old"})
    real = os.fsync
    sent = []

    def fsync_and_interrupt(fd):
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fsutil.atomic_write_dir(out, {"a": b"new", "b": b"2"}, owned={"a"})
    assert sent and _read(out) == {"a": b"new", "b": b"2"}
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_stale_temporaries_of_dead_writers_of_this_host_only(tmp_path):
    """The next write removes temporaries of dead processes of this host, leaves other
    hosts' alone, and puts a set parked by a swap cut between its two renames back."""
    dead = 2 ** 22 + 5
    mine = tmp_path / f".f.tmp-{dead}-{fsutil._HOST}-x"
    theirs = tmp_path / f".f.tmp-{dead}-deadbeef-x"
    live = tmp_path / f".f.tmp-{os.getpid()}-{fsutil._HOST}-x"
    for p in (mine, theirs, live):
        p.write_bytes(b"t")
    fsutil.atomic_write_bytes(tmp_path / "f", b"data")
    assert not mine.exists() and theirs.exists() and live.exists()
    parked = tmp_path / f".o.old-{dead}-{fsutil._HOST}-y"
    parked.mkdir()
    (parked / "a").write_bytes(b"earlier")
    fsutil._clean_stale(tmp_path, "o")
    assert _read(tmp_path / "o") == {"a": b"earlier"} and not parked.exists()


def test_outputs_get_the_umask_mode(tmp_path):
    fsutil.atomic_write_bytes(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~fsutil._UMASK


def test_check_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    assert fsutil.check_writable(tmp_path / "new" / "deeper" / "f", folder=False) is None
    assert "is not a folder" in fsutil.check_writable(tmp_path / "file" / "f", folder=False)
    assert "is a folder" in fsutil.check_writable(tmp_path / "dir", folder=False)
    assert "not a folder" in fsutil.check_writable(tmp_path / "file", folder=True)
    assert fsutil.check_writable(tmp_path / "dir", folder=True) is None


def test_atomic_move_replaces_the_path_not_a_link_target(tmp_path):
    """The finished file replaces ``path`` itself (a link there is replaced, its target
    untouched), by rename or, across file systems, by a synced copy; the source is gone."""
    import os
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (tmp_path / "out.vcd").symlink_to(target)
    src = tmp_path / "run.vcd"
    src.write_bytes(b"$date x $end")
    fsutil.atomic_move(src, tmp_path / "out.vcd")
    assert (tmp_path / "out.vcd").read_bytes() == b"$date x $end" and not (tmp_path / "out.vcd").is_symlink()
    assert target.read_text() == "keep" and not src.exists()
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        src.write_bytes(b"cross")
        dest = f"{shm}/ffaccel-move-{os.getpid()}"
        try:
            fsutil.atomic_move(src, dest)
            assert open(dest, "rb").read() == b"cross" and not src.exists()
        finally:
            os.unlink(dest)


def test_a_cache_folder_may_be_a_link_an_output_set_may_not(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "lnk").symlink_to(tmp_path / "real")
    assert "is a link" in fsutil.check_writable(tmp_path / "lnk", folder=True)
    assert fsutil.check_writable(tmp_path / "lnk", folder=True, whole=False) is None
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert fsutil.check_writable(tmp_path / "dangling", folder=True, whole=False) == "is a broken link"
