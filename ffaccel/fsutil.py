"""Atomic writes: a file via a temporary file in the same folder, fsync, then a rename; a
set of files (an output folder) via a temporary folder beside it swapped in with one
atomic exchange. A reader (or a run killed half-way) never sees a half-written file or a
mix of two runs' files; temporaries are removed on every exit path Python sees, and those
of a SIGKILLed run (named after its pid) by the next write to the same place. Outputs get
the mode a plain ``open`` would give (0666 under the umask): they are meant to be shared."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


_TMP_TAG, _OLD_TAG = ".tmp-", ".old-"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_TAG}{os.getpid()}-", dir=path.parent)
    try:
        os.fchmod(fd, _shared_mode(0o666))      # mkstemp's 0600 would hide shared outputs
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shared_mode(mode: int) -> int:
    """``mode`` under the process umask (what a plain open() would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------------------- output sets

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(parent: Path, name: str) -> None:
    """Remove the temporary files and folders of writes to ``parent/name`` whose process is
    gone (a run killed between writing and renaming, SIGKILL included)."""
    import shutil
    for p in parent.glob(f".{name}.*"):
        tag = p.name[len(name) + 1:]
        for t in (_TMP_TAG, _OLD_TAG):
            if tag.startswith(t):
                pid = tag[len(t):].split("-", 1)[0]
                if not pid.isdigit() or _pid_alive(int(pid)) or p.is_symlink():
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):          # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


def atomic_write_dir(out: str | Path, files: dict[str, bytes], owned: set[str] | None = None) -> None:
    """Replace folder ``out`` by exactly ``files`` (name -> bytes) as a whole: they are
    written to a temporary folder beside it, synced, and swapped in with one atomic
    exchange, so a reader sees the old set or the new one, never a mix, and a run killed or
    out of space at any point leaves ``out`` as it was (the temporary folder is removed on
    every exit path Python sees, and by the next run after a SIGKILL). SIGINT and SIGTERM
    are held while the set is written and swapped, and delivered right after.

    ``owned``: the names an earlier run wrote into ``out``; a file of ``out`` outside it is
    not ours to replace, and the call refuses (``FileExistsError``) instead of deleting it.
    """
    out = Path(out)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if owned is None or p.name not in owned)
        if foreign:
            raise FileExistsError(f"{out} holds files this tool did not write ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); give an empty or new folder")
    # SIGINT/SIGTERM wait until the set is swapped in or cleaned up (no window where a
    # temporary folder exists outside the try); they are delivered right after
    import signal
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        _write_dir_blocked(out, parent, files)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _write_dir_blocked(out: Path, parent: Path, files: dict[str, bytes]) -> None:
    import shutil
    _clean_stale(parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_TAG}{os.getpid()}-", dir=parent))
    try:
        os.chmod(tmp, _shared_mode(0o777))
        for name, data in files.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"output name {name!r} must be a plain file name")
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp / name, _shared_mode(0o666))
        dfd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        if not out.exists():
            os.rename(tmp, out)
        elif not _exchange(tmp, out):
            old = parent / f".{out.name}{_OLD_TAG}{os.getpid()}-{os.urandom(4).hex()}"
            os.rename(out, old)               # (not atomic here: out is briefly absent)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the old set
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(path: str | Path, *, folder: bool) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) cannot be written, or None: checked
    before any work, so a long run does not end in a traceback. The nearest existing ancestor
    must be a writable folder; an existing target must be of the right kind."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            return "exists and is not a folder"
        if not folder and p.is_dir():
            return "is a folder; give a file name"
    anc = p.parent if not p.exists() else (p if folder else p.parent)
    while not anc.exists():
        if anc.is_symlink():
            return f"{anc} is a broken link"
        anc = anc.parent
    if not anc.is_dir():
        return f"{anc} is not a folder"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"{anc} is not writable"
    return None
