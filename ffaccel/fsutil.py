"""Atomic writes: a file via a temporary file in the same folder, fsync, then a rename; a
set of files (an output folder) via a temporary folder beside it swapped in with one
atomic exchange. A reader (or a run killed half-way) never sees a half-written file or a
mix of two runs' files; temporaries are removed on every exit path Python sees, and those
of a SIGKILLed run (named after its pid) by the next write to the same place. Outputs get
the mode a plain ``open`` would give (0666 under the umask): they are meant to be shared."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import FFAccelError


class OutputError(FFAccelError):
    """An output could not be written (no space, read-only file system, permissions): one
    line naming the output and what was left there, exit status 2 like any user error."""


def _output_error(path: Path, e: OSError, left: str) -> OutputError:
    return OutputError(f"{str(path)!r} cannot be written ({e.strerror or e}); {left}")


_TMP_TAG, _OLD_TAG = ".tmp-", ".old-"
# temporaries are named ".<target>.tmp-<pid>-<host>-..." so that only the host that made
# one judges whether its writer is alive (a pid means nothing on a shared file system)
_HOST = hashlib.sha256(os.uname().nodename.encode()).hexdigest()[:8]


def _owner() -> str:
    return f"{os.getpid()}-{_HOST}-"


def _read_umask() -> int:
    """The process umask, read once at import (changing it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename. A
    failure (``OSError``: out of space, read-only, ...) raises :class:`OutputError` and
    leaves ``path`` as it was, with no temporary file."""
    path = Path(path)
    existed = path.exists()
    try:
        _write_file(path, data)
    except OSError as e:
        raise _output_error(path, e, "the earlier file was left as it was" if existed
                            else "nothing was written") from None


def atomic_move(src: str | Path, path: str | Path) -> None:
    """Move the finished file ``src`` to ``path`` as one atomic replacement: a rename where
    both are on one file system, else a copy to a temporary file beside ``path`` (synced)
    and a rename. ``path`` itself is replaced, never a file a link there points to. A
    failure raises :class:`OutputError` and leaves ``path`` as it was; ``src`` is removed
    either way."""
    import shutil
    src, path = Path(src), Path(path)
    existed = path.exists() or path.is_symlink()
    try:
        try:
            os.replace(src, path)
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        def copy(f):
            with open(src, "rb") as g:
                shutil.copyfileobj(g, f, 1 << 20)
        _write_via_temp(path, copy)
    except OSError as e:
        raise _output_error(path, e, "the earlier file was left as it was" if existed
                            else "nothing was written") from None
    finally:
        src.unlink(missing_ok=True)


def _write_file(path: Path, data: bytes) -> None:
    _write_via_temp(path, lambda f: f.write(data))


def _write_via_temp(path: Path, fill) -> None:
    """``fill(file)`` writes a temporary file beside ``path`` (synced), renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_TAG}{_owner()}", dir=path.parent)
    try:
        os.fchmod(fd, _shared_mode(0o666))      # mkstemp's 0600 would hide shared outputs
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shared_mode(mode: int) -> int:
    """``mode`` under the process umask (what a plain open() would give)."""
    return mode & ~_UMASK


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------------------- output sets

def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(parent: Path, name: str) -> None:
    """Remove the temporaries of writes to ``parent/name`` whose writer (a process of this
    host) is gone: a run killed between writing and renaming, SIGKILL included. A folder
    whose swap was cut between its two renames (``name`` absent, the old set parked) is
    put back, not removed."""
    import shutil
    target = parent / name
    for p in sorted(parent.glob(f".{name}.*")):
        tag = p.name[len(name) + 1:]
        for t in (_TMP_TAG, _OLD_TAG):
            if not tag.startswith(t):
                continue
            pid, _, rest = tag[len(t):].partition("-")
            host = rest.split("-", 1)[0]
            if not pid.isdigit() or host != _HOST or pid_alive(int(pid)) or p.is_symlink():
                continue
            if t == _OLD_TAG and p.is_dir() and not target.exists():
                os.rename(p, target)              # the earlier set, back in place
            elif p.is_dir():
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


def foreign_files(out: Path, owned: set[str] | None) -> str | None:
    """Why folder ``out`` is not ours to replace (it holds files outside ``owned``), or None."""
    if not out.is_dir():
        return None
    # outputs are plain files: a folder inside is never ours, whatever a manifest lists
    foreign = sorted(p.name for p in out.iterdir()
                     if owned is None or p.name not in owned or p.is_dir() or p.is_symlink())
    if not foreign:
        return None
    return (f"holds files this tool did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give an empty or new folder")


def atomic_write_dir(out: str | Path, files: dict[str, bytes], owned: set[str] | None = None) -> None:
    """Replace folder ``out`` by exactly ``files`` (name -> bytes) as a whole: they are
    written to a temporary folder beside it, synced, and swapped in with one atomic
    exchange, so a reader sees the old set or the new one, never a mix, and a run killed or
    out of space at any point leaves ``out`` as it was (the temporary folder is removed on
    every exit path Python sees, and by the next run after a SIGKILL). SIGINT and SIGTERM
    are held while the set is written and swapped, and delivered right after.

    ``owned``: the names an earlier run wrote into ``out``; a file of ``out`` outside it is
    not ours to replace, and the call refuses (``FileExistsError``) instead of deleting it.
    A failure to write (``OSError``) raises :class:`OutputError`, ``out`` left as it was.
    """
    out = Path(out)
    parent = out.parent
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out} exists and is not a folder")
    why = foreign_files(out, owned)
    if why:
        raise FileExistsError(f"{out} {why}")
    existed = out.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # SIGINT/SIGTERM wait until the set is swapped in or cleaned up (no window where a
        # temporary folder exists outside the try, or the target is parked); delivered after
        with _signals_deferred():
            _write_dir_blocked(out, parent, files)
    except OSError as e:
        raise _output_error(out, e, "it was left as it was" if existed else "nothing was written") from None


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM (Python handlers run in the main thread whichever thread the
    kernel picked, so recording them there covers every thread), then re-deliver the first."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])


def _write_dir_blocked(out: Path, parent: Path, files: dict[str, bytes]) -> None:
    import shutil
    _clean_stale(parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_TAG}{_owner()}", dir=parent))
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
            old = parent / f".{out.name}{_OLD_TAG}{_owner()}{os.urandom(4).hex()}"
            os.rename(out, old)               # (not atomic: out is briefly absent; after a
                                              # SIGKILL here the next run puts old back)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the old set
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(path: str | Path, *, folder: bool, need: int = 0, whole: bool = True) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) cannot be written, or None: checked
    before any work, so a long run does not end in a traceback. The nearest existing ancestor
    must be a writable folder; an existing target must be of the right kind; where the size
    of the output is known (``need`` bytes), the file system must have that much free (the
    write itself still fails cleanly if another writer takes the space meanwhile).
    ``whole``: the folder is an output set replaced as a whole (so not a link, and not a
    folder holding the working one); a cache folder (simulator and FPGA builds) passes
    False and may be a link."""
    p = Path(path)
    try:
        return _check_writable(p, folder and whole, folder, need)
    except OSError as e:                       # a name too long, a loop of links, ...
        return f"is not a usable path ({e.strerror or e})"


def _check_writable(p: Path, whole: bool, folder: bool, need: int) -> str | None:
    if p.is_symlink():
        if not p.exists():
            return "is a broken link"
        if whole:                             # an output folder is replaced as a whole
            return "is a link; give the folder itself"
    if p.exists():
        if folder and not p.is_dir():
            return "exists and is not a folder"
        if not folder and p.is_dir():
            return "is a folder; give a file name"
    if whole and p.exists() and Path.cwd().resolve().is_relative_to(p.resolve()):
        return "holds the working folder (an output folder is replaced as a whole: give one of its own)"
    anc = p.parent if not p.exists() else (p if folder else p.parent)
    while not anc.exists():
        if anc.is_symlink():
            return f"{str(anc)!r} is a broken link"
        anc = anc.parent
    if not anc.is_dir():
        return f"{str(anc)!r} is not a folder"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"{str(anc)!r} is not writable"
    if need > 0:
        try:
            st = os.statvfs(anc)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free < need:
            return f"it needs {_size(need)} and {anc} has {_size(free)} free"
    return None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
