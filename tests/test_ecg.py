"""ECG beats from WFDB records (ffaccel.ecg): records written by the tests themselves."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

wfdb = pytest.importorskip("wfdb")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

from ffaccel import ecg  # noqa: E402
from ffaccel.data import DataError, load_dataset  # noqa: E402
from ffaccel.model.exits import balanced_accuracy, class_recall  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_record(folder: Path, name: str, beats: list[tuple[int, str]], n: int = 4000, fs: int = 360,
                 seed: int = 0, channels=("MLII", "V1")) -> np.ndarray:
    """A record whose every beat is a spike of its own height at the annotated sample."""
    rng = np.random.default_rng(seed)
    sig = rng.normal(0, 0.01, size=(n, len(channels)))
    for s, _ in beats:
        sig[s, :] += 1.0 + s / n
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(channels), sig_name=list(channels), p_signal=sig,
                fmt=["16"] * len(channels), adc_gain=[1000.0] * len(channels), baseline=[0] * len(channels),
                write_dir=str(folder))
    wfdb.wrann(name, "atr", sample=np.array([s for s, _ in beats]), symbol=[b for _, b in beats],
               write_dir=str(folder))
    return wfdb.rdrecord(str(folder / name), physical=False).d_signal


def test_beats_classes_window_and_generic_split(tmp_path):
    beats = [(100, "N"), (500, "A"), (900, "V"), (1300, "F"), (1700, "/"), (2100, "+"), (2500, "L"),
             (2900, "~"), (3300, "E"), (3990, "N")]                           # 3990: window runs off
    digital = {}
    for i, name in enumerate(("ra", "rb", "rc")):
        digital[name] = write_record(tmp_path, name, beats, seed=i)
    ds = ecg.load_wfdb(tmp_path, window=60)
    prov = ds.provenance
    assert prov["records"] == {"train": ["ra", "rb"], "test": ["rc"], "left_out": [], "unannotated": []}
    assert ds.inputs == 5 + 60 and ds.classes == 5
    # per record: N A V F / L E -> N S V F Q N V; '+' and '~' are not beats; 3990 dropped
    want = [0, 1, 2, 3, 4, 0, 2]
    assert prov["per_record"]["rc"]["dropped_at_edges"] == 1
    assert ds.y_test.tolist() == want
    n_val = 2                                                                 # ceil(20% of 7) per train record
    assert ds.y_train.tolist() == want[:-n_val] * 2 and ds.y_val.tolist() == want[-n_val:] * 2
    assert (ds.x_train[:, :5] == 0).all()                                     # label slots
    # the coding of one beat, recomputed: window // 3 before the R peak, min-max to 0..255 half up
    seg = digital["rc"][100 - 20:100 + 40, 0].astype(np.int64)
    lo, span = seg.min(), seg.max() - seg.min()
    expect = np.floor((seg - lo) * 255 / span + 0.5).astype(np.uint8)
    assert np.array_equal(ds.x_test[0, 5:], expect)
    assert ds.x_test[0, 5 + 20] == 255                                        # the R peak
    assert prov["beats_per_class"]["test"] == {"N": 2, "S": 1, "V": 2, "F": 1, "Q": 1}
    assert set(prov["sha256"]) == {f"{r}.{e}" for r in ("ra", "rb", "rc") for e in ("hea", "dat", "atr")}


def test_mitbih_names_use_the_inter_patient_split(tmp_path):
    beats = [(200, "N"), (600, "A"), (1000, "N")]
    for i, name in enumerate(("100", "101", "104", "203")):
        write_record(tmp_path, name, beats, seed=i)
    (tmp_path / "999.hea").write_text((tmp_path / "100.hea").read_text().replace("100", "999"))
    ds = load_dataset(f"wfdb:{tmp_path},window=64")
    rec = ds.provenance["records"]
    assert rec["train"] == ["101", "203"] and rec["test"] == ["100"] and rec["left_out"] == ["104"]
    assert rec["unannotated"] == ["999"]
    assert ds.inputs == 69
    # a test record's beats never reach training or validation
    assert len(ds.y_test) == 3 and len(ds.y_train) + len(ds.y_val) == 6


def test_mitbih_names_on_one_side_fall_back_to_the_name_rule(tmp_path):
    for i, name in enumerate(("106", "101")):                               # both DS1
        write_record(tmp_path, name, [(200, "N"), (600, "V"), (1000, "N")], seed=i)
    ds = ecg.load_wfdb(tmp_path, window=64)
    assert ds.provenance["records"]["train"] == ["101"] and ds.provenance["records"]["test"] == ["106"]
    assert ds.provenance["split_rule"].startswith("records sorted by name")


def test_channel_mlii_is_preferred(tmp_path):
    write_record(tmp_path, "a", [(200, "N"), (600, "N")], channels=("V1", "MLII"))
    write_record(tmp_path, "b", [(200, "N"), (600, "N")], channels=("V1", "V2"))
    ds = ecg.load_wfdb(tmp_path, window=32)
    assert ds.provenance["per_record"]["a"]["channel"] == "MLII"
    assert ds.provenance["per_record"]["b"]["channel"] == "V1"


@pytest.mark.parametrize("spec, msg", [
    ("wfdb:", "needs a folder"),
    ("wfdb:{d}/nothere", "does not exist"),
    ("wfdb:{d},window=3", "out of range"),
    ("wfdb:{d},window=x", "not an integer"),
    ("wfdb:{d},win=30", "unknown ECG option"),
    ("wfdb:{d}/one", "at least 2 annotated records"),
    ("wfdb:{d}/empty", "no record with beat annotations"),
    ("wfdb:{d}/fs", "different sampling rates"),
    ("wfdb:{d}/broken", "cannot be read"),
])
def test_bad_input_is_one_clear_line(tmp_path, spec, msg):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    write_record(tmp_path / "one", "x", [(200, "N")])
    (tmp_path / "fs").mkdir()
    write_record(tmp_path / "fs", "x", [(200, "N")])
    write_record(tmp_path / "fs", "y", [(200, "N")], fs=250)
    (tmp_path / "broken").mkdir()
    write_record(tmp_path / "broken", "x", [(200, "N")])
    write_record(tmp_path / "broken", "y", [(200, "N")])
    (tmp_path / "broken" / "y.dat").write_bytes(b"\x00")
    write_record(tmp_path, "r1", [(200, "N")])
    write_record(tmp_path, "r2", [(200, "N")])
    with pytest.raises(DataError, match=msg) as ei:
        load_dataset(spec.format(d=tmp_path))
    assert "\n" not in str(ei.value)


def test_val_size_is_refused(tmp_path):
    with pytest.raises(DataError, match="val_size"):
        load_dataset(f"wfdb:{tmp_path}", val_size=10)


def test_installed_records_are_checksummed(tmp_path, monkeypatch):
    monkeypatch.setattr(ecg, "ecg_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="make data-ecg"):
        load_dataset("ecg")
    beats = [(200, "N"), (600, "A")]
    write_record(tmp_path, "100", beats)
    write_record(tmp_path, "101", beats, seed=1)
    files = {f: hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in ecg.ECG_FILES}
    monkeypatch.setattr(ecg, "ECG_FILES", files)
    ds = load_dataset("ecg,window=50")
    assert ds.name == "ecg" and ds.provenance["records"]["test"] == ["100"]
    (tmp_path / "100.dat").write_bytes((tmp_path / "100.dat").read_bytes()[:-2] + b"\x01\x02")
    with pytest.raises(DataError, match="sha256"):
        load_dataset("ecg")


def test_fetch_checks_the_download_and_every_file(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fetch_ecg
    finally:
        sys.path.pop(0)
    files = {"100.hea": b"head", "100.dat": b"data"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg/tests/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    monkeypatch.setattr(fetch_ecg, "ECG_SOURCE", {"url": "x", "sha256": hashlib.sha256(blob).hexdigest(),
                                                  "member_dir": "pkg/tests"})
    monkeypatch.setattr(fetch_ecg, "ECG_FILES", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    assert fetch_ecg.extract(blob) == files
    with pytest.raises(ValueError, match="sha256"):
        fetch_ecg.extract(blob + b"x")
    monkeypatch.setattr(fetch_ecg, "ECG_FILES", {"100.hea": "0" * 64})
    with pytest.raises(ValueError, match="100.hea"):
        fetch_ecg.extract(blob)


def test_recall_and_balanced_accuracy():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    lab = np.array([0, 0, 0, 1, 1, 0, 0])
    rec = class_recall(lab, y, 4)
    assert rec == {"0": 0.75, "1": 0.5, "2": 0.0, "3": None}
    assert balanced_accuracy(lab, y, 4) == pytest.approx((0.75 + 0.5 + 0.0) / 3)


@pytest.mark.slow
def test_train_cli_reports_recall_on_wfdb_records(tmp_path):
    rng = np.random.default_rng(0)
    for i, name in enumerate(("ra", "rb", "rc")):
        pos = np.arange(150, 7800, 380)
        syms = ["V" if rng.random() < 0.3 else "N" for _ in pos]
        write_record(tmp_path, name, list(zip(pos.tolist(), syms)), n=8000, seed=i)
    out = subprocess.run([sys.executable, "-m", "ffaccel.train", "--dataset", f"wfdb:{tmp_path},window=40",
                          "--inputs", "45", "--classes", "5", "--layers", "1x16", "--epochs", "2",
                          "--no-progress", "--out", str(tmp_path / "c.ckpt")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "balanced accuracy" in out.stdout and "recall N " in out.stdout and "F - (-)" in out.stdout
