"""The training kit's datasets: built-ins, splits, scaling, and refusing bad uploads."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from search_spaces.kit import datasets
from search_spaces.kit.datasets import BUILTIN, DatasetError, inspect, load

ROOT = Path(__file__).resolve().parents[2]
SMALL_BUILTINS = ["digits", "mnist5k", "wine", "breast_cancer", "jets_synthetic"]


def _all_rows(splits: datasets.Splits) -> np.ndarray:
    return np.concatenate([splits.x_train, splits.x_val, splits.x_test]).reshape(
        len(splits.y_train) + len(splits.y_val) + len(splits.y_test), -1
    )


@pytest.mark.parametrize("name", SMALL_BUILTINS)
def test_builtin_shapes_dtypes_and_ranges(name: str) -> None:
    info = BUILTIN[name]
    splits = load(name, seed=0)
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val), (splits.x_test, splits.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == info.input_shape and len(x) == len(y)
        assert set(np.unique(y)) <= set(range(info.num_classes))
    assert set(np.unique(splits.y_train)) == set(range(info.num_classes))
    if info.modality == "image":
        assert splits.x_train.min() >= 0 and splits.x_train.max() == pytest.approx(1.0)
    else:
        # Standardised with the training split's statistics, not the whole set's.
        np.testing.assert_allclose(splits.x_train.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(splits.x_train.std(axis=0), 1, atol=1e-3)
        assert np.abs(splits.x_val.mean(axis=0)).max() > 1e-3


def test_split_sizes_are_exact_disjoint_and_stratified(tmp_path: Path) -> None:
    n = 1000
    path = tmp_path / "ids.npz"
    # Column 0 is a sample id; standardising is affine, so ids stay distinct after loading.
    np.savez(path, x=np.stack([np.arange(n), np.zeros(n)], axis=1), y=np.arange(n) % 7)
    splits = load(path=path, seed=3, val_fraction=0.2, test_fraction=0.1)
    assert (len(splits.y_test), len(splits.y_val), len(splits.y_train)) == (100, 200, 700)
    ids = [x[:, 0] for x in (splits.x_train, splits.x_val, splits.x_test)]
    assert len(np.unique(np.concatenate(ids))) == n
    overall = np.bincount(np.arange(n) % 7) / n
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert np.abs(np.bincount(y, minlength=7) / len(y) - overall).max() < 0.011


def test_split_is_fixed_by_seed() -> None:
    a, b, c = load("wine", seed=5), load("wine", seed=5), load("wine", seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.x_test, c.x_test)


def test_max_train_keeps_val_and_test_and_stays_stratified() -> None:
    full, small = load("mnist5k", seed=1), load("mnist5k", seed=1, max_train=500)
    assert len(small.y_train) == 500
    assert np.bincount(small.y_train, minlength=10).min() >= 45
    np.testing.assert_array_equal(full.y_val, small.y_val)
    np.testing.assert_array_equal(full.x_test, small.x_test)


def test_builtin_loads_are_cached_and_cannot_be_corrupted() -> None:
    first = load("digits")
    first.x_train[:] = 7.0  # the caller owns its copy
    assert load("digits").x_train.max() == pytest.approx(1.0)
    x, _ = datasets._raw("digits")
    assert datasets._raw("digits")[0] is x
    with pytest.raises(ValueError):
        x[0] = 1


def test_none_means_the_default_dataset() -> None:
    assert load(None).info.name == datasets.DEFAULT


def test_unknown_name_and_bad_fractions_are_refused() -> None:
    assert datasets.available("nope")[0] is False
    with pytest.raises(DatasetError, match="unknown dataset"):
        load("nope")
    with pytest.raises(DatasetError):
        load("digits", val_fraction=0.6, test_fraction=0.5)


def test_fashion_mnist_availability_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path)
    ok, reason = datasets.available("fashion_mnist")
    assert not ok and "dataset-fashion-mnist" in reason
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load("fashion_mnist")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_plain_and_gzipped_idx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (60, 28, 28)), "t10k": rng.integers(0, 256, (20, 28, 28))}
    for prefix, x in images.items():
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", x)
        plain = tmp_path / f"{prefix}-labels-idx1-ubyte"
        _write_idx(plain, np.arange(len(x)) % 10)
        plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path)
    monkeypatch.setattr(datasets, "_raw", datasets._raw.__wrapped__)  # bypass the process cache
    assert datasets.available("fashion_mnist") == (True, "")
    splits = load("fashion_mnist", val_fraction=0.25, test_fraction=0.25)
    assert splits.x_train.shape == (40, 1, 28, 28)
    assert np.bincount(splits.y_train).tolist() == [4] * 10
    pixels = np.sort(_all_rows(splits).ravel())
    np.testing.assert_allclose(pixels, np.sort(np.concatenate([v.ravel() for v in images.values()])) / 255, atol=1e-6)


@pytest.mark.skipif(not datasets.available("fashion_mnist")[0], reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist() -> None:
    splits = load("fashion_mnist", max_train=1000)
    assert len(splits.y_train) == 1000 and len(splits.y_test) == 10_500
    assert splits.x_test.shape[1:] == (1, 28, 28)


def test_jets_synthetic_is_fixed_and_learnable_but_not_trivial() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = datasets.make_jets()
    x2, y2 = datasets.make_jets()
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (10_000, 16) and np.bincount(y).tolist() == [2000] * 5
    splits = load("jets_synthetic")
    score = LogisticRegression(max_iter=500).fit(splits.x_train, splits.y_train).score(splits.x_val, splits.y_val)
    assert 0.5 < score < 0.9


def test_datasets_module_imports_neither_torch_nor_sklearn() -> None:
    code = (
        "import sys; import search_spaces.kit.datasets as d; d.BUILTIN; d.available('digits'); "
        "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- uploads ------------------------------------------------------------------------------------------


def _labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def test_npz_tabular_upload(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "tab.npz"
    np.savez(path, x=rng.normal(5, 2, (40, 6)), y=_labels(40))
    summary = inspect(path)
    assert summary == {
        "modality": "tabular",
        "input_shape": [6],
        "num_classes": 3,
        "num_samples": 40,
        "class_counts": [14, 13, 13],
    }
    splits = load(path=path)
    assert splits.info.modality == "tabular" and splits.x_train.shape[1:] == (6,)
    np.testing.assert_allclose(splits.x_train.mean(axis=0), 0, atol=1e-5)


@pytest.mark.parametrize("shape", [(30, 12, 10), (30, 3, 12, 10)])
def test_npz_image_upload_gets_a_channel_axis_and_unit_range(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "img.npz"
    np.savez_compressed(path, x=np.random.default_rng(1).integers(0, 256, shape).astype(np.uint8), y=_labels(30, 2))
    summary = inspect(path)
    expected = list(shape[1:]) if len(shape) == 4 else [1, *shape[1:]]
    assert summary["modality"] == "image" and summary["input_shape"] == expected
    splits = load(path=path, seed=2)
    assert splits.x_train.dtype == np.float32 and 0 <= splits.x_train.min() and splits.x_train.max() <= 1


def test_csv_upload_with_and_without_header(tmp_path: Path) -> None:
    rows = "\n".join(f"{i * 0.5},{i % 4},{i % 2}" for i in range(20))
    plain, with_header = tmp_path / "a.csv", tmp_path / "b.csv"
    plain.write_text(rows + "\n")
    with_header.write_text("f1,f2,label\n" + rows + "\n")
    assert inspect(plain) == inspect(with_header)
    assert inspect(plain)["input_shape"] == [2] and inspect(plain)["class_counts"] == [10, 10]


def test_pickles_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    object_npz = tmp_path / "objects.npz"
    np.savez(object_npz, x=np.array([Boom()] * 12, dtype=object), y=_labels(12))
    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(pickle.dumps({"x": Boom(), "y": 1}))
    for path in (object_npz, raw_pickle):
        with pytest.raises(DatasetError):
            inspect(path)
        with pytest.raises(DatasetError):
            load(path=path)
    assert not marker.exists()


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    cases: dict[str, tuple[Path, str]] = {}

    def npz(name: str, match: str, **arrays: np.ndarray) -> None:
        np.savez(tmp_path / f"{name}.npz", **arrays)
        cases[name] = (tmp_path / f"{name}.npz", match)

    npz("nan", "NaN", x=np.full((20, 3), np.nan), y=_labels(20))
    npz("negative_label", "0..K-1", x=rng.normal(size=(20, 3)), y=_labels(20) - 1)
    npz("fractional_label", "integer", x=rng.normal(size=(20, 3)), y=_labels(20) + 0.5)
    npz("one_class", "2 classes", x=rng.normal(size=(20, 3)), y=np.zeros(20, dtype=int))
    npz("too_few", "at least 10", x=rng.normal(size=(5, 3)), y=_labels(5))
    npz("length_mismatch", "labels", x=rng.normal(size=(20, 3)), y=_labels(19))
    npz("missing_y", "x and y", x=rng.normal(size=(20, 3)))
    npz("strings", "numbers", x=np.array([["a"] * 3] * 20), y=_labels(20))
    npz("five_dims", "shape", x=rng.normal(size=(20, 1, 2, 2, 2)), y=_labels(20))
    npz("channels_last", "channels-last", x=rng.random((20, 8, 8, 3)), y=_labels(20))
    (tmp_path / "png.npz").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    cases["lying_extension"] = (tmp_path / "png.npz", "not a .npz")
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.normal(size=(20, 3)), y=_labels(20))
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:200])
    cases["truncated"] = (tmp_path / "truncated.npz", "corrupt")
    (tmp_path / "binary.csv").write_bytes(good.read_bytes())
    cases["binary_csv"] = (tmp_path / "binary.csv", "binary")
    (tmp_path / "ragged.csv").write_text("1,2,0\n3,1\n" * 10)
    cases["ragged_csv"] = (tmp_path / "ragged.csv", "CSV")
    (tmp_path / "text.csv").write_text("a,b,c\nx,y,z\n" * 10)
    cases["words_csv"] = (tmp_path / "text.csv", "CSV")
    (tmp_path / "data.txt").write_text("1,2,0\n" * 20)
    cases["wrong_extension"] = (tmp_path / "data.txt", ".npz")
    return cases


def test_bad_uploads_get_clear_errors(tmp_path: Path) -> None:
    for label, (path, match) in _bad_files(tmp_path).items():
        with pytest.raises(DatasetError, match=match):
            inspect(path)
            pytest.fail(f"{label} was accepted")


def test_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x=np.zeros((2000, 100)), y=_labels(2000))
    with pytest.raises(DatasetError, match="declares shape"):
        inspect(path, datasets.UploadLimits(max_bytes=1_000_000))
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 100)
    with pytest.raises(DatasetError, match="limit"):
        inspect(path)


def test_zip_that_is_not_an_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "archive.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"not an array")
        archive.writestr("y.npy", b"nor this")
    with pytest.raises(DatasetError):
        inspect(path)


def test_what_an_upload_declares_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """An .npz's .npy headers and a CSV's rows × columns are checked before NumPy allocates anything: a 300 KB
    file of 300 MB zeros, a header declaring 29 TiB, broken zips and a 10⁶-column CSV all get a DatasetError."""
    import resource

    from tests import hostile

    cases = {
        "zeros.npz": (hostile.zero_bomb_npz(), "declares shape"),
        "huge.npz": (hostile.huge_header_npz(), "declares shape"),
        "crc.npz": (hostile.bad_crc_zip(), "corrupt"),
        "size.npz": (hostile.false_size_zip(), "another size"),
        "deflate.npz": (hostile.corrupt_deflate_zip(), "corrupt"),
        "wide.npz": (hostile.zip_of({"x.npy": hostile.npy_header((10, 10**6)), "y.npy": b""}), "per sample"),
        "names.npz": (hostile.zip_of({"a.npy": hostile.npy_header((10, 2))}), "named x and y"),
        "object.npz": (hostile.zip_of({"x.npy": hostile.npy_header((10, 2), "|O"), "y.npy": b""}), "pickled"),
    }
    wide = tmp_path / "wide.csv"
    wide.write_text(("0," * 10**6 + "1\n") * 12)
    tall = tmp_path / "tall.csv"
    tall.write_text("0,1\n" * 200_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DatasetError, match=match):
            inspect(tmp_path / name)
    with pytest.raises(DatasetError, match="feature columns"):
        inspect(wide)
    with pytest.raises(DatasetError, match="rows"):
        inspect(tall, datasets.UploadLimits(max_bytes=1_000_000))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB
