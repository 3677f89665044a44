"""Tests for nas.data: built-in datasets, splits, normalisation, npz and image-folder input."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nas import data as nd
from nas.data import DataError, Dataset, list_datasets, load_dataset


@pytest.fixture(scope="module", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Module scope so it is in place before the module-scoped dataset fixtures: keeps the
    # on-disk cache and torchvision data out of the user's home directory.
    base = tmp_path_factory.mktemp("nas_dirs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_CACHE_DIR", str(base / "cache"))
        mp.setenv("NAS_DATA_DIR", str(base / "data"))
        nd.clear_cache()
        yield
        nd.clear_cache()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k", seed=0)


def _splits(ds: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]


# --------------------------------------------------------------------------- built-in datasets


def test_list_datasets() -> None:
    names = list_datasets()
    assert names == sorted(names)
    assert {"digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100"} <= set(names)


def test_digits_shapes_and_splits(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.class_names == tuple(str(i) for i in range(10))
    sizes = [len(x) for x, _ in _splits(digits)]
    assert sum(sizes) == 1797
    assert abs(sizes[1] - 0.15 * 1797) <= 10 and abs(sizes[2] - 0.15 * 1797) <= 10
    for x, y in _splits(digits):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == (1, 8, 8)
        assert set(np.unique(y)) == set(range(10))  # stratified: every class in every split
    assert "digits" in digits.summary() and "1797" not in digits.summary()
    assert str(len(digits.x_train)) in digits.summary()


def test_mnist5k_shapes_and_splits(mnist5k: Dataset) -> None:
    assert mnist5k.input_shape == (1, 28, 28)
    assert mnist5k.num_classes == 10
    assert [len(y) for _, y in _splits(mnist5k)] == [3500, 750, 750]
    for _, y in _splits(mnist5k):
        counts = np.bincount(y, minlength=10)
        assert (counts == counts[0]).all()  # 500 per class split evenly by stratification


def test_train_only_normalisation(digits: Dataset) -> None:
    assert abs(float(digits.x_train.mean())) < 1e-3
    assert abs(float(digits.x_train.std()) - 1.0) < 1e-3
    # Val/test are transformed with train statistics, so they are close to but not exactly 0/1.
    assert abs(float(digits.x_val.mean())) < 0.1
    assert float(digits.x_val.mean()) != pytest.approx(0.0, abs=1e-6)
    assert digits.scale == 16.0 and digits.mean is not None and digits.mean.shape == (1,)


def test_seed_reproducibility_and_dependence(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    for (xa, ya), (xb, yb) in zip(_splits(digits), _splits(again)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(digits.y_train, other.y_train)
    assert not np.array_equal(digits.x_val, other.x_val)


def test_fractions_and_flat() -> None:
    ds = load_dataset("digits", val_fraction=0.1, test_fraction=0.2, flat=True)
    assert ds.input_shape == (64,)
    assert ds.x_test.shape[1] == 64
    assert abs(len(ds.y_val) - 180) <= 10 and abs(len(ds.y_test) - 360) <= 10
    no_val = load_dataset("digits", val_fraction=0.0)
    assert no_val.x_val.shape == (0, 1, 8, 8)
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.2)
    with pytest.raises(DataError, match="below 1"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)


def test_returned_arrays_are_independent() -> None:
    first = load_dataset("digits")
    first.x_train[:] = 123.0
    first.y_train[:] = 0
    second = load_dataset("digits")
    assert not (second.x_train == 123.0).any()
    assert len(np.unique(second.y_train)) == 10


def test_disk_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    nd.clear_cache()
    fresh = load_dataset("digits", seed=3)
    assert (tmp_path / "datasets" / "digits-v1.npz").is_file()
    nd.clear_cache()
    # A loader that must not run proves the second load came from disk.
    monkeypatch.setitem(nd.DATASETS, "digits", lambda d, dl: pytest.fail("loader ran despite disk cache"))
    cached = load_dataset("digits", seed=3)
    np.testing.assert_array_equal(fresh.x_train, cached.x_train)
    np.testing.assert_array_equal(fresh.y_test, cached.y_test)
    assert cached.class_names == fresh.class_names
    nd.clear_cache()


def test_unwritable_cache_dir_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")  # a file where the cache directory should go: mkdir fails
    monkeypatch.setenv("NAS_CACHE_DIR", str(blocker))
    nd.clear_cache()
    assert load_dataset("digits").num_classes == 10
    nd.clear_cache()


def test_unknown_name_lists_known() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'nope'.*digits.*mnist5k"):
        load_dataset("nope")


def test_name_normalisation() -> None:
    assert load_dataset(" Digits ").name == "digits"


# --------------------------------------------------------------------------- npz files


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _blobs(n_per_class: int = 20, labels: tuple = (3, 7, 9), dim: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(labels), n_per_class)
    x = rng.normal(size=(len(y), dim)) + y[:, None].astype(float)
    return x, y


def test_npz_carved_splits_and_label_remap(tmp_path: Path) -> None:
    x, y = _blobs()
    ds = load_dataset(str(_save(tmp_path / "blobs.npz", x=x, y=y)), seed=0)
    assert ds.name == "blobs"
    assert ds.input_shape == (4,)
    assert ds.num_classes == 3
    assert ds.class_names == ("3", "7", "9")
    assert sum(len(y) for _, y in _splits(ds)) == 60
    for _, ys in _splits(ds):
        assert set(np.unique(ys)) == {0, 1, 2}
    # Remapping is consistent: the class with original label 9 still has the largest inputs.
    raw_means = [x[y == v].mean() for v in (3, 7, 9)]
    ds_means = [ds.x_train[ds.y_train == k].mean() for k in range(3)]
    assert np.argsort(raw_means).tolist() == np.argsort(ds_means).tolist()
    # Flat data is standardised per feature on the train split.
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)


def test_npz_own_splits_are_used(tmp_path: Path) -> None:
    x, y = _blobs(10)
    xv, yv = _blobs(3, seed=1)
    xt, yt = _blobs(4, seed=2)
    path = _save(tmp_path / "own.npz", x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    ds = load_dataset(str(path), seed=5)
    assert [len(a) for _, a in _splits(ds)] == [30, 9, 12]
    np.testing.assert_array_equal(ds.y_test, np.searchsorted([3, 7, 9], yt))
    np.testing.assert_array_equal(ds.y_val, np.searchsorted([3, 7, 9], yv))
    # Own val/test are kept in file order; only the train set is shuffled.
    expected_test = ((xt / np.abs(x).max()).astype(np.float32) - ds.mean) / ds.std
    np.testing.assert_allclose(ds.x_test, expected_test, rtol=1e-5, atol=1e-5)


def test_npz_only_test_given_carves_val(tmp_path: Path) -> None:
    x, y = _blobs(20)
    xt, yt = _blobs(5, seed=2)
    ds = load_dataset(str(_save(tmp_path / "t.npz", x=x, y=y, x_test=xt, y_test=yt)), val_fraction=0.25)
    assert len(ds.y_test) == 15
    assert len(ds.y_val) == 15 and len(ds.y_train) == 45


def test_npz_hw_images_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 5, 6), dtype=np.uint8)
    y = np.array(["cat", "dog", "eel"] * 10)
    ds = load_dataset(str(_save(tmp_path / "imgs.npz", x=x, y=y)), flat=False)
    assert ds.input_shape == (1, 5, 6)
    assert ds.class_names == ("cat", "dog", "eel")
    flat = load_dataset(str(tmp_path / "imgs.npz"), flat=True)
    assert flat.input_shape == (30,)


def test_npz_float_integral_labels_and_column_y(tmp_path: Path) -> None:
    x, y = _blobs(10, labels=(-1, 1))
    ds = load_dataset(str(_save(tmp_path / "f.npz", x=x, y=y.astype(float)[:, None])))
    assert ds.class_names == ("-1", "1")
    assert ds.num_classes == 2


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"y": np.arange(4) % 2}, r"missing key 'x'"),
        ({"x": np.zeros((4, 2))}, r"missing key 'y'"),
        ({"x": np.zeros((4, 2)), "y": np.arange(3) % 2}, r"'x' has 4 rows but 'y' has 3"),
        ({"x": np.array([["a", "b"]] * 4), "y": np.arange(4) % 2}, r"'x' is not numeric"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(4, dtype=int)}, r"need at least 2"),
        ({"x": np.zeros((4, 2)), "y": np.array([0.5, 1, 0, 1])}, r"non-integer"),
        ({"x": np.full((4, 2), np.nan), "y": np.arange(4) % 2}, r"NaN"),
        ({"x": np.zeros(4), "y": np.arange(4) % 2}, r"expected \(N, D\)"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "x_val": np.zeros((2, 2))}, r"missing key 'y_val'"),
        (
            {"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "x_test": np.zeros((2, 3)), "y_test": np.arange(2)},
            r"'x_test' samples have shape",
        ),
    ],
    ids=["no-x", "no-y", "length", "non-numeric", "one-class", "float-labels", "nan", "1d-x", "half-split", "shape"],
)
def test_npz_errors(tmp_path: Path, arrays: dict, match: str) -> None:
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_npz_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.npz"
    with pytest.raises(DataError, match=r"absent\.npz: file not found"):
        load_dataset(str(path))


def test_npz_object_array_and_garbage(tmp_path: Path) -> None:
    path = _save(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"obj\.npz: 'x' holds Python objects"):
        load_dataset(str(path))
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip\nat all")
    with pytest.raises(DataError, match=r"garbage\.npz: not a readable \.npz file") as info:
        load_dataset(str(garbage))
    assert "\n" not in str(info.value)


def test_npz_too_small_to_split(tmp_path: Path) -> None:
    path = _save(tmp_path / "tiny.npz", x=np.zeros((4, 2)), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"too few samples"):
        load_dataset(str(path))


# --------------------------------------------------------------------------- image folders


def _write_images(root: Path, spec: dict[str, list[tuple[str, tuple[int, int]]]]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, images in spec.items():
        (root / cls).mkdir(parents=True)
        for i, (mode, (w, h)) in enumerate(images):
            shape = (h, w) if mode == "L" else (h, w, 3)
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(root / cls / f"{i}.png")


def test_image_folder_grayscale(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    _write_images(root, {c: [("L", (6, 5))] * 4 for c in ("circle", "square", "star")})
    (root / "circle" / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{root}")
    assert ds.name == "shapes"
    assert ds.input_shape == (1, 5, 6)
    assert ds.class_names == ("circle", "square", "star")
    assert sum(len(y) for _, y in _splits(ds)) == 12
    for _, y in _splits(ds):
        assert set(np.unique(y)) == {0, 1, 2}
    # A bare directory path works too.
    assert load_dataset(str(root)).input_shape == (1, 5, 6)


def test_image_folder_rgb_and_resize(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _write_images(root, {"a": [("RGB", (4, 4))] * 3 + [("L", (8, 8))], "b": [("L", (4, 4))] * 4})
    ds = load_dataset(f"folder:{root}", val_fraction=0.25, test_fraction=0.25)
    assert ds.input_shape == (3, 4, 4)  # one RGB image makes the set RGB; 8x8 resized to 4x4
    assert ds.mean is not None and ds.mean.shape == (3,)


def test_image_folder_errors(tmp_path: Path) -> None:
    root = tmp_path / "one"
    _write_images(root, {"only": [("L", (4, 4))] * 3})
    with pytest.raises(DataError, match="need at least 2"):
        load_dataset(f"folder:{root}")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="'empty' has no"):
        load_dataset(f"folder:{root}")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "two").mkdir()
    _write_images(tmp_path / "two", {"a": [("L", (4, 4))] * 3, "b": [("L", (4, 4))] * 3})
    (tmp_path / "two" / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        load_dataset(f"folder:{tmp_path / 'two'}")


# --------------------------------------------------------------------------- torchvision datasets


def test_torchvision_missing_files_mentions_download(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    nd.clear_cache()
    with pytest.raises(DataError, match=r"not found under .*download=True"):
        load_dataset("mnist", data_dir=tmp_path)


def test_torchvision_not_installed_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, whether or not torchvision is installed.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    nd.clear_cache()
    with pytest.raises(DataError, match=r"pip install torchvision"):
        load_dataset("cifar10")


def _fake_torchvision(monkeypatch: pytest.MonkeyPatch, present: bool) -> list[tuple[str, bool]]:
    """Install a stand-in torchvision.datasets with MNIST (tensors) and CIFAR10 (NHWC numpy)."""
    import torch

    calls: list[tuple[str, bool]] = []

    class FakeMNIST:
        classes = [f"{i} - digit" for i in range(10)]

        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            if not present and not download:
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            n = 100 if train else 20
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
            self.targets = torch.arange(n) % 10

    class FakeCIFAR10:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            if not present and not download:
                raise RuntimeError("Dataset not found or corrupted.")
            n = 100 if train else 20
            self.data = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]

    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = FakeMNIST  # type: ignore[attr-defined]
    datasets.CIFAR10 = FakeCIFAR10  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    nd.clear_cache()
    return calls


def test_torchvision_loader_with_fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_torchvision(monkeypatch, present=True)
    ds = load_dataset("mnist", data_dir=tmp_path, val_fraction=0.2)
    assert ds.input_shape == (1, 28, 28)
    assert [len(y) for _, y in _splits(ds)] == [80, 20, 20]  # official test set kept whole
    assert ds.class_names is not None and ds.class_names[0] == "0 - digit"
    assert calls == [(str(tmp_path), False)] * 2
    cifar = load_dataset("cifar10", data_dir=tmp_path)
    assert cifar.input_shape == (3, 32, 32)  # NHWC converted to NCHW
    assert cifar.mean is not None and cifar.mean.shape == (3,)
    nd.clear_cache()


def test_torchvision_missing_files_with_fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_torchvision(monkeypatch, present=False)
    with pytest.raises(DataError, match=r"mnist: dataset files not found under .*download=True \(CLI --download\)"):
        load_dataset("mnist", data_dir=tmp_path)
    # Default location comes from NAS_DATA_DIR.
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere"):
        load_dataset("cifar10")
    nd.clear_cache()


def test_register_dataset_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        nd.register_dataset("digits")(lambda d, dl: None)  # type: ignore[arg-type,return-value]


# --------------------------------------------------------------------------- channel-last images


@pytest.mark.parametrize("channels", [3, 1])
def test_npz_channel_last_images_are_transposed_with_a_note(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 255, size=(60, channels, 6, 6)).astype(np.uint8)
    y = np.arange(60) % 3
    first = load_dataset(str(_save(tmp_path / "first.npz", x=nchw, y=y)))
    last = load_dataset(str(_save(tmp_path / "last.npz", x=nchw.transpose(0, 2, 3, 1).copy(), y=y,
                                  x_test=nchw[:9].transpose(0, 2, 3, 1).copy(), y_test=y[:9])))
    assert last.input_shape == (channels, 6, 6)
    assert "channel-last" in last.summary() and "channel-last" not in first.summary()
    assert last.preprocessing()["source_layout"] == "NHWC" and first.preprocessing()["source_layout"] == "NCHW"
    # the same pixels as the channel-first file: same train statistics, same test images
    np.testing.assert_allclose(last.mean, load_dataset(str(_save(tmp_path / "t.npz", x=nchw, y=y, x_test=nchw[:9], y_test=y[:9]))).mean)
    ref = load_dataset(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(last.x_test, ref.x_test)


def test_npz_ambiguous_layout_reads_channel_first(tmp_path: Path) -> None:
    # (N, 3, 4, 4) could be read as 3x4 images of 4 channels: the square, channel-first reading wins
    x = np.zeros((30, 3, 4, 4), dtype=np.float32)
    ds = load_dataset(str(_save(tmp_path / "a.npz", x=x, y=np.arange(30) % 2)))
    assert ds.input_shape == (3, 4, 4) and ds.preprocessing()["source_layout"] == "NCHW"


def test_preprocessing_is_plain_json(digits: Dataset) -> None:
    import json

    prep = digits.preprocessing("digits")
    assert json.loads(json.dumps(prep)) == prep
    assert prep["scale"] == 16.0 and len(prep["mean"]) == 1 and prep["input_shape"] == [1, 8, 8]
    assert prep["class_names"] == [str(i) for i in range(10)] and prep["layout"] == "NCHW"
